"""The signature events of one range of the chain, gathered by the chain check while it reads the
range, for `signed` to match against the signature rows: how many "signed" events, and each
"signature invalidated" event with what it recorded. Reading them in a pass of their own cost a
third of what verify spends beside the chain (there is no index on the action).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SIGNED, VOIDED = "signed", "signature invalidated"
# What `signed` reads of a voiding event, in this order.
_VOIDING = "seq, at, field, entity_type, entity_id, old_value, reason"
# For the SQLite proof (proof._SQLITE_SQL): '' for a "signed" event, a voiding's columns as JSON.
SQLITE_COLUMN = f"CASE action WHEN '{VOIDED}' THEN json_array({_VOIDING}) WHEN '{SIGNED}' THEN '' END"
# Built from constants; the range is bound.
_RANGE_SQL = (f"SELECT action, {_VOIDING} FROM audit_event WHERE seq BETWEEN ? AND ? "  # noqa: S608 - constant names
              f"AND action IN ('{SIGNED}', '{VOIDED}') ORDER BY seq")


@dataclass
class Gathered:
    signed: int = 0  # "signed" events
    voidings: list[tuple[Any, ...]] = field(default_factory=list)  # "signature invalidated" events, in order

    def add(self, other: Gathered) -> None:
        """The next range's events after this range's."""
        self.signed += other.signed
        self.voidings += other.voidings

    def add_sqlite(self, text: str) -> None:
        """One event as the SQLite proof reads it (SQLITE_COLUMN)."""
        if text:
            self.voidings.append(tuple(json.loads(text)))
        else:
            self.signed += 1


def read_range(conn: Any, mark: str, lo: int, hi: int) -> Gathered:
    """The range's signature events in a pass of their own (PostgreSQL, or a range with a problem)."""
    found = Gathered()
    cur = conn.cursor()
    try:
        cur.execute(_RANGE_SQL.replace("?", mark), (lo, hi))
        for action, *voiding in cur.fetchall():
            if action == SIGNED:
                found.signed += 1
            else:
                found.voidings.append(tuple(voiding))
    finally:
        cur.close()
    return found
