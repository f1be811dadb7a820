"""What the signature matching and the state replay read: the few kinds of audit event they need,
in sequence order, and the rows they compare them with, all in one snapshot.

Read with the plain DB-API driver, as the chain check reads: tuples, no ORM objects. One
transaction (REPEATABLE READ on PostgreSQL, one read transaction on SQLite) so that a write
committed while verify runs cannot make the events and the rows disagree.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from ..db import Database
from .chain import _connect

# The entities whose state is replayed, and the audit fields that carry what is replayed: their
# state and key dates, a held kit's state before the hold, and the kit moves that go with a
# custody event (a position, a place, a kit packed into a shipment).
REPLAYED = ("lot", "kit", "shipment", "visit", "deviation", "kit_quarantine", "blinded_lot")
FIELDS = ("state", "expiry", "state_before_quarantine", "position", "location", "station", "kits")
# The events that bring each entity into being (their field is not always one of FIELDS).
CREATED = ("lot started", "shipment created", "deviation raised", "visit planned", "kit number issued",
           "kit quarantine opened", "blinded lot created")
SIGNED, VOIDED = "signed", "signature invalidated"
ADMINISTERED = "administration recorded"  # one per gland: what each "administered" custody event goes with


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join("'" + value.replace("'", "''") + "'" for value in values)


# Built from the constants above; no value comes from outside. No index serves this filter: it is
# one sequential pass, the only full read besides the chain check's.
EVENTS_SQL = (
    "SELECT seq, at, action, entity_type, entity_id, field, old_value, new_value, reason FROM audit_event "  # noqa: S608
    f"WHERE action IN ('{SIGNED}', '{VOIDED}', '{ADMINISTERED}') OR (entity_type IN ({_quoted(REPLAYED)}) "
    f"AND (field IN ({_quoted(FIELDS)}) OR action IN ({_quoted(CREATED)}))) ORDER BY seq"
)


class Event(NamedTuple):
    seq: int
    at: str
    action: str
    entity_type: str
    entity_id: str
    field: str | None
    old: str | None
    new: str | None
    reason: str | None


class Events:
    """The events read, by what reads them: signed and voiding events, and each replayed
    entity type's events (each list in sequence order)."""

    def __init__(self) -> None:
        self.signed: list[Event] = []
        self.voided: list[Event] = []
        self.administered: list[Event] = []
        self.by_type: dict[str, list[Event]] = defaultdict(list)
        self.count = 0

    def add(self, row: tuple[Any, ...]) -> None:
        event = Event(*row)
        self.count += 1
        if event.action == SIGNED:
            self.signed.append(event)
        elif event.action == VOIDED:
            self.voided.append(event)
        elif event.action == ADMINISTERED:
            self.administered.append(event)
        else:
            self.by_type[event.entity_type].append(event)


class Reader:
    """One read-only connection in one snapshot."""

    def __init__(self, conn: Any, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
            return list(cur.fetchall())
        finally:
            cur.close()

    def events(self) -> Events:
        found = Events()
        cur = self.conn.cursor()
        try:
            cur.execute(EVENTS_SQL)
            while batch := cur.fetchmany(2_000):
                for row in batch:
                    found.add(row)
        finally:
            cur.close()
        return found


@contextmanager
def reading(db: Database) -> Iterator[Reader]:
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
