"""The running counters' changes wait in the unit of work and are written once, just before it
commits (pending_counts.py): one upsert per counter table per transaction, whatever the number of
moves in it. The counts stay exact: a use case reads its own moves, a rollback (of the transaction
or of a savepoint) takes its moves' counts with it, and two writers moving kits of the same blinded
lot at the same moment lose no update."""
from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import event, select

from cellbench import kit_counts, kits, place_counts, storage_counts
from cellbench.models import Kit, KitState

from .conftest import actor_of
from .test_running_counts import agree

HOLD = "temperature excursion under review"


def every(kit_world) -> list[str]:
    """The world's eight kits, both arms."""
    return kit_world.active + kit_world.placebo


def _kits(s, numbers: list[str]) -> list[Kit]:
    return list(s.scalars(select(Kit).where(Kit.number.in_(numbers)).order_by(Kit.number)))


def _held(s) -> int:
    return sum(n for (_st, _p, _b, state), n in kit_counts.stored(s).items() if state == KitState.quarantined.value)


def _counter_writes(db) -> Counter[str]:
    """The counter tables written by each statement sent from now on (a Counter, filled as they go)."""
    written: Counter[str] = Counter()

    def seen(_conn, _cursor, statement: str, *_rest) -> None:
        for table in ("kit_count", "place_count", "storage_count"):
            if statement.lstrip().upper().startswith(f"INSERT INTO {table.upper()} "):
                written[table] += 1

    event.listen(db.engine, "before_cursor_execute", seen)
    return written


def test_several_moves_in_one_transaction_write_one_upsert_per_counter_table(db, kit_world):
    sara = actor_of(db, "sara")
    written = _counter_writes(db)
    with db.write() as s:
        for kit in _kits(s, kit_world.active + kit_world.placebo):  # eight moves, one kit each
            kits.move_many(s, sara, [kit], "quarantine", reason=HOLD)
        assert written == Counter(), "nothing is written while the use case goes on"
    assert written == Counter({"kit_count": 1, "place_count": 1}), "one upsert per table, at commit"
    agree(db)


def test_a_use_case_reads_its_own_moves_before_it_commits(db, kit_world):
    sara = actor_of(db, "sara")
    with db.write() as s:
        kits.move_many(s, sara, _kits(s, every(kit_world)[:2]), "quarantine", reason=HOLD)
        assert _held(s) == 2, "a read of a counter table sees the moves that wait"
        assert place_counts.by_state(s).get(KitState.quarantined.value) == 2
        kits.move_many(s, sara, _kits(s, every(kit_world)[2:3]), "quarantine", reason=HOLD)
        assert kit_counts.recount(s) == [], "and verify's recount, in the same transaction"
    agree(db)


def test_a_rolled_back_use_case_leaves_the_counts_as_they_were(db, kit_world):
    sara = actor_of(db, "sara")
    with pytest.raises(RuntimeError), db.write() as s:
        kits.move_many(s, sara, _kits(s, kit_world.active), "quarantine", reason=HOLD)
        raise RuntimeError("the use case fails after its moves")
    with db.read() as s:
        assert _held(s) == 0
    agree(db)


@pytest.mark.parametrize("read_inside", [False, True], ids=["unread", "read inside the savepoint"])
def test_a_savepoint_rolled_back_takes_its_own_moves_counts_and_not_those_around_it(db, kit_world, read_inside):
    sara = actor_of(db, "sara")
    with db.write() as s:
        kits.move_many(s, sara, _kits(s, every(kit_world)[:1]), "quarantine", reason=HOLD)
        with pytest.raises(RuntimeError), s.begin_nested():
            kits.move_many(s, sara, _kits(s, every(kit_world)[1:3]), "quarantine", reason=HOLD)
            if read_inside:  # writes every waiting delta inside the savepoint, the outer move's too
                assert _held(s) == 3
            raise RuntimeError("the savepoint fails")
        s.expire_all()  # the kit objects as the rows hold them after the savepoint's rollback
        assert _held(s) == 1, "the move before the savepoint is still counted, the one inside it is not"
        with s.begin_nested():
            kits.move_many(s, sara, _kits(s, every(kit_world)[3:4]), "quarantine", reason=HOLD)
    with db.read() as s:
        assert _held(s) == 2
    agree(db)


def test_kits_shelved_one_by_one_are_counted_by_tank_in_one_upsert(db, kit_world):
    from cellbench import custody

    with db.write() as s:
        custody.add_location(s, actor_of(db, "sara"), site_code="", code="CB-T9", name="Tank CB-T9", kind="tank")
    written = _counter_writes(db)
    with db.write() as s:
        for kit in _kits(s, kit_world.active + kit_world.placebo):
            custody.store(s, actor_of(db, "sara"), kit, "CB-T9")
    assert written == Counter({"storage_count": 1})
    with db.read() as s:
        assert storage_counts.recount(s) == [] and sum(custody.stored_counts(s).values()) == 8


def test_two_writers_moving_kits_of_one_blinded_lot_at_once_lose_no_update(db, kit_world):
    """On PostgreSQL each writer's upsert adds its delta to the row as the other left it (the audit
    chain's head, locked by both, orders them); on SQLite the writers take turns."""
    sara = actor_of(db, "sara")
    halves = [every(kit_world)[::2], every(kit_world)[1::2]]
    ready, failures = threading.Barrier(2), []

    def hold(numbers: list[str]) -> None:
        try:
            ready.wait(timeout=30)
            for number in numbers:
                with db.write() as s:
                    kits.move_many(s, sara, _kits(s, [number]), "quarantine", reason=HOLD)
        except Exception as failure:  # reported below, with the thread's failure
            failures.append(failure)

    writers = [threading.Thread(target=hold, args=(half,)) for half in halves]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert not failures, failures
    with db.read() as s:
        assert _held(s) == 8
    agree(db)
