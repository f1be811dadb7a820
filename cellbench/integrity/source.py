"""How the signature matching, the state replay and the custody count read: the plain DB-API
driver, as the chain check reads (tuples, no ORM objects), with the work in SQL aggregates so that
their cost follows the number of records, not of audit events. One
transaction (REPEATABLE READ on PostgreSQL, one read transaction on SQLite) so that a write
committed while verify runs cannot make the events and the rows disagree.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..db import Database
from .chain import _connect


class Reader:
    """One read-only connection in one snapshot."""

    def __init__(self, conn: Any, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Every row of one statement; `?` marks its parameters, on either engine."""
        cur = self.conn.cursor()
        try:
            if not params:
                cur.execute(sql)
            else:
                cur.execute(sql.replace("?", "%s") if self.postgres else sql, params)
            return list(cur.fetchall())
        finally:
            cur.close()


@contextmanager
def reading(db: Database) -> Iterator[Reader]:
    if db.is_sqlite:
        # The database's own connection first: it switches a file still in rollback-journal mode
        # (a backup just restored) to WAL, which it could not do once this snapshot holds its lock.
        with db.engine.connect():
            pass
    conn, mark = _connect(db.engine.url.render_as_string(hide_password=False))
    postgres = mark == "%s"
    try:
        if postgres:
            import psycopg

            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
        else:
            conn.execute("BEGIN")  # one read transaction: one WAL snapshot for every statement
        yield Reader(conn, postgres)
    finally:
        try:
            conn.rollback()
        finally:
            conn.close()
