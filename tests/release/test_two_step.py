"""Two-step release that travels (EU GMP Annex 16): after the QP's initial certification with a
test pending, the sponsor releases the lot for shipment under quarantine. Its kits, both arms of
their packaging run at once, are packed, shipped and received, read "awaiting final release" to
everyone, and cannot be assigned; the QP's final certification releases them in its transaction.
A failed pending test holds them, blind kept. And do-not-ship: a kit whose blinded lot would
expire too soon is refused at packing and at dispatch, in the same words for both arms."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from cellbench import clock, custody, kits, lots, pharmacy, qc, qrpayload, release, studies, users
from cellbench.errors import InvalidInput
from cellbench.models import AuditEvent, Kit, KitQuarantine, KitState, LotState, Participant
from cellbench.specifications import QUALITATIVE

from ..conftest import PASSWORD, SECRET, actor_of
from ..eligible import eligible
from ..kitworld import arms, load_studies, package, released_lot, sealed_kit_list

STUDY, SITE = "NCT07290946", "RH-ENT"
ASC, PLB = "ASC-2026-0301", "PLB-2026-0301"
AWAITING = {KitState.awaiting_release, KitState.transit_awaiting_release, KitState.site_awaiting_release}


def _passes(session, lot, actor):
    return None


@pytest.fixture
def world(db, people, effective_specs):
    """An ASC lot initially certified with sterility pending and a released saline lot, packaged
    into 8 kits (4 per arm). The lot is made directly and certified with its batch-record gates
    passed (those gates are tested in test_release); every move after that is the product's own."""
    load_studies(db)
    released_lot(db, "asc", ASC, units=16, state=LotState.qc_pending)
    released_lot(db, "placebo", PLB, units=16)
    with db.write() as s:
        lots.move(s, users.by_username(s, "peter"), lots.by_number(s, ASC), "certify_initial",
                  "Pending tests: Sterility (sterility)", password=PASSWORD, gates=(_passes,))
    sealed_kit_list(db, STUDY, 8)
    package(db, STUDY, 8, [ASC], [PLB])
    by_arm = arms(db)
    return {arm: sorted(k for k, a in by_arm.items() if a == arm) for arm in ("active", "placebo")}


def states(db) -> dict[str, KitState]:
    with db.read() as s:
        return {k.number: KitState(k.state) for k in s.scalars(select(Kit).where(Kit.blinded_lot_id.is_not(None)))}


def lot_state(db, number: str = ASC) -> LotState:
    with db.read() as s:
        return LotState(lots.by_number(s, number).state)


def released_for_shipment(db) -> None:
    with db.write() as s:
        release.release_for_shipment(s, users.by_username(s, "sara"), PASSWORD, lots.by_number(s, ASC))


def shipped_and_received(db, monkeypatch, numbers: list[str]) -> str:
    """Packed and dispatched by Sara; 26 hours later scanned in by Frida with a good logger record."""
    sara, frida = actor_of(db, "sara"), actor_of(db, "frida")
    with db.write() as s:
        shipment = custody.create(s, sara, STUDY, SITE)
        for number in numbers:
            custody.pack(s, sara, shipment, qrpayload.make_payload(number, SECRET), SECRET)
        custody.dispatch(s, sara, shipment, shipper_id="DS-1", seal_number="SEAL-1", logger_id="LOG-1")
        code, sent = shipment.number, shipment.dispatched_at
    monkeypatch.setattr(clock, "_source", lambda: sent + timedelta(hours=26))
    with db.write() as s:
        for number in numbers:
            custody.receipt_scan(s, frida, code, qrpayload.make_payload(number, SECRET), SECRET)
        readings = ["timestamp,temperature_c"] + [f"{(sent + timedelta(hours=h)).isoformat()},-185.0"
                                                  for h in range(1, 26)]
        problems = custody.complete_receipt(s, frida, custody.by_number(s, code), seal_intact=True,
                                            logger=custody.logger_record("csv", csv_content="\n".join(readings)))
        assert problems == []
    return code


def randomised_visit(db, screening: str) -> int:
    from ..pharmacy.test_pharmacy import sealed_randomisation_list

    sealed_randomisation_list(db)
    with db.write() as s:
        participant = pharmacy.enrol(s, actor_of(db, "ida"), studies.by_code(s, STUDY), site_code=SITE,
                                     screening_number=screening)
        pharmacy.randomise(s, actor_of(db, "ida"), participant, **eligible(STUDY))
        return participant.id


def assigned(db, participant_id: int) -> Kit | None:
    with db.write() as s:
        visit = pharmacy.visits_of(s, s.get(Participant, participant_id))[0]
        kit = pharmacy.assign(s, actor_of(db, "frida"), visit)
        return kit.number if kit else None


# --- the tables -------------------------------------------------------------------------------------


def test_the_lot_and_kit_tables_hold_the_two_step_release():
    move = lots.MOVES["release_for_shipment"]
    assert (move.sources, move.target, move.signature.value) == (
        {LotState.initial_certified}, LotState.released_for_shipment, "released")
    final = lots.MOVES["certify_final_shipped"]
    assert (final.sources, final.target, final.signature.value) == (
        {LotState.released_for_shipment}, LotState.released, "certified")
    assert lots.GATED["release_for_shipment"] == "shipment_release"
    assert kits.MOVES["ship_awaiting_release"].target is KitState.transit_awaiting_release
    assert kits.MOVES["receive_awaiting_release"].target is KitState.site_awaiting_release
    assert KitState.site_awaiting_release not in kits.MOVES["allocate"].sources, "never assigned"
    assert {kits.MOVES[name].target for name in kits.FINAL_RELEASE} == {
        KitState.released, KitState.in_transit, KitState.at_site}


def test_the_shipment_release_needs_a_standing_initial_certification_and_no_failed_test(db, world):
    with db.read() as s:
        lot = lots.by_number(s, PLB)
        assert release.initially_certified(s, lot) == f"Lot {PLB} has no standing initial QP certification."
    with pytest.raises(Exception, match="Only supply manager"), db.write() as s:
        release.release_for_shipment(s, users.by_username(s, "anna"), PASSWORD, lots.by_number(s, ASC))
    assert lot_state(db) is LotState.initial_certified


# --- the whole way --------------------------------------------------------------------------------


def test_an_initially_certified_lots_kits_ship_cannot_be_assigned_and_are_available_at_final_certification(
        db, world, monkeypatch):
    assert set(states(db).values()) == {KitState.packaged}
    released_for_shipment(db)
    assert lot_state(db) is LotState.released_for_shipment
    assert set(states(db).values()) == {KitState.awaiting_release}, "both arms of the run at once"

    every = world["active"] + world["placebo"]
    shipped_and_received(db, monkeypatch, every)
    assert set(states(db).values()) == {KitState.site_awaiting_release}

    participant = randomised_visit(db, "SCR-401")
    assert assigned(db, participant) is None, "no kit awaiting final release is assigned"

    # The QP's final certification once sterility is in: the lot is released, its kits with it.
    monkeypatch.setitem(release.GUARDS, "final_certification", (release.no_result_out_of_specification,))
    with db.write() as s:
        decision = release.certify(s, users.by_username(s, "peter"), PASSWORD, lots.by_number(s, ASC), final=True)
        assert decision.decision == "certify_final_shipped"
        # in the same transaction: every kit of the run is available before it commits
        assert {KitState(k.state) for k in s.scalars(select(Kit).where(Kit.blinded_lot_id.is_not(None)))} == {
            KitState.at_site}
    assert lot_state(db) is LotState.released
    assert assigned(db, participant) in every
    with db.read() as s:
        run = s.scalars(select(AuditEvent.entity_id).where(AuditEvent.entity_type == "packaging_run")).first()
        finals = s.scalars(select(AuditEvent).where(AuditEvent.action == "kit final release at site")).all()
        assert len(finals) == 8 and {e.reason for e in finals} == {f"every lot of packaging run {run} is released"}


def test_a_failed_pending_test_holds_the_kits_blind_preservingly(db, world, monkeypatch):
    released_for_shipment(db)
    shipped_and_received(db, monkeypatch, world["active"][:2] + world["placebo"][:2])
    with db.write() as s:
        lot = lots.by_number(s, ASC)
        sterility = next(t for t in qc.spec_of(s, lot).tests if t.code == "sterility")
        qc.enter_result(s, actor_of(db, "quinn"), lot, "sterility", QUALITATIVE[sterility.acceptance.kind][1])
    with db.read() as s:
        q = s.scalars(select(KitQuarantine)).one()
        assert (q.cause, q.policy) == ("post_release_oos", "proportionate")
    held = {number for number, state in states(db).items() if state is KitState.quarantined}
    # the lot's own kits and, as the policy keeps the ratio, as many placebo kits of the blinded lot
    assert set(world["active"]) <= held and len(held & set(world["placebo"])) == len(world["active"])
    with db.read() as s:
        reasons = {e.reason for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "kit quarantine"))}
        assert reasons == {kits.GENERIC_QUARANTINE_REASON}  # no number ties the held kits together
        assert {k.state_before_quarantine for k in s.scalars(select(Kit).where(Kit.quarantine_id == q.id))} <= {
            s_.value for s_ in AWAITING}


def test_blinded_pages_read_awaiting_final_release_the_same_for_both_arms(db, world, as_, monkeypatch):
    released_for_shipment(db)
    active, placebo = world["active"][0], world["placebo"][0]
    shipped_and_received(db, monkeypatch, [active, placebo])
    for who in ("frida", "mette"):
        answers = [as_(who).get(f"/api/v1/kits/{number}").json() for number in (active, placebo)]
        assert answers[0]["state_label"] == "At site, awaiting final release"
        masked = [{k: v for k, v in a.items() if k not in ("number", "kit_number", "version", "row_version")}
                  for a in answers]
        assert masked[0] == masked[1]
        # kit numbers masked, and their QR payloads (which carry the number and its MAC)
        pages = [re.sub(r"CB1:[^<\"\s]+", "QR", as_(who).get(f"/kits/{n}").text).replace(n, "KIT")
                 for n in (active, placebo)]
        assert "awaiting final release" in pages[0] and pages[0] == pages[1]


# --- do-not-ship ----------------------------------------------------------------------------------


@pytest.fixture
def short_dated(db, people, effective_specs):
    """8 released kits whose blinded lot expires in 70 days: NCT07290946 needs 2 days' transit, 30
    do-not-ship days and its longest visit window (treatment 2, ± 14 days) = 60 days."""
    load_studies(db)
    expiry = clock.today() + timedelta(days=70)
    released_lot(db, "asc", ASC, units=16, expiry=expiry)
    released_lot(db, "placebo", PLB, units=16, expiry=expiry + timedelta(days=300))
    sealed_kit_list(db, STUDY, 8)
    package(db, STUDY, 8, [ASC], [PLB])
    by_arm = arms(db)
    return {arm: sorted(k for k, a in by_arm.items() if a == arm) for arm in ("active", "placebo")}, expiry


def masked(message: str, number: str) -> str:
    return message.replace(number, "KIT")


def test_the_study_sets_its_do_not_ship_days_and_the_longest_visit_window_counts(db, short_dated):
    with db.read() as s:
        study = studies.by_code(s, STUDY)
        supply = studies.definition(study).supply
        assert (supply.do_not_ship_days, supply.transit_days, studies.longest_visit_window_days(study)) == (30, 2, 28)


def test_an_expiring_kit_is_refused_at_packing_in_the_same_words_for_both_arms(db, short_dated, monkeypatch):
    world, expiry = short_dated
    real = clock.wall_now
    monkeypatch.setattr(clock, "_source", lambda: real() + timedelta(days=11))  # the last shipping day has passed
    sara = actor_of(db, "sara")
    refusals = []
    for number in (world["active"][0], world["placebo"][0]):
        with pytest.raises(InvalidInput) as refused, db.write() as s:
            custody.pack(s, sara, custody.create(s, sara, STUDY, SITE), qrpayload.make_payload(number, SECRET),
                         SECRET)
        assert refused.value.field == "code" and f"Kit {number} must not be shipped after" in str(refused.value)
        refusals.append(masked(str(refused.value), number))
    last_day = expiry - timedelta(days=60)
    assert refusals[0] == refusals[1]
    assert f"after {last_day.isoformat()}: its blinded lot" in refusals[0]
    assert f"expires on {expiry.isoformat()}" in refusals[0]


def test_an_expiring_kit_packed_in_time_is_refused_again_at_dispatch(db, short_dated, monkeypatch):
    world, expiry = short_dated
    sara = actor_of(db, "sara")
    shipments = {}
    for number in (world["active"][0], world["placebo"][0]):  # on the last shipping day: still packed
        with db.write() as s:
            shipment = custody.create(s, sara, STUDY, SITE)
            custody.pack(s, sara, shipment, qrpayload.make_payload(number, SECRET), SECRET)
            shipments[number] = shipment.number
    real = clock.wall_now
    monkeypatch.setattr(clock, "_source", lambda: real() + timedelta(days=11))
    refusals = []
    for number, code in shipments.items():
        with pytest.raises(InvalidInput) as refused, db.write() as s:
            custody.dispatch(s, sara, custody.by_number(s, code), shipper_id="DS-1", seal_number="S-1",
                             logger_id="L-1")
        assert f"Kit {number} must not be shipped after" in str(refused.value)
        refusals.append(masked(str(refused.value), number))
        with db.read() as s:
            assert custody.by_number(s, code).state == "packing", "a refusal changes nothing"
    assert refusals[0] == refusals[1] and refusals[0].endswith("Unpack it before dispatch.")
    assert isinstance(expiry, type(clock.today())) and not isinstance(expiry, datetime)
