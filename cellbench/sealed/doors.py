"""The blind-safe doors: randomising a participant, assigning the kit of the right arm at a visit
(drawn at random, the draw recorded, a shortage recorded when there is none), the emergency
unblinding; and the arm of a participant for unblinded roles."""
from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Sequence
from datetime import date

from sqlalchemy import select
from sqlmodel import Session, col

from .. import kits, notifications
from ..audit import Actor
from ..clock import utcnow
from ..errors import InvalidInput, NotFound
from ..models import (
    BlindedLot,
    Kit,
    KitState,
    Participant,
    Role,
    SealedAllocation,
    SealedKitArm,
    SealedKitDraw,
    SealedKitShortage,
    SealedList,
    Study,
    saved_id,
)
from ..sealing import READERS, ListState, candidate_text, participant_trail
from .donors import _same_donor_rule
from .walls import _arm_of_number, _door, _read

# --- the blind-safe doors -------------------------------------------------------------------------
#
# Blinded workflows need the compartment to act on an arm without learning it: randomising a
# participant and assigning the kit of the right arm at a visit. These functions are the only
# ones a blinded actor may call; they return a number or a kit, never an arm, and log the call.
# tests/test_sealed.py allows blinded-facing code to use exactly these names.
BLIND_SAFE = ("randomise", "assign_kit", "unblind_participant", "record_dose_donor")


# Where the kit draws' randomness comes from: the operating system's CSPRNG, so that no one can
# predict the next kit from the ones before. A test wanting a reproducible run replaces it with a
# seeded random.Random (monkeypatch); nothing else does.
_draws: random.Random = secrets.SystemRandom()
# Narrows the eligible kits (all of one arm) further, run inside the compartment: it may only take
# kits out. The "same donor as treatment 1" rule is one (donors.py).
CandidateFilter = Callable[[Session, list[Kit]], list[Kit]]


def randomise(session: Session, actor: Actor, study: Study, participant_id: int) -> str:
    """The next free line of the study's sealed randomisation lists, in list order: its number."""
    _door(session, actor, frozenset({Role.investigator}), "randomisation",
          lambda: participant_trail(session, study, participant_id=participant_id))
    taken = select(col(Participant.randomisation_number)).where(
        col(Participant.study_id) == study.id, col(Participant.randomisation_number).is_not(None))
    number = session.scalar(select(col(SealedAllocation.participant_number))
                            .join(SealedList, col(SealedList.id) == col(SealedAllocation.list_id))
                            .where(col(SealedList.study_id) == study.id, col(SealedList.kind) == "randomisation",
                                   col(SealedList.state) == ListState.sealed.value,
                                   col(SealedAllocation.participant_number).not_in(taken))
                            .order_by(col(SealedList.version), col(SealedAllocation.position)).limit(1))
    if number is None:
        raise InvalidInput(f"The sealed randomisation list of {study.code} has no free line left; the supply "
                           "manager must seal a further list.", field="participant")
    return number


def assign_kit(session: Session, actor: Actor, study: Study, randomisation_number: str, site_id: int, *,
               in_date_on: date, exclude: Sequence[int] = (), narrow: CandidateFilter | None = None,
               treatment: int = 1) -> Kit | None:
    """A kit of the participant's arm, available at the site and in date on `in_date_on`, drawn
    uniformly at random (a CSPRNG) among every such kit, so the order of assignments carries no
    order a blinded person could read arms from; the draw is recorded (SealedKitDraw) and can be
    replayed. `narrow` takes further candidates out inside the compartment, and so does the study's
    same-donor rule for a later `treatment` (donors.py). None when there is none: the shortage is
    recorded with its arm (and the donor requirement, if one narrowed) for the supply manager, and
    the caller says so in words the same for both arms."""
    _door(session, actor, frozenset({Role.pharmacist}), "kit assignment",
          lambda: participant_trail(session, study, randomisation_number=randomisation_number))
    arm = _arm_of_number(session, study, randomisation_number)
    if arm is None:
        raise InvalidInput(f"{randomisation_number} is not on a sealed randomisation list.", field="participant")
    candidates = _eligible(session, study, arm, site_id, in_date_on, exclude)
    rule = _same_donor_rule(session, study, randomisation_number, treatment)
    for keep in (narrow, rule and rule[0]):
        if keep:
            kept = keep(session, candidates)
            if not {kit.number for kit in kept} <= {kit.number for kit in candidates}:
                raise ValueError("A candidate filter may only take kits out.")
            candidates = sorted(kept, key=lambda kit: kit.number)
    if not candidates:
        session.add(SealedKitShortage(study_id=saved_id(study), site_id=site_id, arm=arm, in_date_on=in_date_on,
                                      randomisation_number=randomisation_number, reported_by=actor.user_id,
                                      reported_at=utcnow(), requirement=rule and rule[1]))
        session.flush()
        notifications.no_kit(session, actor, study=study, site_id=site_id, participant=randomisation_number, arm=arm,
                             in_date_on=in_date_on, requirement=rule and rule[1])
        kits.note_stock(session, {(saved_id(study), site_id)}, "no kit")  # resupply evaluates the site at once
        return None
    index = _draws.randrange(len(candidates))
    kit = candidates[index]
    session.add(SealedKitDraw(study_id=saved_id(study), randomisation_number=randomisation_number, site_id=site_id,
                              candidates=candidate_text(kit.number for kit in candidates), index_drawn=index,
                              kit_id=saved_id(kit), drawn_by=actor.user_id, drawn_at=utcnow()))
    session.flush()
    return kit


def _eligible(session: Session, study: Study, arm: str, site_id: int, in_date_on: date,
              exclude: Sequence[int]) -> list[Kit]:
    """The kits of this arm a visit may have: in the site's stock (received, not assigned, not
    held), in date through `in_date_on`, none excluded; in kit-number order, the draw's canonical
    order (sorted here, not by the engine, whose collation may differ)."""
    query = (select(Kit).join(SealedKitArm, col(SealedKitArm.kit_id) == col(Kit.id))
             .join(BlindedLot, col(BlindedLot.id) == col(Kit.blinded_lot_id))
             .where(col(Kit.study_id) == study.id, col(Kit.site_id) == site_id, col(Kit.state) == KitState.at_site,
                    col(Kit.quarantine_id).is_(None), col(SealedKitArm.arm) == arm,
                    col(BlindedLot.expiry) >= in_date_on))
    if exclude:
        query = query.where(col(Kit.id).not_in(list(exclude)))
    return sorted(session.scalars(query), key=lambda kit: kit.number)


def unblind_participant(session: Session, actor: Actor, study: Study, randomisation_number: str) -> str:
    """The arm of one participant, for the emergency unblinding (unblinding.py re-authenticates,
    signs and notifies first). The one door that returns an arm to a blinded role, by design."""
    _door(session, actor, frozenset({Role.investigator}), "emergency unblinding",
          lambda: participant_trail(session, study, randomisation_number=randomisation_number))
    arm = _arm_of_number(session, study, randomisation_number)
    if arm is None:
        raise NotFound(f"{randomisation_number} is not on a sealed randomisation list.", field="participant")
    return arm


def arm_of_participant(session: Session, actor: Actor, study: Study, randomisation_number: str) -> str | None:
    """For unblinded roles (trace, accountability by manufacturing lot)."""
    _read(session, actor, READERS, "participant arm",
          lambda: participant_trail(session, study, randomisation_number=randomisation_number))
    return _arm_of_number(session, study, randomisation_number)

