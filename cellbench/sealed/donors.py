"""Whose cells a dose is: the donor of each administered dose, recorded through a blind-safe door
from the kit's units (vial -> lot -> donation -> donor; a placebo unit has none), and the study's
same-donor rule for repeat doses, which narrows a later treatment's candidate kits inside the
compartment. The caller never learns a donor or an arm: the door returns nothing, and the rule's
"no kit" is the same answer as any other."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

from sqlalchemy import select
from sqlmodel import Session, col

from .. import studies
from ..audit import Actor
from ..clock import utcnow
from ..models import Donation, Donor, Kit, Lot, Role, SealedDoseDonor, SealedKitUnit, Study, Vial, saved_id
from ..sealing import READERS, participant_trail
from .walls import _door, _read

# Who records an administration (kits.MOVES["administer"]): the door admits the same role.
RECORDERS = frozenset({Role.investigator})


def _donors_of_units(session: Session, kit_ids: Iterable[int], dose: int | None = None) -> dict[int, set[int]]:
    """Each kit's donors (of one dose's units, or of all): empty for a kit of saline units."""
    query = (select(col(SealedKitUnit.kit_id), col(Donation.donor_id))
             .join(Vial, col(Vial.id) == col(SealedKitUnit.vial_id)).join(Lot, col(Lot.id) == col(Vial.lot_id))
             .join(Donation, col(Donation.id) == col(Lot.donation_id))
             .where(col(SealedKitUnit.kit_id).in_(list(kit_ids))))
    if dose is not None:
        query = query.where(col(SealedKitUnit.dose) == dose)
    found: dict[int, set[int]] = defaultdict(set)
    for kit_id, donor_id in session.execute(query):
        found[kit_id].add(donor_id)
    return found


def record_dose_donor(session: Session, actor: Actor, study: Study, randomisation_number: str, treatment: int,
                      dose: int, kit: Kit) -> None:
    """At each gland's administration: whose cells this dose was, one row per donor of the dose's
    units, or one row with no donor for a placebo dose. Returns nothing, for either arm."""
    _door(session, actor, RECORDERS, "dose donor",
          lambda: participant_trail(session, study, randomisation_number=randomisation_number))
    kit_id = saved_id(kit)
    found = _donors_of_units(session, [kit_id], dose).get(kit_id) or _donors_of_units(session, [kit_id]).get(kit_id)
    donors: list[int | None] = [*sorted(found)] if found else [None]  # a placebo dose: one row, no donor
    now = utcnow()
    session.add_all([SealedDoseDonor(study_id=saved_id(study), randomisation_number=randomisation_number,
                                     treatment=treatment, dose=dose, kit_id=kit_id, donor_id=donor_id,
                                     recorded_by=actor.user_id, recorded_at=now)
                     for donor_id in donors])
    session.flush()


def _same_donor_rule(session: Session, study: Study, randomisation_number: str,
                    treatment: int) -> tuple[Callable[[Session, list[Kit]], list[Kit]], str] | None:
    """For a `same_donor` study's later treatment of a participant whose treatment 1 had a donor:
    the filter keeping kits whose every unit is that donor's, and the requirement in words for the
    supply manager's shortage. None otherwise: a placebo participant (treatment 1 had no donor)
    may have any kit of their arm, exactly as before."""
    if treatment <= 1 or studies.donor_policy(study) != "same_donor":
        return None
    first = set(session.scalars(select(col(SealedDoseDonor.donor_id)).where(
        col(SealedDoseDonor.study_id) == study.id, col(SealedDoseDonor.treatment) == 1,
        col(SealedDoseDonor.randomisation_number) == randomisation_number,
        col(SealedDoseDonor.donor_id).is_not(None))))
    if not first:
        return None
    codes = ", ".join(sorted(session.scalars(select(col(Donor.code)).where(col(Donor.id).in_(first)))))

    def keep(session: Session, candidates: list[Kit]) -> list[Kit]:
        donors = _donors_of_units(session, [saved_id(kit) for kit in candidates])
        return [kit for kit in candidates if donors.get(saved_id(kit)) and donors[saved_id(kit)] <= first]

    return keep, f"treatment {treatment} from the donor of treatment 1 (donor {codes})"


def dose_donors(session: Session, actor: Actor, study: Study, randomisation_number: str) -> list[SealedDoseDonor]:
    """A participant's recorded dose donors, treatment and dose order (unblinded roles)."""
    _read(session, actor, READERS, "dose donors",
          lambda: participant_trail(session, study, randomisation_number=randomisation_number))
    return list(session.scalars(select(SealedDoseDonor).where(
        col(SealedDoseDonor.study_id) == study.id, col(SealedDoseDonor.randomisation_number) == randomisation_number)
        .order_by(col(SealedDoseDonor.treatment), col(SealedDoseDonor.dose), col(SealedDoseDonor.id))))
