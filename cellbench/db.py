"""Engine, sessions and transactions.

One use case is one transaction: `with db.write() as s: service(s, ...)` commits once at the end
or rolls everything back. Reads use `db.read()`, which never commits.

SQLite (the embedded default) gets WAL, synchronous=FULL, foreign keys, a busy timeout and a bounded
WAL (`journal_size_limit`; the served app's _Checkpointer truncates it past the limit). Its
writers are serialised by a process-wide lock and start with BEGIN IMMEDIATE: concurrent
BEGIN IMMEDIATE writers otherwise sleep in SQLite's busy handler, and a deferred transaction that
upgrades to a write can fail with "database is locked" instead of waiting. Run one worker per
SQLite database. PostgreSQL needs no process lock: the rows that must be serialised (the audit
chain head, a kit being dispensed) are locked in the database, so several workers are safe.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from .errors import InvalidInput, RecordedRefusal

if TYPE_CHECKING:  # alembic is imported when the schema is checked or migrated, not by every app start
    from alembic.config import Config

_WRITE = "cellbench_write"
log = logging.getLogger("cellbench")
# The WAL's size limit (Settings.sqlite_wal_limit_mb): beyond it the served app's checkpointer
# truncates the WAL, and SQLite cuts a WAL it resets back to it (journal_size_limit).
WAL_LIMIT_MB = 16


def _configure_sqlite(engine: Engine, *, background_checkpoint: bool, wal_limit_bytes: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # Let SQLAlchemy's begin event below issue BEGIN itself (the documented pysqlite recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        # A WAL that grew past the limit (a burst, a long read) is cut back to it when it is reset,
        # instead of keeping its largest size on disk for ever.
        cur.execute(f"PRAGMA journal_size_limit={int(wal_limit_bytes)}")
        if background_checkpoint:
            # Checkpoints run in a background thread instead of on some unlucky request.
            cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


# NUL (PostgreSQL cannot store it) and lone UTF-16 surrogates (not encodable as UTF-8 at all).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _refuse_nul_characters(engine: Engine) -> None:
    """PostgreSQL cannot store NUL characters in text and SQLite can: refuse them on both, as bad
    input naming the field, so that both engines behave alike and nothing half-stores."""

    @event.listens_for(engine, "before_cursor_execute")
    def _check(conn: Connection, cursor: object, statement: str, parameters: Any, context: object,
               executemany: bool) -> None:
        # One row (dict or tuple), several rows, or insertmanyvalues' one flat row for a batch.
        if isinstance(parameters, dict) or not parameters or not isinstance(parameters[0], (dict, list, tuple)):
            rows = [parameters]
        else:
            rows = parameters
        # Positional drivers (sqlite3) lose the names; the compiled statement still has them.
        positions = getattr(getattr(context, "compiled", None), "positiontup", None) or ()
        items: Iterable[tuple[Any, Any]]
        for row in rows:
            if isinstance(row, dict):
                items = row.items()
            else:
                items = ((positions[i] if i < len(positions) else None, v) for i, v in enumerate(row or ()))
            for name, value in items:
                if isinstance(value, str) and _UNSTORABLE.search(value):
                    field = str(name).rstrip("_0123456789") if isinstance(name, str) else None
                    raise InvalidInput("Text must not contain NUL characters or unpaired surrogates.", field=field)


class Database:
    def __init__(self, url: str, *, background_checkpoint: bool = False, echo: bool = False,
                 wal_limit_mb: float = WAL_LIMIT_MB):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.wal_limit_bytes = int(wal_limit_mb * 1024 * 1024)
        kwargs: dict[str, Any] = {"echo": echo}
        if not self.is_sqlite:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine, background_checkpoint=background_checkpoint,
                              wal_limit_bytes=self.wal_limit_bytes)
        _refuse_nul_characters(self.engine)
        # Same pool; connections checked out through this proxy begin write transactions.
        write_engine = self.engine.execution_options(**{_WRITE: True})
        self._reads = sessionmaker(self.engine, class_=Session, expire_on_commit=False)
        # expire_on_commit=False: reading an attribute after commit must not open a new
        # transaction that would hold SQLite's write lock past the end of the request.
        self._writes = sessionmaker(write_engine, class_=Session, expire_on_commit=False)
        self._write_engine = write_engine
        self._write_lock = threading.RLock() if self.is_sqlite else None
        self._gate = _ReadGate()
        self._checkpointer: _Checkpointer | None = None
        if self.is_sqlite and background_checkpoint:
            self._checkpointer = _Checkpointer(self)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._gate.reading(), self._reads() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction for one use case: commit at the end, roll back on any error.

        A RecordedRefusal (a wrong password, an administration after the use window) still records
        what it must, in its own transaction after the rollback, so it cannot be retried without a trace.
        """
        with self._write_lock or nullcontext(), self._gate.inside():
            session = self._writes()
            try:
                yield session
                session.commit()
            except RecordedRefusal as failure:
                session.rollback()
                failure.record(session)
                session.commit()
                raise
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """write() without the ORM, for the few hot paths (the scan) that use prebuilt Core
        statements only: the same lock, the same one transaction, commit or roll back."""
        with self._write_lock or nullcontext(), self._gate.inside(), self._write_engine.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        if self._checkpointer:
            self._checkpointer.stop()
        self.engine.dispose()

    def sqlite_path(self) -> str | None:
        return self.engine.url.database if self.is_sqlite else None


class _ReadGate:
    """Counts the read sessions open in this process, and holds new ones back while the checkpointer
    waits for the open ones to end (drained). A session opened inside another session or a write
    on the same thread, or on the event loop's thread, is never held back: the outer one would
    wait for itself, and a held loop could not finish the requests being waited for."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = 0
        self._draining = False
        self._depth = threading.local()

    @contextmanager
    def inside(self) -> Iterator[None]:
        depth = getattr(self._depth, "n", 0)
        self._depth.n = depth + 1
        try:
            yield
        finally:
            self._depth.n = depth

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            if self._draining and not getattr(self._depth, "n", 0) and not _on_event_loop():
                self._cond.wait_for(lambda: not self._draining, timeout=_Checkpointer.BUSY_MS / 1000)
            self._open += 1
        try:
            with self.inside():
                yield
        finally:
            with self._cond:
                self._open -= 1
                if not self._open:
                    self._cond.notify_all()

    @contextmanager
    def drained(self, deadline: float) -> Iterator[bool]:
        """Holds new reads back; yields whether the open ones ended before the deadline."""
        with self._cond:
            self._draining = True
            ended = self._cond.wait_for(lambda: not self._open, timeout=max(0.0, deadline - time.monotonic()))
        try:
            yield ended
        finally:
            with self._cond:
                self._draining = False
                self._cond.notify_all()


def _on_event_loop() -> bool:
    with suppress(RuntimeError):
        return asyncio.get_running_loop() is not None
    return False


class _Checkpointer:
    """Keeps a served SQLite database's WAL small, off the request path.

    Every tick: a PASSIVE checkpoint, which copies committed pages back into the database and never
    waits for anyone. It alone cannot bound the WAL under steady load: it copies only up to the
    oldest snapshot a reader still holds, and the WAL file restarts from its beginning only after
    everything was copied and no reader uses it. With requests always in flight some reader always
    holds an older snapshot, the WAL is never fully copied and grows without end (747 MB in 5
    minutes of mixed load on a 20 MB database: SQLite's "checkpoint starvation").

    So when the WAL file passes the limit, the checkpointer catches up in three steps, within
    BUSY_MS. (1) It holds new read sessions back (_ReadGate) and waits for the open ones to end:
    one request's worth. (2) It takes the app's write lock, so nothing commits. (3) It runs
    PASSIVE again, which now copies everything, as every snapshot left is the latest, then
    TRUNCATE, which cuts the WAL file to zero bytes; then reads and writes go on.

    Why not simply TRUNCATE under the write lock: TRUNCATE waits for the readers of older snapshots
    by polling their lock slots, and back-to-back reads keep retaking a slot (measured: a single
    thread looping 5 ms reads made it time out). And a read session ends in a request's
    dependency exit, which the event loop runs; the receipt scan writes inline in the loop, so a
    loop waiting for the write lock cannot end the very reads the checkpoint waits for (measured
    in bench/soak.py: it gave up on nearly every try and the WAL passed 90 MB). Draining the reads
    before taking the lock avoids both.

    The trade-off: reads wait for (1) to (3), writes for (2) and (3): the longest read then
    running, the pages PASSIVE had not copied yet and an fsync: 35-600 ms measured with threads
    writing and reading flat out on the shared 2-core machine (load 6-8), at most BUSY_MS. Past
    BUSY_MS the checkpointer gives up and everything goes on; the next try comes some ticks
    later (at once when it was this server's own requests, slow for a moment; twice as late each
    time when a read in another process held it up: a backup or `cellbench verify` holds its
    snapshot for long).
    """

    INTERVAL = 1.0  # seconds between ticks: at ~3 MB/s of WAL (the soak), a few MB past the limit at most
    BUSY_MS = 1000  # the longest a catch-up holds the app's reads and writes back before it gives up
    RETRY_TICKS = 5  # after another process's read held a catch-up up, PASSIVE only for this many ticks

    def __init__(self, db: Database, interval: float = INTERVAL, *, start: bool = True):
        self._db, self._interval = db, interval
        path = db.sqlite_path() or ""
        self._path, self._wal = path, f"{path}-wal"
        self.truncations = self.gave_up = 0
        self.longest_pause = 0.0  # the longest catch-up, in seconds (reads and writes held back)
        self._wait = self._retry = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        if start:  # tests drive tick() themselves
            self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        # Its own autocommit connection, outside the pool, with a busy timeout of its own (per TRUNCATE).
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA journal_size_limit={self._db.wal_limit_bytes}")
        return conn

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        while not self._stop.wait(self._interval):
            try:
                conn = conn or self._connect()
                self.tick(conn)
            except Exception:  # a busy or closing database: the next tick tries again
                log.debug("WAL checkpoint skipped", exc_info=True)
        if conn is not None:
            conn.close()

    def wal_bytes(self) -> int:
        try:
            return os.stat(self._wal).st_size
        except FileNotFoundError:
            return 0

    def tick(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        if self._wait > 0:
            self._wait -= 1
            return
        if self.wal_bytes() <= self._db.wal_limit_bytes:
            return
        started = time.monotonic()
        deadline = started + self.BUSY_MS / 1000
        lock = self._db._write_lock or threading.Lock()
        why: str | None = "reads of this server still open"
        lock_taken = False
        with self._db._gate.drained(deadline) as drained:  # new reads wait from here
            if drained:
                why = "a write still running"
                if lock_taken := lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    try:  # and the app's writes from here
                        why = self._catch_up(conn, deadline)
                    finally:
                        lock.release()
        pause = time.monotonic() - started
        self.longest_pause = max(self.longest_pause, pause)
        if why:
            self.gave_up += 1
            if drained and lock_taken:  # a long read elsewhere (a backup, `cellbench verify`): later each time
                self._retry = min(self._retry * 2, 60) if self._retry else self.RETRY_TICKS
                self._wait = self._retry
            else:  # this server's own requests, slow for a moment: again at the next tick
                self._wait = 0
            log.warning("the SQLite WAL (%.0f MB) was not truncated: %s after %d ms; trying again in %d s",
                        self.wal_bytes() / 1e6, why, self.BUSY_MS, (self._wait + 1) * self._interval)
        else:
            self._retry = 0
            self.truncations += 1
            log.info("SQLite WAL truncated; reads and writes paused %.0f ms", pause * 1000)

    @staticmethod
    def _catch_up(conn: sqlite3.Connection, deadline: float) -> str | None:
        """Copy the whole WAL into the database and truncate it, by the deadline (under the write
        lock: nothing commits meanwhile). None when done, else what it waited for."""
        while True:
            _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames == copied:
                break
            if time.monotonic() >= deadline:
                return "a read of an older snapshot (another process?) still open"
            time.sleep(0.002)
        left_ms = max(1, int((deadline - time.monotonic()) * 1000))
        conn.execute(f"PRAGMA busy_timeout={left_ms}")
        busy, _frames, _copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return "a reader of the WAL still open at the truncation" if busy else None

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def ping(db: Database) -> None:
    with db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def migrate(db: Database, revision: str = "head") -> None:
    """Bring the database to the latest schema (what `cellbench init` runs)."""
    from alembic import command

    cfg = alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def schema_is_current(db: Database) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head


def backup_sqlite(db: Database, target: str) -> None:
    """An online, consistent copy of a live SQLite database (the sqlite3 backup API) in a new file.

    The copy holds the sealed lists and the password hashes: the file is created mode 0600 before
    its first byte is written (never 0644 for a moment, whatever the umask), and an existing file is
    never overwritten. The copy is switched to a rollback journal so that it is one self-contained
    file: opening it read-only later leaves no -wal or -shm beside it."""
    path = db.sqlite_path()
    if path is None:
        raise ValueError("backup_sqlite copies a SQLite database; back up PostgreSQL with pg_dump")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a default ACL on the folder may have widened the mode asked for
    finally:
        os.close(fd)
    try:
        source = sqlite3.connect(path)
        dest = sqlite3.connect(target)
        try:
            # One step (pages=-1): the source stays in one read transaction for the whole copy, so the
            # copy is one snapshot; writers go on meanwhile (WAL), and a step-wise copy would restart.
            source.backup(dest, pages=-1)
            dest.execute("PRAGMA journal_mode=DELETE")
        finally:
            dest.close()
            source.close()
    except BaseException:
        Path(target).unlink(missing_ok=True)  # created above, so ours: half a copy is no backup
        raise
