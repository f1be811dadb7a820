"""The SQLite WAL stays bounded: past its limit the served app's checkpointer copies it into the
database and truncates it; a read that will not end makes it give up and let go, not stall the
app; and the app's read sessions end with their request, so they hold no snapshot that would stop
a checkpoint. (bench/soak.py shows the bound under minutes of load; these tests show the rules,
driving the checkpointer's tick by hand.)"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from cellbench.config import Settings
from cellbench.db import Database
from cellbench.wal import Checkpointer

LIMIT_MB = 0.1


@pytest.fixture
def small_wal(tmp_path) -> Iterator[Database]:
    """A SQLite database whose WAL limit is 0.1 MB, with a table to write to."""
    db = Database(f"sqlite:///{tmp_path / 'wal.db'}", wal_limit_mb=LIMIT_MB)
    with db.write() as s:
        s.execute(text("CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT)"))
    yield db
    db.dispose()


def write_notes(db: Database, transactions: int = 20, rows: int = 20) -> None:
    for _ in range(transactions):
        with db.write() as s:
            s.execute(text("INSERT INTO note (body) VALUES (:b)"), [{"b": "x" * 500}] * rows)


def notes(db: Database) -> int:
    with db.read() as s:
        return s.execute(text("SELECT count(*) FROM note")).scalar_one()


@pytest.fixture
def checkpointer(small_wal) -> Iterator[tuple[Checkpointer, sqlite3.Connection]]:
    keeper = Checkpointer(small_wal, start=False)
    conn = keeper._connect()
    yield keeper, conn
    conn.close()


def test_every_connection_cuts_a_reset_wal_back_to_the_limit(small_wal):
    with small_wal.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_size_limit").scalar() == int(LIMIT_MB * 1024 * 1024)


def test_every_connection_reads_through_a_page_cache_and_a_map_larger_than_sqlites_defaults(small_wal):
    """A home page at ten years touches more B-tree pages than SQLite's 2 MiB cache holds."""
    with small_wal.read() as s:
        assert s.execute(text("PRAGMA cache_size")).scalar_one() == -16 * 1024  # KiB
        assert s.execute(text("PRAGMA mmap_size")).scalar_one() == 1 << 30
    write_notes(small_wal, transactions=3)  # a mapped file is still written through the WAL
    assert notes(small_wal) == 60


def test_a_wal_past_the_limit_is_copied_into_the_database_and_truncated_to_nothing(small_wal, checkpointer):
    keeper, conn = checkpointer
    write_notes(small_wal)
    assert keeper.wal_bytes() > small_wal.wal_limit_bytes

    keeper.tick(conn)

    assert keeper.wal_bytes() == 0
    assert (keeper.truncations, keeper.gave_up) == (1, 0)
    assert notes(small_wal) == 400


def test_a_wal_under_the_limit_is_only_copied_back_never_truncated(small_wal, checkpointer):
    keeper, conn = checkpointer
    write_notes(small_wal, transactions=1, rows=1)
    assert 0 < keeper.wal_bytes() <= small_wal.wal_limit_bytes

    keeper.tick(conn)

    assert keeper.truncations == 0 and keeper.wal_bytes() > 0


def test_a_read_of_this_server_that_stays_open_makes_the_checkpointer_give_up_let_go_and_retry_next_tick(
        small_wal, checkpointer):
    keeper, conn = checkpointer
    keeper.BUSY_MS = 50  # the read below never ends while the tick waits: no need to wait a second
    write_notes(small_wal)

    with small_wal.read() as s:
        s.execute(text("SELECT count(*) FROM note")).scalar_one()
        keeper.tick(conn)

        assert keeper.gave_up == 1 and keeper.truncations == 0
        assert keeper.wal_bytes() > small_wal.wal_limit_bytes
        assert small_wal._write_lock is not None and small_wal._write_lock.acquire(blocking=False)
        small_wal._write_lock.release()
        assert not small_wal._gate._draining  # new reads are not held back

    keeper.tick(conn)
    assert keeper.truncations == 1 and keeper.wal_bytes() == 0


def test_a_read_in_another_process_holding_an_old_snapshot_makes_it_wait_some_ticks_before_trying_again(
        small_wal, checkpointer):
    keeper, conn = checkpointer
    keeper.BUSY_MS = 50
    other = sqlite3.connect(small_wal.sqlite_path() or "", isolation_level=None)  # not the app's: not counted
    other.execute("BEGIN")
    other.execute("SELECT count(*) FROM note").fetchone()
    write_notes(small_wal)  # after its snapshot: pages it may still need

    keeper.tick(conn)
    other.execute("COMMIT")
    other.close()

    assert keeper.gave_up == 1 and keeper.truncations == 0
    for _ in range(keeper.RETRY_TICKS):
        keeper.tick(conn)
    assert keeper.truncations == 0
    keeper.tick(conn)
    assert keeper.truncations == 1 and keeper.wal_bytes() == 0


def test_a_read_session_of_a_request_is_closed_when_the_request_is_answered(db, as_):
    if not db.is_sqlite:
        pytest.skip("the WAL and its snapshots are SQLite's")
    path = Path(db.sqlite_path() or "")
    frida = as_("frida")

    for page in ("/", "/kits", "/shipments"):
        assert frida.get(page).status_code == 200

    assert db._gate._open == 0
    # No connection of the app holds a snapshot: a TRUNCATE that may not wait at all succeeds.
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("PRAGMA busy_timeout=0")
        busy, _frames, _copied = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        other.close()
    assert busy == 0


def test_the_wal_limit_setting_is_at_least_one_megabyte_and_its_default_is_well_under_the_target():
    assert Settings().sqlite_wal_limit_mb == 16
    with pytest.raises(ValidationError, match="the SQLite WAL limit must be at least 1 MB"):
        Settings(sqlite_wal_limit_mb=0.5)
