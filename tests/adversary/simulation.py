"""A simulated trial at one site, both studies, for the adversarial blinding test.

NCT07290946: 100 participants, one a day, two treatments 120 days apart; NCT06805448: 40
participants, one every other day, one treatment. Lots and kit lists are made as tests/kitworld.py
makes them (lots inserted released, kit lists sealed, packaging runs through the service layer);
everything after that runs on the story's clock through the service layer (the unblinded people:
supply, QA, the preparer) or over HTTP (what the blinded people do and see: the pharmacist's
stock lists, assignments, refusals and scans; the monitor's and admin's reads).

What happens, so that every channel of issue 12 has something to show:
- supply keeps the site stocked as an IRT would: each morning it counts the site's usable kits of
  each arm (a logged sealed read) and, below a minimum of either, ships as many kits of each arm
  (so a shipment says nothing), chosen at random within the earliest-expiring blinded lot;
- the first blinded lot of NCT07290946 expires on day 75, leaving expired kits at the site (supply
  ships a kit only while the product's do-not-ship rule allows it, so that lot travels until day 15);
- day 60: a lot quarantine (policy "blinded_lot") holds every kit of NCT07290946 at the site; the
  shipment sent to replace them arrives with a temperature excursion and is held until QA accepts
  it on day 66, so participants are refused ("No kit is available") for six days; QA lifts the
  quarantine on day 70;
- day 40: a proportionate lot quarantine in NCT06805448, lifted on day 46; a shipment of it held
  for a missing logger record and accepted the next day;
- a kit dispensed and returned unopened (day 30), a dose prepared and not administered (day 35),
  an emergency unblinding (day 50).

A one-arm stock-out (a participant refused while usable kits of the other arm sit at the site)
tells the pharmacist those kits' arm under any selection rule; `Trial.one_arm_refusals` counts the
refusals that happen with usable kits at the site, which this supply plan keeps at zero.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select

from cellbench import clock, custody, pharmacy, qrpayload, sealed, studies, unblinding, users
from cellbench.audit import Actor
from cellbench.db import Database
from cellbench.models import BlindedLot, Kit, KitQuarantine, KitState, Lot, Participant, Visit
from cellbench.supply import quarantine

from ..bedside_support import checked_at_bedside
from ..conftest import PASSWORD, SECRET, actor_of
from ..eligible import eligible
from ..kitworld import arms as kit_arms
from ..kitworld import load_studies, package, released_lot, sealed_kit_list
from ..trialworld import randomisation_list
from .observations import Attempt, KitLine, Observations, Observer, Scan, Truth
from .world import Plan, StoryClock, quick_commits, seeded_system_random

LONG, SJOGREN = "NCT07290946", "NCT06805448"
SITE, SITE_TANK = "RH-ENT", "RH-LN2-1"
SAMPLE = 4  # every kit is read by the pharmacist and the monitor; every 4th by every blinded role


class Dropped(Exception):
    pass


@dataclass
class Person:
    study: str
    screening: str
    number: str | None = None
    due: list[tuple[int, int, int]] = field(default_factory=list)  # (treatment, first day, last day)


class Trial:
    def __init__(self, db: Database, app, plan: Plan = Plan()):
        self.db, self.plan, self.clock = db, plan, StoryClock()
        quick_commits(db)
        self.seen = Observations()
        self.observer = Observer(app, self.seen)
        self.rng = random.Random(plan.seed)
        self.people: list[Person] = []
        self.open_shipments: dict[str, list[str]] = {LONG: [], SJOGREN: []}
        self.dispatched: dict[str, int] = {}  # shipment in transit -> the day it left
        self.excursion: dict[str, tuple[dict, int]] = {}  # study -> its next receipt's logger, QA's delay
        self.held: dict[str, int] = {}  # shipment held on receipt -> the day QA accepts it
        self.held_seen: dict[tuple[str, int], list[KitLine]] = {}  # (study, day) -> held kits listed
        self.one_arm_refusals = 0
        self.events: dict[int, list[Callable[[], None]]] = {}
        self.lots: dict[str, list[str]] = {}
        self._actors: dict[str, Actor] = {}
        # screening number, treatment -> what goes wrong at that visit
        self.special = {("SCR-946-028", 1): "return", ("SCR-946-033", 1): "stopped"}

    # --- set-up: lots, lists, packaging (tests/kitworld.py's way) ----------------------------------

    def actor(self, username: str) -> Actor:
        if username not in self._actors:
            self._actors[username] = actor_of(self.db, username)
        return self._actors[username]

    def _lot(self, kind: str, number: str, units: int, expires_day: int) -> str:
        return released_lot(self.db, kind, number, units=units, expiry=self.clock.date(expires_day))

    def setup(self) -> None:
        p, k = self.plan, self.plan.kits_per_run
        self.clock.at(0, "07:00")
        load_studies(self.db)
        with self.db.write() as s:
            custody.add_location(s, self.actor("frida"), site_code=SITE, code=SITE_TANK,
                                 name="Pharmacy tank 1", kind="tank")
        self.arms = {LONG: randomisation_list(self.db, LONG, p.long_participants),
                     SJOGREN: randomisation_list(self.db, SJOGREN, p.sjogren_participants)}
        sealed_kit_list(self.db, LONG, p.long_runs * k, seed=f"adv-long-{p.seed}")
        sealed_kit_list(self.db, SJOGREN, 60, seed=f"adv-sjogren-{p.seed}")
        placebo = self._lot("placebo", "PLB-2026-0901", p.long_runs * k + 4, 400)
        self.lots[LONG] = []
        for run in range(p.long_runs):
            asc = self._lot("asc", f"ASC-2026-09{run + 1:02d}", k + 2, 75 if run == 0 else 400)
            self.lots[LONG].append(asc)
            package(self.db, LONG, k, [asc], [placebo])
        sj_placebo = self._lot("placebo", "PLB-2026-0902", 64, 400)
        first, second, third = (self._lot("asc", f"ASC-2026-098{n}", units, 400)
                                for n, units in ((1, 16), (2, 30), (3, 32)))
        package(self.db, SJOGREN, 30, [first, second], [sj_placebo])
        package(self.db, SJOGREN, 30, [third], [sj_placebo])
        self.lots[SJOGREN] = [first, second, third]
        with self.db.read() as s:
            self.seen.labels = {n: qrpayload.make_payload(n, SECRET) for n in s.scalars(select(Kit.number))}
        self.supply_knows = kit_arms(self.db)  # supply is unblinded: one logged read of every kit's arm

    # --- supply: arm-aware resupply, shipments, receipt ----------------------------------------------

    def resupply(self, day: int) -> None:
        """Each morning: below `minimum` usable kits of either arm at the site, and nothing on its
        way, ship `batch` kits of each arm from the earliest-expiring blinded lot at the bench."""
        for study, minimum, batch in ((LONG, 3, 5), (SJOGREN, 2, 3)):
            self.open_shipments[study] = [n for n in self.open_shipments[study] if self._open(n)]
            if self.open_shipments[study]:
                continue
            with self.db.write() as s:
                sara, row = self.actor("sara"), studies.by_code(s, study)
                at_site = self._kits(s, row.id, KitState.at_site, at_site=True, expiring_after=self.clock.date(day + 7))
                counts = Counter(self.supply_knows[kt.number] for kt, _ in at_site)
                if min(counts["active"], counts["placebo"]) >= minimum:
                    continue
                bench = [(kt, expiry) for kt, expiry in self._kits(s, row.id, KitState.released, at_site=False,
                                                                    expiring_after=self.clock.date(day + 30))
                         if custody.kit_in_date_to_ship(s, kt, self.clock.date(day)) is None]
                chosen: list[Kit] = []
                for arm in ("active", "placebo"):
                    pool = [(kt, expiry) for kt, expiry in bench if self.supply_knows[kt.number] == arm]
                    earliest = min((expiry for _, expiry in pool), default=None)
                    first = [kt for kt, expiry in pool if expiry == earliest]
                    chosen += self.rng.sample(first, min(batch, len(first)))
                if not chosen:
                    continue
                shipment = custody.create(s, sara, study, SITE)
                for kt in sorted(chosen, key=lambda kt: kt.number):
                    custody.pack(s, sara, shipment, self.seen.labels[kt.number], SECRET)
                custody.dispatch(s, sara, shipment, shipper_id=f"DS-{day}", seal_number=f"SEAL-{day}-{study[-2:]}",
                                 logger_id=f"TL-{day}")
                self.open_shipments[study].append(shipment.number)
                self.dispatched[shipment.number] = day

    @staticmethod
    def _kits(s, study_id: int, state: KitState, *, at_site: bool, expiring_after: date) -> list[tuple[Kit, date]]:
        """The study's kits in a state, at the site or at the bench, with a blinded expiry after a day."""
        place = Kit.site_id.is_not(None) if at_site else Kit.site_id.is_(None)
        rows = s.execute(select(Kit, BlindedLot.expiry).join(BlindedLot, BlindedLot.id == Kit.blinded_lot_id)
                         .where(Kit.study_id == study_id, Kit.state == state, place,
                                BlindedLot.expiry >= expiring_after).order_by(Kit.number))
        return [(kit, expiry) for kit, expiry in rows]

    def _open(self, number: str) -> bool:
        with self.db.read() as s:
            return custody.by_number(s, number).state in ("packing", "in_transit", "quarantined")

    def receive(self, day: int) -> None:
        """The pharmacist scans every kit of each shipment that came (over HTTP: her own scans,
        timed), completes the receipt and stores the kits; a shipment with a logger problem is held
        for QA, who accepts it `wait` days later."""
        for study in (LONG, SJOGREN):
            for number in self.open_shipments[study]:
                if self.dispatched.get(number, day) >= day:
                    continue
                with self.db.read() as s:
                    members = [kt.number for kt in custody.kits_of(s, custody.by_number(s, number))]
                for kit in members:
                    seen = self.observer.request("frida", "POST", f"/api/v1/shipments/{number}/receipt-scans",
                                                 json={"code": self.seen.labels[kit]})
                    self.seen.scans.append(Scan("receipt", kit, seen.seconds, seen.size, seen.status))
                    self.clock.tick(0.2)
                logger, wait = self.excursion.pop(study, ({"source": "manual", "minimum": -190, "maximum": -180}, 0))
                with self.db.write() as s:
                    problems = custody.complete_receipt(s, self.actor("frida"), custody.by_number(s, number),
                                                        seal_intact=True, logger=custody.logger_record(**logger))
                del self.dispatched[number]
                if problems:
                    self.held[number] = day + wait
                else:
                    self.store(number)

    def store(self, number: str) -> None:
        with self.db.write() as s:
            frida = self.actor("frida")
            for kt in custody.kits_of(s, custody.by_number(s, number)):
                if KitState(kt.state) in custody.STORABLE_AT_SITE and kt.storage_location_id is None:
                    custody.store(s, frida, kt, SITE_TANK)

    def accept(self, number: str, reason: str) -> None:
        with self.db.write() as s:
            custody.assess(s, users.by_username(s, "anna"), custody.by_number(s, number), "accept", reason, PASSWORD)
        self.store(number)

    # --- participants ----------------------------------------------------------------------------

    def enrol(self, study: str, n: int, day: int) -> None:
        person = Person(study, f"SCR-{study[-3:]}-{n:03d}")
        with self.db.write() as s:
            ida = self.actor("ida")
            row = pharmacy.enrol(s, ida, studies.by_code(s, study), site_code=SITE, screening_number=person.screening)
            person.number = pharmacy.randomise(s, ida, row, **eligible(study)).randomisation_number
            definition = studies.by_code(s, study)
            window = definition.window_days
            person.due = [(1, day, day + window)]
            if definition.treatments > 1:
                target = day + definition.interval_days
                person.due.append((2, target, target + window))
        self.people.append(person)

    def _visit(self, s, person: Person, treatment: int) -> Visit:
        participant = s.scalars(select(Participant).where(Participant.screening_number == person.screening)).one()
        return s.scalars(select(Visit).where(Visit.participant_id == participant.id,
                                             Visit.treatment == treatment)).one()

    def attempt(self, person: Person, treatment: int, day: int) -> str | None:
        """The pharmacist looks at the site's stock, then asks for the visit's kit (over HTTP)."""
        stock = self.observer.kit_lines("frida", person.study, "at_site")
        seen = self.observer.request(
            "frida", "POST", f"/api/v1/participants/{person.study}/{person.screening}/visits/{treatment}/assign")
        today = self.clock.date(day)
        if seen.status == 200:
            kit = seen.body["kit_number"]
            self.seen.attempts.append(Attempt(today, person.study, person.number or "", treatment, stock, kit))
            return kit
        if seen.status == 422:  # refused by a rule (a visit after a dose not given): the visit is dropped
            raise Dropped(seen.body)
        assert seen.status == 409, (seen.status, seen.body)
        if (person.study, day) not in self.held_seen:  # she looks at the held kits once a day
            self.held_seen[(person.study, day)] = self.observer.kit_lines("frida", person.study, "quarantined")
        held = self.held_seen[(person.study, day)]
        if any(line.expiry and line.expiry >= today for line in stock):
            self.one_arm_refusals += 1
        self.seen.attempts.append(Attempt(today, person.study, person.number or "", treatment, stock, None,
                                          str(seen.body), held))
        return None

    def dispense(self, person: Person, treatment: int, kit: str) -> None:
        seen = self.observer.request(
            "frida", "POST", f"/api/v1/participants/{person.study}/{person.screening}/visits/{treatment}/dispense",
            json={"code": self.seen.labels[kit]})
        assert seen.status == 200, seen.body
        self.seen.scans.append(Scan("dispense", kit, seen.seconds, seen.size, seen.status))

    def prepare_and_give(self, person: Person, treatment: int, kit: str, stopped: bool) -> None:
        """The preparer thaws or prepares the kit, the investigator injects both glands (or stops):
        unblinded and blinded work the test does not watch, in one transaction to save time."""
        with self.db.write() as s:
            pharmacy.start_preparation(s, self.actor("jonas"), self.seen.labels[kit], SECRET)
            visit = self._visit(s, person, treatment)
            if stopped:
                self.clock.tick(15)
                pharmacy.record_not_administered(s, self.actor("ida"), visit,
                                                 "vasovagal reaction before the first injection; procedure stopped")
                return
            checked_at_bedside(s, self.actor("ida"), visit)
            for gland in (1, 2):
                self.clock.tick(6)
                pharmacy.administer(s, self.actor("ida"), visit, gland=gland, volume_ml="1.0")

    def treat(self, person: Person, treatment: int, day: int) -> bool:
        try:
            kit = self.attempt(person, treatment, day)
        except Dropped:
            return True
        if kit is None:
            return False
        self.clock.tick(3)
        self.dispense(person, treatment, kit)
        special = self.special.pop((person.screening, treatment), None)
        if special == "return":  # the participant is febrile: the kit comes back unopened, treated tomorrow
            with self.db.write() as s:
                pharmacy.return_kit(s, self.actor("frida"), self.seen.labels[kit], SECRET,
                                    "intact, seal unbroken, not thawed (participant febrile)")
            return False
        self.clock.tick(10)
        self.prepare_and_give(person, treatment, kit, stopped=special == "stopped")
        return True

    # --- the story -------------------------------------------------------------------------------

    def quarantine(self, study: str, *lots: str, policy: str) -> None:
        """Supply quarantines manufacturing lots (a reagent under investigation); right after, the
        monitor lists the study's kits."""
        with self.db.write() as s:
            for row in s.scalars(select(Lot).where(Lot.number.in_(lots))):
                quarantine.open_manual(s, self.actor("sara"), row, policy,
                                       "supplier notice: a reagent lot used in manufacture is under investigation")
        self.seen.quarantine_snapshots.append((study, self.observer.kit_lines("mette", study)))

    def quarantine_site_stock(self, study: str, day: int) -> None:
        """The ASC lots behind the site's usable stock, every kit of their blinded lots held."""
        with self.db.write() as s:
            row = studies.by_code(s, study)
            stock = self._kits(s, row.id, KitState.at_site, at_site=True, expiring_after=self.clock.date(day))
            behind = {lot.number for blinded in {kit.blinded_lot_id for kit, _ in stock}
                      for lot in sealed.lots_of_blinded_lot(s, self.actor("sara"), blinded, why="recall")
                      if lot.number.startswith("ASC")}
        self.quarantine(study, *sorted(behind), policy="blinded_lot")

    def lift(self, study: str) -> None:
        with self.db.write() as s:
            anna = users.by_username(s, "anna")
            for q in s.scalars(select(KitQuarantine).where(KitQuarantine.state == "open")):
                if studies.by_id(s, q.study_id).code == study:
                    quarantine.lift(s, anna, q, "investigation closed: the reagent lot met its specification",
                                    PASSWORD)

    def unblind(self, person: Person) -> None:
        with self.db.write() as s:
            unblinding.unblind(s, users.by_username(s, "ida"), PASSWORD, studies.by_code(s, person.study),
                               person.number, "serious_adverse_event",
                               "severe submandibular swelling and fever; the treating physician needs the allocation")

    def run(self) -> tuple[Observations, Truth]:
        with seeded_system_random(self.plan.seed), self.clock.held():
            self.setup()
            self._story()
            self._final_views()
            self.observer.close()
            return self.seen, self._truth()

    def _story(self) -> None:
        p = self.plan
        long_days = {2 + i: i for i in range(p.long_participants)}
        sjogren_days = {3 + 2 * j: j for j in range(p.sjogren_participants)}
        for day in range(max(long_days) + 121 + 15):
            self.clock.at(day, "07:00")
            self.resupply(day)
            self.clock.at(day, "08:30")
            self.receive(day)
            self.clock.at(day, "09:00")
            self._events(day)
            self.clock.at(day, "09:30")
            if day in long_days:
                self.enrol(LONG, long_days[day], day)
            if day in sjogren_days:
                self.enrol(SJOGREN, sjogren_days[day], day)
            for person in self.people:
                for due in list(person.due):
                    treatment, first, final = due
                    if first <= day <= final:
                        self.clock.tick(2)
                        if self.treat(person, treatment, day):
                            person.due.remove(due)
                    elif day > final:
                        person.due.remove(due)  # a missed visit: the window passed

    def _events(self, day: int) -> None:
        for number, on in list(self.held.items()):
            if on == day:
                self.accept(number, "the logger record was reviewed; stability data cover the transit")
                del self.held[number]
        if day == 60:  # every kit of NCT07290946 at the site held; the replacements held on receipt
            self.quarantine_site_stock(LONG, day)
            self.excursion[LONG] = ({"source": "manual", "minimum": -190, "maximum": -121}, 4)
        if day == 70:
            self.lift(LONG)
        if day == 40:
            self.quarantine(SJOGREN, self.lots[SJOGREN][0], policy="proportionate")
            self.excursion[SJOGREN] = ({"source": "missing"}, 1)
        if day == 46:
            self.lift(SJOGREN)
        if day == 50:
            treated = [person for person in self.people if person.study == SJOGREN and not person.due]
            if treated:
                self.unblind(treated[0])

    # --- what the blinded roles read at the end, and the sealed truth -------------------------------

    def _final_views(self) -> None:
        """Every kit as each blinded role reads it (API, page, audit trail, a lookup scan), the
        blinded lots, and the audit-trail exports."""
        self.clock.at(self.clock_days() + 1, "10:00")
        o, seen = self.observer, self.seen
        for study in (LONG, SJOGREN):
            for n, line in enumerate(o.kit_lines("mette", study)):
                views = seen.kit_views.setdefault(line.number, {})
                views["frida api"] = o.get("frida", f"/api/v1/kits/{line.number}")
                views["mette audit"] = o.get("mette", f"/api/v1/audit/kit/{line.number}")
                lookup = o.request("frida", "POST", "/api/v1/kits/scan", json={"code": seen.labels[line.number]})
                views["frida lookup"] = lookup
                seen.scans.append(Scan("lookup", line.number, lookup.seconds, lookup.size, lookup.status))
                if n % SAMPLE == 0:  # the other roles' reads of every SAMPLE-th kit in number order (random)
                    views["ida api"] = o.get("ida", f"/api/v1/kits/{line.number}")
                    views["mette api"] = o.get("mette", f"/api/v1/kits/{line.number}")
                    views["adam audit"] = o.get("adam", f"/api/v1/audit/kit/{line.number}")
                    views["frida page"] = o.get("frida", f"/kits/{line.number}")
                if line.blinded_lot and line.blinded_lot not in seen.blinded_lots:
                    lot = o.get("mette", f"/api/v1/blinded-lots/{line.blinded_lot}")
                    seen.blinded_lots[line.blinded_lot] = lot.body
        for who in ("mette", "adam"):
            export = o.get(who, "/audit.csv")
            seen.exports[who] = export.body if export.status == 200 else ""

    def clock_days(self) -> int:
        return (self.clock.now.astimezone(clock.zone()).date() - self.clock.first).days

    def _truth(self) -> Truth:
        with self.db.write() as s:
            sara = self.actor("sara")
            rows = list(s.scalars(select(Kit)))
            arms = sealed.arms_of_kits(s, sara, [kt.id for kt in rows], why="adversarial blinding test: scoring")
        participants = {number: arm for by_study in self.arms.values() for number, arm in by_study.items()}
        return Truth({kt.number: arms[kt.id] for kt in rows if kt.id in arms}, participants)
