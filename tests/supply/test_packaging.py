"""Packaging runs: units into kits in one transaction, the blinded lot and its earliest expiry,
and kits released together with their lots."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from cellbench import kits, release, sealed, studies, users
from cellbench.clock import utcnow
from cellbench.errors import Conflict, InvalidInput
from cellbench.labels import printing as labelling
from cellbench.models import (
    AuditEvent,
    BlindedLot,
    Kit,
    KitState,
    Lot,
    LotState,
    PackagingRun,
    SealedKitUnit,
    Vial,
)
from cellbench.supply import packaging

from ..conftest import PASSWORD, SECRET, actor_of
from ..kitworld import arms, load_studies, package, released_lot, sealed_kit_list

STUDY = "NCT07290946"


@pytest.fixture
def ready(db, people, effective_specs):
    load_studies(db)
    sealed_kit_list(db, STUDY, 24)
    return db


def _kits(db):
    with db.read() as s:
        return {k.number: k for k in s.scalars(select(Kit))}


def test_a_run_fills_each_kit_with_one_unit_per_gland_from_one_lot_of_its_arm(ready):
    db = ready
    asc, plb = released_lot(db, "asc", "ASC-2026-0201"), released_lot(db, "placebo", "PLB-2026-0201")
    run = package(db, STUDY, 8, [asc], [plb])
    by_arm = arms(db)
    with db.write() as s:
        sara = actor_of(db, "sara")
        packaged = list(s.scalars(select(Kit).where(Kit.blinded_lot_id.is_not(None))))
        assert len(packaged) == 8
        for kit in packaged:
            arm, units = sealed.contents(s, sara, kit)
            assert arm == by_arm[kit.number]
            assert [dose for dose, _, _ in units] == [1, 2]
            assert {lot.number for _, _, lot in units} == {asc if arm == "active" else plb}
            assert kit.state == KitState.released, "every lot of the run is released"
        assert {v.state for v in s.scalars(select(Vial).join(SealedKitUnit, SealedKitUnit.vial_id == Vial.id))} == {
            "kitted"}
        assert s.scalars(select(PackagingRun)).one().number == run


def test_the_blinded_lot_carries_the_earliest_expiry_of_every_lot_in_it_both_arms(ready):
    db = ready
    today = utcnow().date()
    asc = released_lot(db, "asc", "ASC-2026-0202", expiry=today + timedelta(days=300))
    plb = released_lot(db, "placebo", "PLB-2026-0202", expiry=today + timedelta(days=200))
    package(db, STUDY, 6, [asc], [plb])
    with db.read() as s:
        blinded = s.scalars(select(BlindedLot)).one()
        assert blinded.expiry == today + timedelta(days=200), "the placebo lot expires first"
        code = blinded.code
    earlier = released_lot(db, "asc", "ASC-2026-0203", expiry=today + timedelta(days=150))
    package(db, STUDY, 6, [earlier], [plb], blinded_lot=code)
    with db.read() as s:
        assert s.scalars(select(BlindedLot)).one().expiry == today + timedelta(days=150)
        views = [kits.view(s, k) for k in s.scalars(select(Kit).where(Kit.blinded_lot_id.is_not(None)))]
    assert {v.expiry for v in views} == {today + timedelta(days=150)}, "every kit shows the one blinded expiry"


def test_once_labels_are_printed_the_expiry_is_never_brought_forward(ready):
    db = ready
    today = utcnow().date()
    asc = released_lot(db, "asc", "ASC-2026-0204", expiry=today + timedelta(days=300))
    plb = released_lot(db, "placebo", "PLB-2026-0204", expiry=today + timedelta(days=300))
    package(db, STUDY, 6, [asc], [plb])
    with db.write() as s:
        code = s.scalars(select(BlindedLot)).one().code
        labelling.print_run(s, actor_of(db, "sara"), studies.by_code(s, STUDY), blinded_lot_code=code,
                            kind="outer", output="zpl", secret_key=SECRET)
    earlier = released_lot(db, "asc", "ASC-2026-0205", expiry=today + timedelta(days=100))
    with pytest.raises(InvalidInput) as refused:
        package(db, STUDY, 6, [earlier], [plb], blinded_lot=code)
    assert refused.value.field == "blinded_lot" and "new blinded lot" in refused.value.message
    with db.read() as s:
        assert s.scalar(select(func.count(PackagingRun.id))) == 1, "nothing of the refused run stayed"


def test_kits_wait_for_their_lots_and_are_released_in_the_same_transaction_as_the_last_lot(ready, monkeypatch):
    db = ready
    asc = released_lot(db, "asc", "ASC-2026-0206", state=LotState.qp_certified)
    plb = released_lot(db, "placebo", "PLB-2026-0206")
    package(db, STUDY, 6, [asc], [plb])
    assert {k.state for k in _kits(db).values() if k.blinded_lot_id} == {KitState.packaged}, \
        "placebo kits wait with the active ones: a state never differs by arm"
    # The sponsor release itself, signed; its gates are tested in test_release.py.
    monkeypatch.setitem(release.GUARDS, "sponsor_release", [lambda session, lot, actor: None])
    with db.write() as s:
        lot = s.scalars(select(Lot).where(Lot.number == asc)).one()
        release.move_lot(s, users.by_username(s, "sara"), lot, "release", None, password=PASSWORD)
    assert {k.state for k in _kits(db).values() if k.blinded_lot_id} == {KitState.released}
    with db.read() as s:
        released = s.scalars(select(AuditEvent).where(AuditEvent.action == "kit release")).all()
    assert len(released) == 6 and len({e.reason for e in released}) == 1


def test_a_run_of_one_arm_only_is_refused(ready):
    db = ready
    asc, plb = released_lot(db, "asc", "ASC-2026-0207"), released_lot(db, "placebo", "PLB-2026-0207")
    with pytest.raises(InvalidInput) as refused:
        package(db, STUDY, 1, [asc], [plb])
    assert refused.value.field == "kit_count" and "one arm" in refused.value.message


def test_refusals_name_the_field_and_change_nothing(ready):
    db = ready
    asc = released_lot(db, "asc", "ASC-2026-0208", units=4)
    plb = released_lot(db, "placebo", "PLB-2026-0208")
    held = released_lot(db, "asc", "ASC-2026-0209", state=LotState.on_hold)
    old = released_lot(db, "asc", "ASC-2026-0210", expiry=utcnow().date() - timedelta(days=1))
    cases = [
        ({"count": 8, "asc": [asc], "placebo": [plb]}, "asc_lots", "free units"),
        ({"count": 8, "asc": [held], "placebo": [plb]}, "asc_lots", "on hold"),
        ({"count": 8, "asc": [old], "placebo": [plb]}, "asc_lots", "expired"),
        ({"count": 8, "asc": [plb], "placebo": [plb]}, "asc_lots", "not an ASC lot"),
        ({"count": 8, "asc": [asc], "placebo": []}, "placebo_lots", "Choose at least one"),
        ({"count": "eight", "asc": [asc], "placebo": [plb]}, "kit_count", "whole number"),
        ({"count": 99, "asc": [asc], "placebo": [plb]}, "kit_count", "generate and seal a further kit list"),
    ]
    before = _kits(db)
    for case, field, words in cases:
        with pytest.raises(InvalidInput) as refused:
            package(db, STUDY, case["count"], case["asc"], case["placebo"])
        assert (refused.value.field, words in refused.value.message) == (field, True), refused.value.message
    assert {n: k.state for n, k in _kits(db).items()} == {n: k.state for n, k in before.items()}


def test_blinded_roles_cannot_package(ready):
    db = ready
    asc, plb = released_lot(db, "asc", "ASC-2026-0211"), released_lot(db, "placebo", "PLB-2026-0211")
    for who in ("frida", "ida", "mette", "adam", "anna"):
        with pytest.raises(Exception) as refused, db.write() as s:
            packaging.package(s, actor_of(db, who), studies.by_code(s, STUDY), kit_count=4, asc_lots=[asc],
                              placebo_lots=[plb])
        assert type(refused.value).__name__ == "Forbidden"


def test_two_runs_at_once_never_put_one_kit_or_unit_in_two_runs(ready):
    db = ready
    asc, plb = released_lot(db, "asc", "ASC-2026-0212", units=40), released_lot(db, "placebo", "PLB-2026-0212")
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def run():
        barrier.wait()
        try:
            package(db, STUDY, 8, [asc], [plb])
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.read() as s:
        units = s.scalars(select(SealedKitUnit.vial_id)).all()
        packaged = s.scalars(select(Kit).where(Kit.blinded_lot_id.is_not(None))).all()
    assert len(units) == len(set(units)) == 2 * len(packaged)
    assert sorted(outcomes) in (["ok", "ok"], ["conflict", "ok"])
    assert len(packaged) == 8 * outcomes.count("ok")


def test_a_run_moves_its_kits_in_a_few_statements_not_one_per_kit(ready):
    """Packaging 500 kits took 20 s when each kit was its own ORM UPDATE, synchronised against
    every object in the session. The kits now move in one UPDATE per few hundred; each still
    gets its own audit event."""
    from sqlalchemy import event

    db = ready
    asc = released_lot(db, "asc", "ASC-2026-0220", units=40)
    plb = released_lot(db, "placebo", "PLB-2026-0220", units=40)
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement.strip().split("\n")[0][:40].upper())

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        package(db, STUDY, 20, [asc], [plb])
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    kit_updates = [s for s in statements if s.startswith("UPDATE KIT ")]
    assert 1 <= len(kit_updates) <= 3, kit_updates
    with db.read() as s:
        packaged = s.scalars(select(AuditEvent).where(AuditEvent.action == "kit package")).all()
        released = s.scalars(select(AuditEvent).where(AuditEvent.action == "kit release")).all()
        kits_ = s.scalars(select(Kit).where(Kit.blinded_lot_id.is_not(None))).all()
    assert len(packaged) == len(released) == len(kits_) == 20, "one audit event per kit and move"
    assert {(k.state, k.row_version) for k in kits_} == {(KitState.released, 3)}, "each move counted on the kit"


def test_a_kit_changed_by_someone_else_since_it_was_read_stops_the_whole_move(ready):
    from sqlalchemy import update

    db = ready
    asc, plb = released_lot(db, "asc", "ASC-2026-0221", state=LotState.qp_certified), \
        released_lot(db, "placebo", "PLB-2026-0221")
    package(db, STUDY, 6, [asc], [plb])
    with pytest.raises(Conflict) as refused, db.write() as s:
        waiting = list(s.scalars(select(Kit).where(Kit.state == KitState.packaged).order_by(Kit.number)))
        changed = waiting[2].number
        # another worker's move of the third kit, committed after this one read it
        s.connection().execute(update(Kit.__table__).where(Kit.__table__.c.id == waiting[2].id)
                               .values(row_version=Kit.__table__.c.row_version + 1))
        kits.move_many(s, actor_of(db, "sara"), waiting, "release", reason="test")
    assert refused.value.field == "kit_version" and changed in refused.value.message
    assert {k.state for k in _kits(db).values() if k.blinded_lot_id} == {KitState.packaged}, "no kit moved"
