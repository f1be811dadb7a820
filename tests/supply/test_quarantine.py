"""Blind-preserving quarantine: a lot's kits go out of use with companions from the other arm,
or with their whole blinded lot; blinded people see one generic state and reason."""
from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from cellbench import kits, qc, release, users
from cellbench.errors import InvalidInput
from cellbench.models import AuditEvent, Kit, KitQuarantine, KitState, Lot, Meaning, Role
from cellbench.supply import quarantine

from ..conftest import PASSWORD, actor_of
from ..kitworld import arms, build, package, released_lot

STUDY = "NCT07290946"


@pytest.fixture
def world(db, people, effective_specs):
    """Two ASC lots and one placebo lot in one blinded lot of 16 kits (8 per arm)."""
    w = build(db, kits=8, listed=32)
    second = released_lot(db, "asc", "ASC-2026-0102")
    released_lot(db, "placebo", "PLB-2026-0102")
    with db.read() as s:
        code = s.scalars(select(Kit.blinded_lot_id).where(Kit.blinded_lot_id.is_not(None))).first()
        from cellbench.models import BlindedLot
        blinded = s.get(BlindedLot, code).code
    package(db, STUDY, 8, [second], ["PLB-2026-0102"], blinded_lot=blinded)
    return w


def _states(db) -> dict[str, str]:
    with db.read() as s:
        packaged = s.scalars(select(Kit).where(Kit.blinded_lot_id.is_not(None)))
        return {k.number: KitState(k.state).value for k in packaged}


def _lot(s, number: str) -> Lot:
    return s.scalars(select(Lot).where(Lot.number == number)).one()


def _kits_of_lot(db, number: str) -> set[str]:
    from cellbench import sealed

    with db.write() as s:
        return {k.number for k in sealed.kits_containing_lot(s, actor_of(db, "sara"), _lot(s, number), why="test")}


def test_a_kit_quarantine_is_open_until_qa_lifts_or_withdraws_it_as_its_one_table_says():
    assert {name: (move.sources, move.target, move.roles, move.signature, move.needs_reason)
            for name, move in quarantine.MOVES.items()} == {
        "lift": ({quarantine.QuarantineState.open}, quarantine.QuarantineState.lifted, {Role.qa}, Meaning.released,
                 True),
        "withdraw": ({quarantine.QuarantineState.open}, quarantine.QuarantineState.withdrawn, {Role.qa},
                     Meaning.rejected, True)}
    assert quarantine.MOVES["lift"].guards == (quarantine.every_lot_released,)
    assert set(quarantine.KIT_MOVES.values()) <= set(kits.MOVES), "each decision is a move of the kits' own table"


def test_proportionate_quarantine_takes_the_lots_kits_and_a_random_equal_share_of_placebo(db, world):
    by_arm = arms(db)
    asc_kits = _kits_of_lot(db, world.asc_lot)
    active_total = sum(1 for k, a in by_arm.items() if a == "active" and k in _states(db))
    placebo_total = sum(1 for k, a in by_arm.items() if a == "placebo" and k in _states(db))
    with db.write() as s:
        opened = quarantine.open_manual(s, actor_of(db, "sara"), _lot(s, world.asc_lot), "proportionate",
                                        "customer complaint under investigation")
        number = opened[0].number
    held = {k for k, state in _states(db).items() if state == "quarantined"}
    assert asc_kits <= held, "every kit of the lot is held"
    companions = held - asc_kits
    assert {by_arm[k] for k in companions} == {"placebo"}
    assert len(companions) == math.ceil(len(asc_kits) / active_total * placebo_total)
    with db.read() as s:
        q = s.scalars(select(KitQuarantine).where(KitQuarantine.number == number)).one()
        assert (q.cause, q.policy, q.kit_count) == ("manual", "proportionate", len(held))
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "kit quarantine")).all()
    assert {(e.new_value, e.reason, e.visibility) for e in events} == {
        ("Temporarily unavailable", kits.GENERIC_QUARANTINE_REASON, "all")}, \
        "every held kit, active or placebo, carries the same words, and no number that ties them together"


def test_the_companions_are_chosen_at_random(db, world):
    by_arm = arms(db)
    placebo = {k for k in _states(db) if by_arm[k] == "placebo"}
    picks = []
    for _ in range(5):
        with db.write() as s:
            q = quarantine.open_manual(s, actor_of(db, "sara"), _lot(s, world.asc_lot), "proportionate", "check")[0]
            picks.append(frozenset(set(quarantine.members(s, q)) & placebo))
        with db.write() as s:
            quarantine.lift(s, users.by_username(s, "anna"), s.get(KitQuarantine, q.id), "false alarm", PASSWORD)
    assert len({len(p) for p in picks}) == 1
    if 0 < len(picks[0]) < len(placebo):
        assert len(set(picks)) > 1, "five draws of the same companions would mean they are not random"


def test_whole_blinded_lot_quarantine_takes_every_kit_in_it(db, world):
    with db.write() as s:
        quarantine.open_manual(s, actor_of(db, "sara"), _lot(s, world.asc_lot), "blinded_lot", "recall under review")
    assert set(_states(db).values()) == {"quarantined"}


def test_an_oos_after_release_quarantines_kits_at_once_by_the_studys_policy(db, world):
    with db.write() as s:
        lot = _lot(s, world.asc_lot)
        qc.enter_result(s, actor_of(db, "quinn"), lot, "endotoxin", "99")
    with db.read() as s:
        q = s.scalars(select(KitQuarantine)).one()
        assert (q.cause, q.policy) == ("post_release_oos", "proportionate")
        assert "endotoxin" in q.reason
    held = {k for k, state in _states(db).items() if state == "quarantined"}
    assert _kits_of_lot(db, world.asc_lot) <= held


def test_lifting_waits_for_the_lot_and_needs_qa_and_a_signature(db, world):
    with db.write() as s:
        qc.enter_result(s, actor_of(db, "quinn"), _lot(s, world.asc_lot), "endotoxin", "99")
        release.move_lot(s, users.by_username(s, "anna"), _lot(s, world.asc_lot), "quarantine", "OOS investigation")
    with db.read() as s:
        qid = s.scalars(select(KitQuarantine.id).where(KitQuarantine.cause == "post_release_oos")).one()
    with pytest.raises(InvalidInput, match=f"{world.asc_lot} is not released"), db.write() as s:
        quarantine.lift(s, users.by_username(s, "anna"), s.get(KitQuarantine, qid), "retest fine", PASSWORD)
    with pytest.raises(Exception) as refused, db.write() as s:
        quarantine.lift(s, users.by_username(s, "sara"), s.get(KitQuarantine, qid), "retest fine", PASSWORD)
    assert type(refused.value).__name__ == "Forbidden"


def test_a_lot_quarantine_and_its_release_carry_the_kits_along_with_one_signature(db, world):
    before = _states(db)
    with db.write() as s:
        release.move_lot(s, users.by_username(s, "anna"), _lot(s, world.asc_lot), "quarantine", "temperature alarm")
    assert "quarantined" in _states(db).values()
    with db.write() as s:
        decision = release.move_lot(s, users.by_username(s, "anna"), _lot(s, world.asc_lot), "release_from_quarantine",
                             "alarm was a sensor fault", password=PASSWORD)
        q = s.scalars(select(KitQuarantine)).one()
        assert (q.state, q.closure_signature_id) == ("lifted", decision.signature_id)
    assert _states(db) == before
    with db.read() as s:
        lot_events = s.scalars(select(AuditEvent).where(AuditEvent.entity_type == "lot",
                                                        AuditEvent.entity_id == world.asc_lot)).all()
    assert all(e.visibility == "unblinded" for e in lot_events if "quarantine" in e.action)


def test_a_recall_holds_the_kits_and_qa_withdraws_them_all(db, world):
    with db.write() as s:
        release.move_lot(s, users.by_username(s, "anna"), _lot(s, world.asc_lot), "recall", "donor found ineligible",
                  password=PASSWORD)
        q = s.scalars(select(KitQuarantine)).one()
        assert q.cause == "recall"
        held = set(quarantine.members(s, q))
    with db.write() as s:
        quarantine.withdraw(s, users.by_username(s, "anna"), s.get(KitQuarantine, q.id), "recall", PASSWORD)
    states = _states(db)
    assert {states[k] for k in held} == {"withdrawn"}
    assert {s for k, s in states.items() if k not in held} == {"released"}


def test_a_lot_without_kits_cannot_be_quarantined_by_hand(db, world):
    lonely = released_lot(db, "asc", "ASC-2026-0199")
    with pytest.raises(InvalidInput) as refused, db.write() as s:
        quarantine.open_manual(s, actor_of(db, "sara"), _lot(s, lonely), None, "check")
    assert refused.value.field == "lot"
