"""Participants, a sealed randomisation list, and kits at a site, for the unblinding, accountability
and trace tests.

Kits reach the site and participants by setup here (their states, sites, visits, shipments and
administrations written directly), because the shipment and pharmacy flows are tested in their own
areas; what these tests examine (unblinding, counts, destruction, trace) reads those rows as the
flows will leave them. Moves under test go through kits.move as in production."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from cellbench import kit_counts, sealed, studies, users
from cellbench.clock import utcnow
from cellbench.db import Database
from cellbench.models import (
    Administration,
    CustodyEvent,
    Donation,
    Donor,
    Kit,
    KitState,
    Lot,
    Participant,
    SealedList,
    Shipment,
    ShipmentKit,
    Site,
    Study,
    Visit,
)
from cellbench.pharmacy import counts as pharmacy_counts
from cellbench.pharmacy.lifecycle import VisitState
from cellbench.supply import lists

from . import shortcuts
from .conftest import PASSWORD, actor_of
from .kitworld import KitWorld, build, package, released_lot

STUDY = "NCT07290946"
SITE = "RH-ENT"


def randomisation_list(db: Database, study_code: str = STUDY, size: int = 20) -> dict[str, str]:
    """A sealed randomisation list; participant number -> arm (read as the supply manager)."""
    with db.write() as s:
        row = lists.generate(s, actor_of(db, "sara"), studies.by_code(s, study_code), "randomisation", size,
                             seed="trial-seed")
        list_id = row.id
    with db.write() as s:
        sara = users.by_username(s, "sara")
        sealed.seal_list(s, sara, users.actor(s, sara), s.get(SealedList, list_id), PASSWORD)
    with db.write() as s:
        return {line.key: line.arm for line in
                sealed.list_lines(s, actor_of(db, "sara"), s.get(SealedList, list_id), limit=size)}


def kit_row(db: Database, number: str) -> Kit:
    with db.read() as s:
        return s.scalars(select(Kit).where(Kit.number == number)).one()


def custody_actions(db: Database, number: str) -> list[str]:
    with db.read() as s:
        return list(s.scalars(select(CustodyEvent.action).join(Kit, Kit.id == CustodyEvent.kit_id)
                              .where(Kit.number == number).order_by(CustodyEvent.id)))


def site_id(db: Database, code: str = SITE) -> int:
    with db.read() as s:
        return s.scalars(select(Site.id).where(Site.code == code)).one()


def enrol(db: Database, number: str, screening: str, study_code: str = STUDY, site: str = SITE) -> int:
    """Setup: a randomised participant, inserted directly."""
    with db.write() as s:
        ida = users.by_username(s, "ida")
        p = Participant(study_id=studies.by_code(s, study_code).id,
                        site_id=s.scalars(select(Site.id).where(Site.code == site)).one(),
                        screening_number=screening, randomisation_number=number, enrolled_by=ida.id,
                        enrolled_at=utcnow(), randomised_at=utcnow())
        s.add(p)
        s.flush()
        return p.id


def to_site(db: Database, kit_numbers: list[str], state: KitState = KitState.at_site, site: str = SITE) -> None:
    """Setup: kits received into the site's stock (what custody's receipt leaves behind)."""
    with db.write() as s:
        where = s.scalars(select(Site).where(Site.code == site)).one()
        for kit in s.scalars(select(Kit).where(Kit.number.in_(kit_numbers))):
            shortcuts.kit_moved(s, kit.number, kit.state, state)
            before = kit_counts.key_of(kit.study_id, kit.site_id, kit.blinded_lot_id, kit.state)
            kit.state, kit.site_id, kit.location = state, where.id, where.name
            # kept as the kit lifecycle keeps them, for accountability to read
            kit_counts.apply(s, [(before, kit_counts.key_of(kit.study_id, where.id, kit.blinded_lot_id, state))])


def ship(db: Database, number: str, kit_numbers: list[str], site: str = SITE, study_code: str = STUDY) -> None:
    """Setup: a received shipment holding these kits."""
    with db.write() as s:
        sara = users.by_username(s, "sara")
        shipment = Shipment(number=number, study_id=studies.by_code(s, study_code).id,
                            site_id=s.scalars(select(Site.id).where(Site.code == site)).one(), state="received",
                            created_by=sara.id, created_at=utcnow())
        s.add(shipment)
        s.flush()
        shortcuts.shipment_made(s, number, "received")
        for kit in s.scalars(select(Kit).where(Kit.number.in_(kit_numbers))):
            s.add(ShipmentKit(shipment_id=shipment.id, kit_id=kit.id, packed_at=utcnow(), received_at=utcnow()))


def administer(db: Database, participant_number: str, kit_number: str, treatment: int = 1) -> None:
    """Setup: the participant's visit with this kit, both glands injected."""
    to_site(db, [kit_number], KitState.administered)
    with db.write() as s:
        p = s.scalars(select(Participant).where(Participant.randomisation_number == participant_number)).one()
        kit = s.scalars(select(Kit).where(Kit.number == kit_number)).one()
        ida = users.by_username(s, "ida")
        today = utcnow().date()
        visit = Visit(participant_id=p.id, treatment=treatment, target_date=today,
                      window_start=today - timedelta(days=1), window_end=today + timedelta(days=1),
                      state="administered", kit_id=kit.id)
        s.add(visit)
        s.flush()
        pharmacy_counts.created(s, p, [VisitState.administered])  # kept as the visit moves keep them
        study = s.get(Study, p.study_id)
        shortcuts.visit_made(s, f"{study.code}/{p.screening_number}/T{treatment}", VisitState.administered)
        for dose in (1, 2):
            s.add(Administration(visit_id=visit.id, kit_id=kit.id, dose=dose, administered_at=utcnow(), volume_ml=1.0,
                                 by_user=ida.id, by_name=ida.full_name))


def donate(db: Database, lot_number: str, donor_code: str = "DN-0001", identifier: str = "A9999 26 123456 K") -> None:
    """Setup: the donor and donation an ASC lot was made from."""
    with db.write() as s:
        donor = Donor(code=donor_code, created_at=utcnow())
        s.add(donor)
        s.flush()
        donation = Donation(donor_id=donor.id, identifier=identifier, id_system="ISBT128", donated_on=utcnow().date(),
                            created_at=utcnow())
        s.add(donation)
        s.flush()
        s.scalars(select(Lot).where(Lot.number == lot_number)).one().donation_id = donation.id


@dataclass
class TrialWorld:
    kits: KitWorld
    first_lot: str  # blinded lot codes
    second_lot: str
    first_active: list[str]  # released kit numbers, by blinded lot and arm
    first_placebo: list[str]
    second_active: list[str]
    second_placebo: list[str]
    arms: dict[str, str]  # participant number -> arm

    def participant(self, arm: str, skip: int = 0) -> str:
        """The randomisation number of a participant on this arm."""
        return [n for n, a in sorted(self.arms.items()) if a == arm][skip]


def build_trial(db: Database) -> TrialWorld:
    """Two blinded lots of 8 released kits each (4 per arm), a sealed randomisation list of 20."""
    from cellbench.models import BlindedLot

    from .kitworld import arms as kit_arms

    world = build(db, kits=8, listed=16)
    released_lot(db, "asc", "ASC-2026-0102", units=16)
    released_lot(db, "placebo", "PLB-2026-0102", units=16)
    package(db, STUDY, 8, ["ASC-2026-0102"], ["PLB-2026-0102"])
    by_arm = kit_arms(db)
    with db.read() as s:
        lots = list(s.scalars(select(BlindedLot).order_by(BlindedLot.id)))
        members = {lot.id: sorted(s.scalars(select(Kit.number).where(Kit.blinded_lot_id == lot.id))) for lot in lots}
    first, second = lots[0], lots[1]

    def of(lot: BlindedLot, arm: str) -> list[str]:
        return [k for k in members[lot.id] if by_arm[k] == arm]

    return TrialWorld(world, first.code, second.code, of(first, "active"), of(first, "placebo"), of(second, "active"),
                      of(second, "placebo"), randomisation_list(db))
