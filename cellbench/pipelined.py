"""One write transaction on PostgreSQL in as few round trips as its reads allow (psycopg's pipeline mode).

The scan's group commit (custody.scanning.GroupCommit) sent seven statements a group, each a round
trip: BEGIN (psycopg sends it alone before the first statement), the kits' read, the custody
insert, the chain head's lock, the events' insert, the head's move and COMMIT. A round trip is paid
by the writer thread twice over: it waits for the server, then waits for the interpreter lock held
by the event loop. Here the statements are queued and sent together, and only a read waits: BEGIN
goes with the first read, the writes before a read go with it, and COMMIT with the last writes. The
scan group takes three round trips.

The transaction is this module's, not psycopg's: the connection is in autocommit for the while, and
BEGIN and COMMIT are statements of the pipeline. `synchronous_commit` is untouched: COMMIT returns
once the transaction is on disk, and no scan is answered before it has returned.

Statements are SQLAlchemy constructs compiled once for psycopg; their parameters get the engine's
NUL guard (db.refuse_unstorable), which does not see statements sent past the engine.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

from sqlalchemy import ClauseElement
from sqlalchemy.dialects.postgresql import psycopg as pg_dialect

from .db import Database, refuse_unstorable


class NotWritten(Exception):
    """The transaction failed before its commit took effect and was rolled back: nothing of it is
    written, so its work may be redone. A failure whose outcome is unknown (the connection lost
    during COMMIT) is raised as it is instead."""


@cache
def compiled(statement: ClauseElement) -> tuple[str, Mapping[str, Any]]:
    """A statement as psycopg takes it (%(name)s parameters), with the values bound in it."""
    done = statement.compile(dialect=pg_dialect.dialect())
    return str(done), dict(done.params)


class Pipelined:
    """The open transaction: `send` queues a write, `rows` sends everything queued with a read and
    returns the read's rows (one round trip)."""

    def __init__(self, driver: Any, pipeline: Any):
        self._driver, self._pipeline = driver, pipeline
        self._writes = driver.cursor()
        self.round_trips = self.statements = 0  # what was sent (bench/scan.py prints them)

    def send(self, statement: ClauseElement, rows: Sequence[Mapping[str, Any]]) -> None:
        """The statement executed once per row of parameters, queued."""
        sql, bound = compiled(statement)
        for row in rows:
            refuse_unstorable(row.items())
        self._writes.executemany(sql, [{**bound, **row} for row in rows])
        self.statements += 1

    def rows(self, statement: ClauseElement, params: Mapping[str, Any] | None = None) -> list[tuple]:
        sql, bound = compiled(statement)
        refuse_unstorable((params or {}).items())
        cursor = self._driver.cursor()
        cursor.execute(sql, {**bound, **(params or {})})
        self.statements += 1
        self.sync()
        return cursor.fetchall()

    def sync(self) -> None:
        self._pipeline.sync()
        self.round_trips += 1

    def _command(self, command: str) -> None:
        self._writes.execute(command)
        self.statements += 1


@contextmanager
def write(db: Database) -> Iterator[Pipelined]:
    """One transaction, committed at the end (with the last writes, in their round trip) or rolled
    back on any error. Raises NotWritten when it failed and nothing of it was written."""
    with db.write_connection() as conn:  # the pool's connection; SQLAlchemy's transaction sends nothing
        driver: Any = conn.connection.driver_connection  # psycopg.Connection
        driver.autocommit = True
        committing = False
        try:
            try:
                with driver.pipeline() as pipeline:
                    tx = Pipelined(driver, pipeline)
                    tx._command("BEGIN")
                    yield tx
                    committing = True
                    tx._command("COMMIT")
                    tx.sync()
            except BaseException as failed:
                lost = driver.closed or driver.info.transaction_status == _UNKNOWN
                if committing and lost:
                    raise  # lost while committing: not known to be unwritten
                # Out of the pipeline (its exit has synced, or given up): a failed statement's error
                # may surface at any later statement or sync, even the COMMIT's, and leave the
                # transaction open and aborted; a ROLLBACK sent inside an aborted pipeline would fail.
                if not lost and driver.info.transaction_status != _IDLE:
                    driver.execute("ROLLBACK")
                if isinstance(failed, Exception):
                    raise NotWritten(str(failed)) from failed
                raise
        finally:
            try:
                driver.autocommit = False  # the pool's connections begin their own transactions
            except Exception:
                conn.invalidate()  # closed, or left in a transaction: not fit to go back to the pool


_IDLE, _UNKNOWN = 0, 4  # psycopg.pq.TransactionStatus: no transaction open; the connection is bad
