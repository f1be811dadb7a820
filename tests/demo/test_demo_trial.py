"""The demo's trials at the site (issue 6): seeded once into a fresh database for this module, as
`cellbench serve --demo` seeds it, and read as a demo user would find it."""
from __future__ import annotations

import html
import re
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from sqlalchemy import func, select

from cellbench import accountability, clock, custody, demo, integrity, lots, pharmacy, steps, studies, users
from cellbench.app import create_app
from cellbench.clock import utcnow
from cellbench.config import Settings
from cellbench.db import Database
from cellbench.demo import trial as demo_trial
from cellbench.models import (
    Administration,
    AuditEvent,
    BlindedLot,
    CustodyEvent,
    Destruction,
    Donation,
    Equipment,
    Kit,
    Lot,
    MaterialLot,
    Notification,
    Participant,
    Reconciliation,
    Shipment,
    Signature,
    StorageLocation,
    Study,
    Unblinding,
    Visit,
)
from cellbench.specifications import versions as spec_versions

from ..conftest import FAST_HASHER, PG_URL, SECRET, _empty_postgres, sign_in

LONG, SJOGREN = demo_trial.LONG, demo_trial.SJOGREN
PW = demo.DEMO_PASSWORD


@pytest.fixture(scope="module")
def demo_db(_template, tmp_path_factory):
    """One fresh database with the whole demo, seeded once for every test here (it takes seconds)."""
    users.configure(12, 5, FAST_HASHER)
    if PG_URL:
        database = Database(_template)
        _empty_postgres(database)
    else:
        path = tmp_path_factory.mktemp("demo_trial") / "cellbench.db"
        shutil.copyfile(_template, path)
        database = Database(f"sqlite:///{path}")
    with database.write() as s:
        demo.seed(s, users.cli_actor())
    yield database
    database.dispose()


def study_id(s, code: str) -> int:
    return studies.by_code(s, code).id


def kit_states(s, code: str) -> dict[str, int]:
    return dict(s.execute(select(Kit.state, func.count()).where(Kit.study_id == study_id(s, code))
                          .group_by(Kit.state)).all())


def visits(s, code: str) -> dict[str, list[str]]:
    """screening number -> visit states by treatment ([] when not randomised)."""
    found: dict[str, list[str]] = {}
    for participant in s.scalars(select(Participant).where(Participant.study_id == study_id(s, code))
                                 .order_by(Participant.screening_number)):
        found[participant.screening_number] = [v.state for v in pharmacy.visits_of(s, participant)]
    return found


def participant(s, code: str, screening: str) -> Participant:
    return pharmacy.participant_by_ref(s, code, screening)


# --- time ------------------------------------------------------------------------------------------


def test_the_story_starts_five_months_ago_and_its_audit_trail_runs_forward_to_now(demo_db):
    with demo_db.read() as s:
        times = list(s.scalars(select(AuditEvent.at).order_by(AuditEvent.seq)))
    assert all(earlier <= later for earlier, later in pairwise(times)), "the audit trail goes back in time"
    assert timedelta(days=149) < utcnow() - times[0] < timedelta(days=151)
    assert times[-1] <= utcnow()
    assert abs(utcnow() - clock.wall_now()) < timedelta(seconds=1), "the story's clock is put back"


def test_the_story_clock_only_moves_forward_and_never_past_the_wall_clock():
    clock = demo_trial.StoryClock(days=10)
    with clock.held():
        clock.at(2, "10:00")
        assert abs(utcnow() - clock.moment(2, "10:00")) < timedelta(seconds=5)
        clock.at(1, "10:00")  # asked to go back: it stays where it is
        assert utcnow() >= clock.moment(2, "10:00")
        with pytest.raises(ValueError):
            clock.at(11, "00:00")
        clock.catch_up()
        assert abs(utcnow() - datetime.now(UTC)) < timedelta(seconds=1)
    assert abs(utcnow() - clock.wall_now()) < timedelta(seconds=1), "the story's clock is put back"


def test_what_people_use_today_is_still_in_date(demo_db):
    today = datetime.now(UTC).date()
    with demo_db.read() as s:
        assert min(s.scalars(select(Equipment.calibration_due))) > today
        assert min(s.scalars(select(MaterialLot.expiry))) > today
        assert min(s.scalars(select(BlindedLot.expiry))) > today + timedelta(days=180)
        assert min(e for e in s.scalars(select(Lot.expiry)) if e) > today + timedelta(days=180)


def test_the_in_process_lot_continues_on_the_wall_clock(demo_db):
    """Its steps were recorded over the last hours, with today's materials and instruments."""
    with demo_db.read() as s:
        [number] = s.scalars(select(Lot.number).where(Lot.state == "in_process"))
        started = s.scalars(select(Lot.created_at).where(Lot.number == number)).one()
    assert utcnow() - started < timedelta(hours=1)

    class Undo(Exception):
        """Rolls the next step back: the other tests read this database too."""

    with pytest.raises(Undo), demo_db.write() as s:
        lot = lots.by_number(s, number)
        step = next(st for st in spec_versions.parsed(lots.spec_of(s, lot)).steps if st.code == "harvest")
        donation = s.get(Donation, lot.donation_id)
        demo.run_step(s, lot, step, demo.asc_values("harvest", 1, utcnow(), lot, donation.identifier))
        harvest = steps.entries_of(s, lot)["harvest"]
        assert [e.performed_signature_id is not None for e in harvest] == [True]
        raise Undo


# --- kits, shipments and storage ---------------------------------------------------------------------


def test_kits_of_both_trials_are_at_every_stage(demo_db):
    with demo_db.read() as s:
        assert kit_states(s, LONG) == {"released": 18, "in_transit": 2, "quarantined": 2,
                                       "at_site": 13 + 4, "allocated": 1, "dispensed": 1, "in_preparation": 1,
                                       "administered": 4, "destroyed": 2}
        assert kit_states(s, SJOGREN) == {"planned": 8, "packaged": 8, "released": 2, "at_site": 2, "allocated": 1,
                                          "administered": 3}


def test_shipments_are_received_held_in_transit_and_being_packed(demo_db):
    with demo_db.read() as s:
        found = {sh.number: sh for sh in s.scalars(select(Shipment).order_by(Shipment.id))}
        by_state = Counter(sh.state for sh in found.values())
        # two being packed: one for RH-ENT, one for the second site, AUH-ENT
        assert by_state == {"received": 4, "quarantined": 1, "in_transit": 1, "packing": 2}

        [held] = [sh for sh in found.values() if sh.state == "quarantined"]
        assert custody.problems_of(held) == ["the temperature reached -121 °C, above the -150 °C limit"]
        assert held.qa_decision is None and custody.allowed_actions(held, _actor(s, "qa")) == ["accept", "reject"]
        assert {k.state for k in custody.kits_of(s, held)} == {"quarantined"}
        assert custody.reading_count(s, held) > 40

        [accepted] = [sh for sh in found.values() if sh.qa_decision == "accepted"]
        assert accepted.state == "received" and accepted.logger_source == "missing"
        assert s.get(Signature, accepted.qa_signature_id).signer_name == "Anna Berg"

        [moving] = [sh for sh in found.values() if sh.state == "in_transit"]
        assert {k.state for k in custody.kits_of(s, moving)} == {"in_transit"}
        for packing in [sh for sh in found.values() if sh.state == "packing"]:
            assert len(custody.kits_of(s, packing)) == 2 and packing.dispatched_at is None

        for code in (LONG, SJOGREN):  # every study's first shipment came in within the dry shipper's hold time
            first = next(sh for sh in found.values() if sh.study_id == study_id(s, code))
            assert first.state == "received" and first.logger_max < -150 and first.transit_minutes < 7 * 24 * 60


def test_a_blinded_lot_shipped_under_two_step_release_was_released_at_the_site(demo_db):
    with demo_db.read() as s:
        shipped = s.scalars(select(AuditEvent.entity_id).where(AuditEvent.action == "kit ship awaiting release")).all()
        released = s.scalars(select(AuditEvent.entity_id).where(AuditEvent.action == "kit final release at site")).all()
        assert len(shipped) == 4 and sorted(released) == sorted(shipped)
        # available at the site since the final certification (and used since, earliest expiry first)
        assert {k.state for k in s.scalars(select(Kit).where(Kit.number.in_(shipped)))} <= {
            "at_site", "allocated", "dispensed", "in_preparation", "administered"}
        decisions = [d.decision for lot in s.scalars(select(Lot)) for d in lots.decisions_of(s, lot)]
        assert decisions.count("release_for_shipment") == 1 and decisions.count("certify_final_shipped") == 1


def _actor(s, username: str):
    return users.actor(s, users.by_username(s, username))


def test_kits_are_stored_at_the_bench_and_in_the_site_pharmacy(demo_db):
    with demo_db.read() as s:
        stored = custody.stored_counts(s)
        bench, site = (custody.location_by_code(s, code) for code in (demo_trial.BENCH_TANK, demo_trial.SITE_TANK))
        assert bench.site_id is None and site.site_id == custody.site_by_code(s, "RH-ENT").id
        assert stored[bench.id] == 2 + 2  # NCT06805448's last two, and the last two of NCT07290946's second run
        assert stored[site.id] == (13 + 4 + 2 + 1) + (2 + 1)  # in stock, held on receipt and assigned, by study
        at_site = s.scalars(select(Kit).where(Kit.state == "at_site"))
        # received in one pass: each into a box of the tank, its location naming tank, rack, box and position
        assert all(k.location == f"RH-ENT · {custody.position_of(s, k).text}"
                   and k.location.startswith(f"RH-ENT · {s.get(StorageLocation, k.storage_location_id).name} · rack ")
                   for k in at_site)


# --- participants -------------------------------------------------------------------------------------


def test_participants_of_both_trials_are_at_every_stage(demo_db):
    with demo_db.read() as s:
        assert visits(s, LONG) == {
            "SCR-101": ["administered", "administered"],  # treatments 1 and 2
            "SCR-102": ["administered", "planned"],  # treatment 2 due now
            "SCR-103": ["administered", "planned"],  # a returned kit, then treated; treatment 2 due soon
            "SCR-104": ["not_administered", "planned"],
            "SCR-105": ["kit_assigned", "planned"],
            "SCR-106": ["dispensed", "planned"],
            "SCR-107": ["planned", "planned"],  # randomised, treatment 1 due
            "SCR-108": [],  # enrolled, not randomised
            "SCR-109": ["in_preparation", "planned"],
            "AAR-001": ["planned", "planned"],  # at the second site, AUH-ENT
            "AAR-002": [],
        }
        assert visits(s, SJOGREN) == {"SCR-201": ["administered"], "SCR-202": ["administered"],
                                      "SCR-203": ["administered"], "SCR-204": [], "SCR-205": ["planned"],
                                      "SCR-206": ["kit_assigned"]}
        today = datetime.now(clock.zone(pharmacy.context(s, _visit(s, LONG, "SCR-102", 2)).site)).date()
        due = _visit(s, LONG, "SCR-102", 2)
        assert due.window_start <= today <= due.window_end


def _visit(s, code: str, screening: str, treatment: int) -> Visit:
    return pharmacy.visit_by_ref(s, code, screening, treatment)


def test_treatment_two_came_four_months_after_treatment_one_into_both_glands(demo_db):
    with demo_db.read() as s:
        first, second = (_visit(s, LONG, "SCR-101", t) for t in (1, 2))
        given = {v.treatment: list(s.scalars(select(Administration).where(Administration.visit_id == v.id)
                                             .order_by(Administration.dose))) for v in (first, second)}
        assert [[a.dose for a in rows] for rows in given.values()] == [[1, 2], [1, 2]]
        assert (given[2][0].administered_at - given[1][0].administered_at).days == 120
        assert first.kit_id != second.kit_id
        for visit in (first, second):
            assert visit.preparation_started_at <= given[visit.treatment][0].administered_at <= visit.use_by


def test_a_returned_kit_and_a_stopped_treatment_went_to_destruction(demo_db):
    with demo_db.read() as s:
        returned = _visit(s, LONG, "SCR-103", 1)
        [back] = [int(i) for i in returned.replaced_kit_ids.split(",")]
        chain = [e.action for e in s.scalars(select(CustodyEvent).where(CustodyEvent.kit_id == back)
                                             .order_by(CustodyEvent.id))]
        assert chain[-3:] == ["dispensed", "returned", "destroyed"]
        stopped = _visit(s, LONG, "SCR-104", 1)
        assert s.get(Kit, stopped.kit_id).state == "destroyed"


def test_the_running_preparation_has_its_use_window_left(demo_db):
    with demo_db.read() as s:
        [running] = pharmacy.preparations_running(s)
        assert running.use_by - running.preparation_started_at == timedelta(minutes=60)
        assert 0 < pharmacy.minutes_left(running) <= 60


# --- accountability, destruction, unblinding -------------------------------------------------------------------


def test_a_balanced_count_then_a_witnessed_destruction_with_its_certificate(demo_db):
    with demo_db.read() as s:
        [order] = s.scalars(select(Destruction))
        [count] = s.scalars(select(Reconciliation))
        assert count.balanced and count.at < order.authorised_at
        assert order.state == "destroyed" and order.witness and order.method and order.destroyed_on
        data = accountability.gather(s, order)
        assert [k.state_before for k in data.kits] and len(data.kits) == 2
        assert sorted(k.state_before for k in data.kits) == ["Not administered", "Returned"]
        assert [sig.meaning for sig in data.signatures] == ["performed", "approved", "destroyed"]
        pdf = accountability.certificate_pdf(data, zone=clock.zone(custody.site_by_code(s, "RH-ENT")),
                                             printed_by="Mette Dahl", printed_at=utcnow())
        assert pdf.startswith(b"%PDF")


def test_the_monitor_verified_a_sites_accountability_and_the_kits_moved_since_show(demo_db):
    with demo_db.read() as s:
        study, site = studies.by_code(s, "NCT07290946"), custody.site_by_code(s, "RH-ENT")
        now = accountability.standing(s, study, site)
        [(verification, signature)] = now.history
        assert signature is not None and signature.signer_name == "Mette Dahl" and signature.meaning == "verified"
        assert verification.figures_hash != now.figures_hash, "kits moved after the monitoring visit"


def test_one_emergency_unblinding_told_the_sponsor(demo_db):
    with demo_db.read() as s:
        [row] = s.scalars(select(Unblinding))
        who = s.get(Participant, row.participant_id)
        assert (s.get(Study, who.study_id).code, who.screening_number) == (SJOGREN, "SCR-202")
        assert who.unblinded_at == row.at and row.reason_code == "serious_adverse_event"
        assert s.get(Signature, row.signature_id).meaning == "unblinded"
        [note] = s.scalars(select(Notification).where(Notification.kind == "emergency_unblinding",
                                                      Notification.audience == "unblinded"))
        assert note.to_address == s.get(Study, who.study_id).emergency_email
        assert f"participant {who.randomisation_number}" in note.subject and "Arm: " in note.body


# --- as a demo user finds it --------------------------------------------------------------------------------


def words(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_the_demo_users_find_the_trials_in_their_pages(demo_db):
    app = create_app(Settings(database_url=demo_db.url, secret_key=SECRET, demo=False), password_hasher=FAST_HASHER,
                     database=demo_db)
    qa, preparer, pharmacist = (sign_in(app, who, PW) for who in ("qa", "preparer", "pharmacist"))
    assert "1 quarantined shipment awaits your assessment" in words(qa.get("/").text)
    assert re.search(r"X-0\d\d · T1 .* \d+:\d\d left 0 of 2", words(preparer.get("/preparation").text))
    with demo_db.read() as s:
        order = s.scalars(select(Destruction.number)).one()
        held = s.scalars(select(Shipment.number).where(Shipment.state == "quarantined")).one()
    assert "-121 °C, above the -150 °C limit" in words(pharmacist.get(f"/shipments/{held}").text).replace("−", "-")
    pdf = pharmacist.get(f"/destructions/{order}/certificate.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    for page in ("/participants", "/participants/NCT07290946/SCR-101/visits/2", "/dispensing", "/accountability",
                 "/shipments", "/storage", "/destructions"):
        assert pharmacist.get(page).status_code == 200, page
    # the second site's pharmacist sees its own participants and shipment, not RH-ENT's
    aarhus = sign_in(app, "pharmacist-aarhus", PW)
    assert "AAR-001" in aarhus.get("/participants").text and "SCR-101" not in aarhus.get("/participants").text
    assert aarhus.get("/participants/NCT07290946/SCR-101").status_code == 404
    assert aarhus.get(f"/shipments/{held}").status_code == 404
    assert "SCR-101" in pharmacist.get("/participants").text and "AAR-001" not in pharmacist.get("/participants").text


# --- integrity and idempotence ----------------------------------------------------------------------------


def test_the_demo_verifies_and_a_second_seeding_adds_nothing(demo_db):
    assert integrity.verify(demo_db).ok

    def counts() -> tuple:
        with demo_db.read() as s:
            return tuple(s.scalar(select(func.count()).select_from(model))
                         for model in (AuditEvent, Kit, Shipment, Participant, Visit, Destruction, Unblinding))

    before = counts()
    with demo_db.write() as s:
        demo.seed(s, users.cli_actor())
        assert not demo_trial.story_fits(s)  # its first day is long past the trail's last event now
    assert counts() == before
