"""A pipelined write transaction on PostgreSQL (the scan group's): committed whole with its last
writes, or rolled back whole and said to be unwritten; its connection goes back to the pool as it
came (not in autocommit), and text the database cannot store is refused naming the field."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select, text

from cellbench import pipelined
from cellbench.clock import utcnow
from cellbench.errors import InvalidInput
from cellbench.models import CustodyEvent, utc_text

_NOTE = text("INSERT INTO custody_event (kit_id, action, to_place, by_name, at) "
             "VALUES ((SELECT min(id) FROM kit), 'scanned', :place, 'pipeline test', :at)")
_COUNT = select(func.count()).select_from(CustodyEvent).where(CustodyEvent.by_name == "pipeline test")
_DUPLICATE_HEAD = text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, 'x')")  # the head exists: fails


@pytest.fixture
def pg(db, kit_world):
    if db.is_sqlite:
        pytest.skip("pipeline mode is PostgreSQL's (SQLite's scan group is one write_connection)")
    return db


def _notes(*places: str) -> list[dict]:
    return [{"place": place, "at": utc_text(utcnow())} for place in places]


def _kept(db) -> int:
    with db.read() as s:
        return s.scalar(_COUNT)


def test_the_writes_are_committed_with_the_commit_in_the_round_trip_of_the_last_writes(pg):
    with pipelined.write(pg) as tx:
        tx.send(_NOTE, _notes("desk 1", "desk 2"))
        assert tx.rows(_COUNT) == [(2,)], "a read sends the queued writes with it"
        tx.send(_NOTE, _notes("desk 3"))
    assert tx.round_trips == 2
    assert _kept(pg) == 3


def test_a_write_that_fails_in_the_pipeline_leaves_nothing_and_is_said_to_be_unwritten(pg):
    with pytest.raises(pipelined.NotWritten), pipelined.write(pg) as tx:
        tx.send(_NOTE, _notes("desk 1"))
        tx.send(_DUPLICATE_HEAD, [{}])  # fails at the commit's round trip, after the first write ran
    assert _kept(pg) == 0


def test_a_write_whose_error_is_back_before_the_commit_is_queued_is_rolled_back_and_said_unwritten(pg):
    """The failed write's answer read while the COMMIT is queued (psycopg then raises at the COMMIT):
    the transaction is left open and aborted, and is rolled back outside the pipeline."""
    for _ in range(3):  # the answer's arrival is the server's timing: flushed and waited for here
        with pytest.raises(pipelined.NotWritten), pipelined.write(pg) as tx:
            tx.send(_NOTE, _notes("desk 1"))
            tx.send(_DUPLICATE_HEAD, [{}])
            tx._pipeline.flush()
            time.sleep(0.05)
        assert tx._driver.info.transaction_status == 0 and tx._driver.autocommit is False
    assert _kept(pg) == 0


def test_an_error_in_the_caller_rolls_back_what_was_already_sent(pg):
    with pytest.raises(pipelined.NotWritten), pipelined.write(pg) as tx:
        tx.send(_NOTE, _notes("desk 1"))
        tx.rows(select(func.count()).select_from(CustodyEvent))
        raise RuntimeError("the caller gave up")
    assert _kept(pg) == 0


def test_text_with_a_nul_is_refused_naming_the_field_before_it_is_sent(pg):
    with pytest.raises(pipelined.NotWritten) as refused, pipelined.write(pg) as tx:
        tx.send(_NOTE, _notes("desk\x00"))
    assert isinstance(refused.value.__cause__, InvalidInput) and refused.value.__cause__.field == "place"
    assert _kept(pg) == 0


def test_the_connection_goes_back_to_the_pool_out_of_autocommit_whether_committed_or_not(pg):
    for fails in (False, True):
        try:
            with pipelined.write(pg) as tx:
                tx.send(_DUPLICATE_HEAD, [{}]) if fails else tx.send(_NOTE, _notes("desk"))
        except pipelined.NotWritten:
            assert fails
        assert tx._driver.autocommit is False, "the pool's next user would commit every statement alone"
        assert tx._driver.info.transaction_status == 0  # idle: nothing left open
    with pytest.raises(RuntimeError), pg.write_connection() as conn:
        conn.execute(_NOTE, _notes("rolled back")[0])
        raise RuntimeError("roll back")
    assert _kept(pg) == 1, "the committed pipelined write is kept, the rolled-back transaction is not"
