"""The trials at the site, for `cellbench serve --demo` (issue 6): both blinded studies from their
first shipment to today, through the service functions only, so every audit event, custody event
and signature is real and `cellbench verify` passes.

Time. Treatment 2 of NCT07290946 comes four months after treatment 1, so most of the story lies in
the past. cellbench reads the clock only through clock.utcnow(); `StoryClock` holds it (through
clock.held while the demo is seeded) at 150 days ago and moves it forward phase by
phase, never back, so that the audit trail stays in time order; then it catches up with the wall
clock for today's work and is put back in a `finally`. The held clock is the wall clock minus an
offset, so time runs at its real pace within a phase: no two events share a timestamp, and rules
such as "counted after the last change" see the order they would in life.

Since the story must start before anything else in the audit trail, `demo.seed` runs the whole
demo inside it (rather than appending the trial after `seed_kits`):

- day 0: the users, specifications, materials and instruments, both studies with their sealed
  lists, storage at the cell bench and at the site pharmacy; the trial's ASC and saline lots are
  manufactured (their QC and release follow on day 16, their packaging on day 17);
- days 18-149, site RH-ENT: shipments received (one held on receipt for a missing logger record
  and accepted by QA), NCT07290946 participants treated (one twice, 120 days apart; one whose
  dispensed kit came back before thawing and who was treated two days later; one whose treatment
  was stopped before the first injection), a second manufacturing campaign and packaging run, a
  reconciliation and a witnessed destruction of the two unused kits, NCT06805448 participants
  with their single treatment, an emergency unblinding with its message to the sponsor, a
  shipment held on receipt yesterday for a logger reading of -121 °C awaiting QA, and one
  dispatched yesterday;
- today, on the wall clock: the click-through lots of the manufacturing and release demos
  (recorded "over the last hours", so the in-process lot continues naturally), the release demo's
  packaging runs, a shipment being packed, and participants at every stage before treatment; the
  preparation clock is started last, so it has about 60 minutes left when seeding ends.

Dates that must hold when people click through (instrument calibration, material expiry) are set
from the wall clock (demo.wall_today); lot, placebo and kit expiries are months or years ahead.

A database whose audit trail already has events later than the story's first day (users made by
hand before `cellbench demo`) gets the demo without the story, which would otherwise predate what
is already recorded (`story_fits`).
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlmodel import Session, col

from .. import accountability, clock, custody, kits, pharmacy, qrpayload, release, studies, unblinding, users
from ..accountability import destruction
from ..audit import Actor
from ..config import DEMO_SECRET_KEY
from ..models import AuditEvent, Kit, KitState, Lot, Participant, Shipment, ShipmentKit, Site, Study, User, Visit
from ..supply import packaging
from . import manufacturing as demo
from . import monitoring, resupply, sites
from . import positions as demo_positions
from . import preparation as preparation_demo
from . import release as release_demo
from .story_clock import StoryClock

SITE = "RH-ENT"
LONG, SJOGREN = "NCT07290946", "NCT06805448"  # two treatments 4 months apart; one treatment
BENCH_TANK, SITE_TANK = "CB-LN2-K", "RH-LN2-1"
PW = demo.DEMO_PASSWORD


def story_fits(session: Session) -> bool:
    """Whether the story can start before everything already in the audit trail."""
    latest = session.scalar(select(func.max(col(AuditEvent.at))))
    return latest is None or latest < StoryClock().moment(0, "07:00")


def seed_trial(session: Session, by: Actor, secret_key: str = DEMO_SECRET_KEY) -> None:
    """The whole demo on the story's clock (see the module docstring). `secret_key` signs the
    labels the demo's people scan; any key works, since the scans are checked as they are made."""
    story_clock = StoryClock()
    with story_clock.held():
        story_clock.at(0, "07:30")
        demo.create_users(session, by)
        demo.seed_basics(session)
        loaded = demo.seed_studies(session)
        sites.link_people(session, by, loaded)
        story = _Story(session, story_clock, loaded, secret_key)
        story.past()
        story_clock.catch_up()
        demo.seed_lots(session)
        release_demo.seed_release_demo(session)
        demo.seed_kits(session, loaded)
        story.today()
    session.flush()


class _Story:
    def __init__(self, session: Session, clock: StoryClock, loaded: dict[str, Study], secret_key: str):
        self.s, self.clock, self.key = session, clock, secret_key
        self.long, self.sjogren = loaded[LONG], loaded[SJOGREN]
        self.site = self.s.scalars(select(Site).where(col(Site.code) == SITE)).one()
        self._users: dict[str, User] = {}
        self.sjogren_treated: list[Participant] = []

    # --- people, labels, lookups -----------------------------------------------------------------

    def user(self, username: str) -> User:
        if username not in self._users:
            self._users[username] = users.by_username(self.s, username)
        return self._users[username]

    def actor(self, username: str) -> Actor:
        return users.actor(self.s, self.user(username))

    def label(self, kit: Kit | str) -> str:
        """What the scanner reads off the kit's label: its signed QR payload."""
        return qrpayload.make_payload(kit if isinstance(kit, str) else kit.number, self.key)

    def visit(self, participant: Participant, treatment: int) -> Visit:
        return self.s.scalars(select(Visit).where(col(Visit.participant_id) == participant.id,
                                                  col(Visit.treatment) == treatment)).one()

    def at_bench(self, study: Study, state: KitState = KitState.released) -> list[Kit]:
        """Released kits (or in `state`) at the cell bench that are in no open shipment, by kit number."""
        open_kits = (select(col(Kit.id)).join(ShipmentKit, col(ShipmentKit.kit_id) == col(Kit.id))
                     .join(Shipment, col(Shipment.id) == col(ShipmentKit.shipment_id))
                     .where(col(Shipment.state).in_(sorted(custody.OPEN))))
        return list(self.s.scalars(select(Kit).where(col(Kit.study_id) == study.id, col(Kit.state) == state,
                                                     col(Kit.site_id).is_(None), col(Kit.id).not_in(open_kits))
                                   .order_by(col(Kit.number))))

    # --- manufacturing and supply ----------------------------------------------------------------

    def manufacture(self, donor_numbers: tuple[int, ...], saline_batch: str | None = None) -> list[Lot]:
        qa, operator = self.user("qa"), self.actor("operator")
        made = [demo.asc_lot(self.s, demo.eligible_donation(self.s, operator, qa, n), until=None)
                for n in donor_numbers]
        if saline_batch:
            made.append(demo.placebo_lot(self.s, saline_batch))
        return made

    def release(self, lots: list[Lot]) -> None:
        """QC results in and reviewed, both QA reviews, final QP certification, sponsor release."""
        qa, qp, supply = self.user("qa"), self.user("qp"), self.user("supply")
        for lot in lots:
            release_demo.demo_results(self.s, lot)  # the release demo's helper: passing results, reviewed
            for kind in release.REVIEW_KINDS:
                release.sign_review(self.s, qa, PW, lot, kind)
            release.certify(self.s, qp, PW, lot, final=True)
            release.sponsor_release(self.s, supply, PW, lot)

    def package(self, study: Study, count: int, asc: list[Lot], placebo: list[Lot]) -> None:
        """A packaging run of released lots (so its kits are released with it), put away in the bench tank."""
        supply = self.actor("supply")
        packaging.package(self.s, supply, study, kit_count=count, asc_lots=[lot.number for lot in asc],
                          placebo_lots=[lot.number for lot in placebo])
        for kit in self.at_bench(study):
            if kit.storage_location_id is None:
                custody.store(self.s, supply, kit, BENCH_TANK)

    def ship(self, study: Study, count: int | None, tag: str, *, awaiting_final_release: bool = False) -> Shipment:
        """Pack `count` kits (None: every one at the bench) into a dry shipper and dispatch it."""
        supply = self.actor("supply")
        shipment = custody.create(self.s, supply, study.code, SITE)
        chosen = self.at_bench(study, KitState.awaiting_release if awaiting_final_release else KitState.released)
        for kit in chosen[:count] if count is not None else chosen:
            custody.pack(self.s, supply, shipment, self.label(kit), self.key)
        custody.dispatch(self.s, supply, shipment, shipper_id=f"DS-{tag}", seal_number=f"SEAL-{tag}",
                         logger_id=f"TL-{tag}")
        return shipment

    def receive(self, shipment: Shipment, logger: custody.LoggerRecord, *, store: bool = True) -> list[str]:
        """The pharmacist scans every kit out of the shipper, checks seal and logger, stores the kits."""
        pharmacist = self.actor("pharmacist")
        self.s.flush()
        for kit in custody.kits_of(self.s, shipment):
            demo_positions.scan_in(self.s, pharmacist, shipment, self.label(kit), self.key, SITE_TANK)
        problems = custody.complete_receipt(self.s, pharmacist, shipment, seal_intact=True, logger=logger)
        if store:
            self.store_at_site(shipment)
        return problems

    def store_at_site(self, shipment: Shipment) -> None:
        pharmacist = self.actor("pharmacist")
        for kit in custody.kits_of(self.s, shipment):
            if KitState(kit.state) in custody.STORABLE_AT_SITE and kit.storage_location_id is None:
                custody.store(self.s, pharmacist, kit, SITE_TANK)

    def logger_file(self, shipment: Shipment, peak: float | None = None) -> custody.LoggerRecord:
        """The logger's export: room temperature before it went into the shipper, then every 30
        minutes until now, around -185 °C (with a warm spell up to `peak`, if given)."""
        start, end = shipment.dispatched_at, self.clock.now()
        if start is None:  # ship() dispatches before anything is received; this would be a broken story
            raise RuntimeError(f"demo: shipment {shipment.number} was not dispatched")
        lines = ["timestamp,temperature_c"]
        lines += [f"{(start - timedelta(minutes=m)).isoformat(timespec='seconds')},21.4" for m in (20, 10)]
        at, n = start + timedelta(minutes=5), 0
        while at < end:
            value = -185.0 + (n % 5) * 0.8
            if peak is not None and 8 <= n <= 11:
                value = peak + (11 - n) * -6.0
            lines.append(f"{at.isoformat(timespec='seconds')},{value:.1f}")
            at, n = at + timedelta(minutes=30), n + 1
        return custody.logger_record("csv", csv_content="\n".join(lines) + "\n")

    # --- the site ----------------------------------------------------------------------------------

    def enrol(self, study: Study, screening: str, *, randomise: bool = True, site: str = SITE,
              by: str = "investigator") -> Participant:
        investigator = self.actor(by)
        participant = pharmacy.enrol(self.s, investigator, study, site_code=site, screening_number=screening)
        if randomise:  # consent today, every criterion of the study file confirmed
            pharmacy.randomise(self.s, investigator, participant, consent_date=clock.today(self.site),
                               criteria={c.code: True for c in studies.definition(study).eligibility})
        return participant

    def assign(self, participant: Participant, treatment: int = 1) -> Kit:
        kit = pharmacy.assign(self.s, self.actor("pharmacist"), self.visit(participant, treatment))
        if kit is None:  # the demo ships enough kits of both arms; this would be a broken story
            raise RuntimeError(f"demo: no kit for {participant.randomisation_number} at {SITE}")
        return kit

    def dispense(self, participant: Participant, treatment: int = 1) -> Kit:
        kit = self.assign(participant, treatment)
        pharmacy.dispense(self.s, self.actor("pharmacist"), self.visit(participant, treatment), self.label(kit),
                          self.key)
        return kit

    def prepare(self, participant: Participant, treatment: int = 1) -> Kit:
        kit = self.dispense(participant, treatment)
        pharmacy.start_preparation(self.s, self.actor("preparer"), self.label(kit), self.key)
        return kit

    def treat(self, participant: Participant, day: int, treatment: int = 1, *, hour: int = 9) -> Kit:
        """Assigned and dispensed at hh:00, thawed or prepared at hh:30, the preparer's record and
        syringe labels by hh:44, the bedside scans at hh:50, both glands within the hour."""
        self.clock.at(day, f"{hour:02d}:00")
        kit = self.dispense(participant, treatment)
        self.clock.at(day, f"{hour:02d}:30")
        pharmacy.start_preparation(self.s, self.actor("preparer"), self.label(kit), self.key)
        preparation_demo.record(self.s, self.actor("preparer"), self.visit(participant, treatment),
                                lambda hhmm: self.clock.at(day, hhmm), hour)
        investigator = self.actor("investigator")
        self.clock.at(day, f"{hour:02d}:50")
        preparation_demo.bedside(self.s, investigator, self.visit(participant, treatment), self.key)
        for gland, minutes in ((1, 52), (2, 58)):
            self.clock.at(day, f"{hour:02d}:{minutes}")
            pharmacy.administer(self.s, investigator, self.visit(participant, treatment), gland=gland, volume_ml="1.0")
        return kit

    # --- the story ---------------------------------------------------------------------------------

    def past(self) -> None:
        at, s = self.clock.at, self.s
        custody.add_location(s, self.actor("supply"), site_code=None, code=BENCH_TANK, name="Kit tank K (vapour LN2)",
                             kind="tank")
        custody.add_location(s, self.actor("pharmacist"), site_code=SITE, code=SITE_TANK,
                             name="Pharmacy dry-storage tank 1 (vapour LN2)", kind="tank")
        at(0, "09:00")
        first = self.manufacture((11, 12, 13), "NACL-26B01")
        at(16, "10:00")
        self.release(first)
        asc_a, asc_b, asc_c, saline = first
        at(17, "11:00")
        self.package(self.long, 16, [asc_a, asc_b], [saline])
        self.package(self.sjogren, 8, [asc_c], [saline])

        at(18, "09:00")
        long_first, sjogren_first = self.ship(self.long, None, "0118"), self.ship(self.sjogren, 6, "0119")
        at(19, "10:30")
        self.receive(long_first, self.logger_file(long_first))
        self.receive(sjogren_first, self.logger_file(sjogren_first))

        # NCT06805448: one treatment, on the day of randomisation
        at(20, "08:30")
        self.sjogren_treated.append(self.enrol(self.sjogren, "SCR-201"))
        self.treat(self.sjogren_treated[0], 20)

        # NCT07290946: treatment 1, and treatment 2 four months later
        at(22, "08:30")
        twice = self.enrol(self.long, "SCR-101")
        self.treat(twice, 22)
        at(30, "08:30")
        self.treat(self.enrol(self.long, "SCR-102"), 30)  # treatment 2 is due now

        at(45, "08:30")  # dispensed, then returned unopened: the participant came with a fever
        returned = self.enrol(self.long, "SCR-103")
        at(45, "09:00")
        kit_back = self.dispense(returned)
        at(45, "09:40")
        pharmacy.return_kit(s, self.actor("pharmacist"), self.label(kit_back), self.key,
                            "intact, label and seal unbroken; not thawed (participant febrile, visit postponed)")
        self.treat(returned, 47)
        at(50, "14:00")
        monitoring.verify_accountability(s, self.user("monitor"), PW, LONG, SITE)

        at(60, "08:30")
        self.sjogren_treated.append(self.enrol(self.sjogren, "SCR-202"))
        self.treat(self.sjogren_treated[1], 60)

        at(70, "08:30")  # prepared, then stopped before the first injection
        stopped = self.enrol(self.long, "SCR-104")
        at(70, "09:00")
        self.prepare(stopped)
        at(70, "09:25")
        pharmacy.record_not_administered(s, self.actor("investigator"), self.visit(stopped, 1),
                                         "vasovagal reaction before the first injection; procedure stopped")

        at(80, "09:00")
        second = self.manufacture((14,))
        staged = self.manufacture((15,))[0]
        at(96, "10:00")
        self.release(second)
        release_demo.certify_with_sterility_pending(s, staged)  # two-step release: it travels before final
        release.release_for_shipment(s, self.user("supply"), PW, staged)
        at(97, "09:00")
        self.package(self.long, 12, [asc_b, *second], [saline])
        self.package(self.long, 4, [staged], [saline])  # awaiting final release, both arms

        # the two unused kits: counted, authorised for destruction, destroyed with a witness
        at(97, "10:00")
        unused = [accountability.stored(s, Kit, kit_id, "kit")
                  for kit_id in (kit_back.id, self.visit(stopped, 1).kit_id)]
        blinded = kits.blinded_lot_of(s, unused[0])
        if blinded is None:  # packaged kits belong to a blinded lot; this would be a broken story
            raise RuntimeError(f"demo: kit {unused[0].number} has no blinded lot")
        expected = accountability.row_of(s, self.long, self.site, blinded).counts["on_hand"]
        accountability.reconcile(s, self.user("pharmacist"), PW, self.long, self.site, blinded, expected, None)
        at(97, "10:30")
        order = destruction.authorise(s, self.user("supply"), PW, self.long, self.site, [k.number for k in unused])
        at(98, "14:00")
        destruction.record_destruction(s, self.user("pharmacist"), PW, order,
                                       method="incineration as medicinal waste (hospital waste contractor)",
                                       destroyed_on=self.clock.now().date(), witness="Hanne Vestergaard")

        at(99, "09:00")  # held on receipt: the logger record could not be read; QA accepts on the backup
        held_then_accepted = self.ship(self.long, 6, "0199")
        at(100, "10:30")
        self.receive(held_then_accepted, custody.logger_record("missing"), store=False)
        self.sjogren_treated.append(self.enrol(self.sjogren, "SCR-203"))
        self.treat(self.sjogren_treated[2], 100, hour=13)
        at(101, "11:00")
        custody.assess(s, self.user("qa"), held_then_accepted, "accept",
                       "courier's backup logger read out: -186 to -179 °C for the whole transit; seal intact", PW)
        self.store_at_site(held_then_accepted)

        at(105, "09:00")  # shipped and received awaiting final release; the QP releases them at the site
        awaiting = self.ship(self.long, None, "0205", awaiting_final_release=True)
        at(106, "10:30")
        self.receive(awaiting, self.logger_file(awaiting))
        at(111, "11:00")
        release_demo.certify_finally(s, staged)

        self.treat(twice, 142, treatment=2)  # 120 days after treatment 1

        at(144, "02:10")
        unblinding.unblind(s, self.user("investigator"), PW, self.sjogren,
                           self.sjogren_treated[1].randomisation_number, "serious_adverse_event",
                           "admitted with severe bilateral submandibular swelling and fever; the treating "
                           "physician needs the allocation (SAE report to follow)")

        at(148, "09:00")  # held on receipt yesterday: the logger read -121 °C; QA has not assessed it yet
        held = self.ship(self.long, 2, "0248")
        at(149, "10:15")
        self.receive(held, self.logger_file(held, peak=-121.0))
        at(149, "15:00")
        self.ship(self.long, 2, "0249")  # in transit

    def today(self) -> None:
        """On the wall clock: a shipment being packed, participants at every stage before treatment."""
        s, supply = self.s, self.actor("supply")
        packing = custody.create(s, supply, LONG, SITE)
        for kit in self.at_bench(self.long)[:2]:
            custody.pack(s, supply, packing, self.label(kit), self.key)
        self.enrol(self.sjogren, "SCR-204", randomise=False)
        self.enrol(self.sjogren, "SCR-205")  # treatment due today
        self.assign(self.enrol(self.sjogren, "SCR-206"))
        self.assign(self.enrol(self.long, "SCR-105"))
        self.dispense(self.enrol(self.long, "SCR-106"))
        self.enrol(self.long, "SCR-107")  # treatment 1 due
        self.enrol(self.long, "SCR-108", randomise=False)
        # the second site: its own shipment being packed and its own participants
        second = custody.create(s, supply, LONG, sites.SECOND)
        for kit in self.at_bench(self.long)[:2]:
            custody.pack(s, supply, second, self.label(kit), self.key)
        self.enrol(self.long, "AAR-001", site=sites.SECOND, by="investigator-aarhus")
        self.enrol(self.long, "AAR-002", randomise=False, site=sites.SECOND, by="investigator-aarhus")
        resupply.seed_resupply(s, supply)  # settings per site and arm, and an open proposal
        self.prepare(self.enrol(self.long, "SCR-109"))  # last: the clock has its 60 minutes
