"""Engine, sessions and transactions.

One use case is one transaction: `with db.write() as s: service(s, ...)` commits once at the end
or rolls everything back. Reads use `db.read()`, which never commits.

SQLite (the embedded default) gets WAL, synchronous=FULL, foreign keys, a busy timeout and a bounded
WAL (`journal_size_limit`; the served app's wal.Checkpointer truncates it past the limit). Its
writers are serialised by a process-wide lock and start with BEGIN IMMEDIATE: concurrent
BEGIN IMMEDIATE writers otherwise sleep in SQLite's busy handler, and a deferred transaction that
upgrades to a write can fail with "database is locked" instead of waiting. Run one worker per
SQLite database. PostgreSQL needs no process lock: the rows that must be serialised (the audit
chain head, a kit being dispensed) are locked in the database, so several workers are safe.
"""
from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session

from .errors import InvalidInput, RecordedRefusal
from .private_files import create_private, create_private_if_missing
from .wal import Checkpointer, ReadGate

if TYPE_CHECKING:  # alembic is imported when the schema is checked or migrated, not by every app start
    from alembic.config import Config

_WRITE = "cellbench_write"
log = logging.getLogger("cellbench")
# The WAL's size limit (Settings.sqlite_wal_limit_mb): beyond it the served app's checkpointer
# truncates the WAL, and SQLite cuts a WAL it resets back to it (journal_size_limit).
WAL_LIMIT_MB = 16
PAGE_CACHE_KIB = 16 * 1024  # per pooled connection, filled only as pages are read
MMAP_BYTES = 1 << 30  # address space, not memory: the OS's page cache holds what is read, shared


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
        # SQLite's default page cache (2 MiB a connection) holds less than one busy page's B-tree
        # pages at ten years of data: the same statements then re-read pages from the OS on every
        # request, and a home page cost 15-25 % more CPU on a 1 GB file than with a larger cache.
        # Reads through a read-only map of the file skip the copy into the cache; writes still go
        # through SQLite's journal as before (the map is never written through).
        cur.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
        cur.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        if background_checkpoint:
            # Checkpoints run in a background thread instead of on some unlucky request.
            cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


# A pooled server connection idle longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 5.0


def _ping_idle_connections(engine: Engine) -> None:
    """pool_pre_ping's check, for the connections that need it: one that sat in the pool long enough
    for the server to have restarted or a firewall to have dropped it is pinged (and replaced if it
    is dead); one handed back moments ago is not. pool_pre_ping pinged at every checkout: a round
    trip before every request's first statement, which on the scan's hot path (the gate's token
    lookup, in the event loop) was one of five per request. A server that goes away under load
    fails the statements in flight, which SQLAlchemy then sees as a disconnect and clears the pool."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: object, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry, _proxy: object) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as dead:
            raise DisconnectionError("a pooled connection was dead; the pool replaces it") from dead


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
            refuse_unstorable(items)


def refuse_unstorable(items: Iterable[tuple[Any, Any]]) -> None:
    """The guard above for one row of (name, value) parameters (statements sent past the engine:
    pipelined.py)."""
    for name, value in items:
        if isinstance(value, str) and _UNSTORABLE.search(value):
            field = str(name).rstrip("_0123456789") if isinstance(name, str) else None
            raise InvalidInput("Text must not contain NUL characters or unpaired surrogates.", field=field)


def _create_file_privately(url: str) -> None:
    """A new SQLite database file is created mode 0600 here, before SQLite would create it with the
    umask's (0644: every local user could read the sealed lists and the password hashes)."""
    path = make_url(url).database
    if path and path != ":memory:" and not path.startswith("file:") and Path(path).parent.is_dir():
        create_private_if_missing(path)


class Database:
    def __init__(self, url: str, *, background_checkpoint: bool = False, echo: bool = False,
                 wal_limit_mb: float = WAL_LIMIT_MB):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.wal_limit_bytes = int(wal_limit_mb * 1024 * 1024)
        kwargs: dict[str, Any] = {"echo": echo}
        if not self.is_sqlite:
            # JIT off: PostgreSQL compiles a statement whose estimated cost passes jit_above_cost, and
            # a page of the audit trail read per event (audit_scope._asked) is estimated as if it read
            # every event: 250 ms of compiling for a read of 0.5 ms. No statement here reads enough to repay it.
            kwargs.update(pool_size=10, max_overflow=20, connect_args={"options": "-c jit=off"})
        if self.is_sqlite:
            _create_file_privately(url)
        self.engine = create_engine(url, **kwargs)
        if not self.is_sqlite:
            _ping_idle_connections(self.engine)
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
        self._gate = ReadGate()
        self._checkpointer: Checkpointer | None = None
        if self.is_sqlite and background_checkpoint:
            self._checkpointer = Checkpointer(self)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._gate.reading(), self._reads() as session:
            yield session

    def open_read(self) -> Session:
        """read() for one request, opened by the gate and closed by it when the response is sent
        (close_read), on whichever thread: the same WAL read gate (counted, held back while a
        catch-up drains), the same one snapshot from its first statement to its close. Nothing
        here touches the database: the session begins at its first statement."""
        self._gate.admit()
        try:
            return self._reads()
        except BaseException:
            self._gate.release()
            raise

    def close_read(self, session: Session) -> None:
        """Ends open_read's transaction (a rollback: it wrote nothing) and gives its connection back."""
        try:
            session.close()
        finally:
            self._gate.release()

    @property
    def reads_held_back(self) -> bool:
        """Whether a read opened now on a worker thread would wait for a WAL catch-up."""
        return self._gate.holding_back

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


def upsert(session: Session, table: Table) -> Any:
    """The engine's own INSERT for `table`, the one that takes .on_conflict_do_update (the running
    counters add to a row or start it in one statement on both engines)."""
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(table)


_ADDING: dict[tuple[str, str], Any] = {}  # (dialect, table) -> its adding upsert, built and compiled once


def add_to_rows(session: Session, table: Table, key: Sequence[str], rows: Sequence[dict[str, Any]],
                added: Callable[[Any], dict[str, Any]]) -> None:
    """Each row inserted, or added to the row of the same key (`added`: the SET clause, given the
    proposed row as `excluded`), in one call: one statement executed for every row (executemany: one
    driver call on SQLite, one pipelined batch on PostgreSQL), compiled once per table, where a
    multi-row VALUES of a new length each time was compiled again every time. The keys are best
    sorted: the rows are locked in the order given. `added` must be the same for every call on a table."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    statement = _ADDING.get((dialect, table.name))
    if statement is None:
        proposed = upsert(session, table)
        statement = _ADDING[(dialect, table.name)] = proposed.on_conflict_do_update(
            index_elements=list(key), set_=added(proposed.excluded))
    session.execute(statement, list(rows))


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
    os.close(create_private(target))
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
