"""A range of the audit chain proved sound with the database writing each event's canonical text.

`audit.event_hash` hashes `prev_hash|json` where the JSON is Python's (ensure_ascii=False, no
spaces). Reading the twelve columns as Python values and encoding them cost about two thirds of the
chain check; here the database writes the same text itself (SQLite's json_array, PostgreSQL's
to_json, whose escapes are Python's: quote, backslash, \\b \\f \\n \\r \\t, other control characters
as \\u00xx in lower case, everything else as it is), and

- SQLite hands back one byte string per event, which is hashed and linked here;
- PostgreSQL hashes and links the events itself (sha256, lag) and hands back two counts.

This only proves a range clean. At the first doubt (a digest or link that does not match, a row
missing, a value the database's JSON could write otherwise than Python's, the database's JSON not
matching Python's on a sample of every escape) it answers None, and the reference check in
`chain` reads the range again, column by column, and names the first problem as it always did. So
the problems named are the reference check's; this only makes a sound chain quicker to read.
"""
from __future__ import annotations

import binascii
import hashlib
from typing import Any, NamedTuple

from ..audit import HASHED_COLUMNS
from . import gathered
from .gathered import Gathered

_INTEGERS = frozenset({"seq", "user_id"})
_SQLITE_JSON = f"json_array({', '.join(HASHED_COLUMNS)})"
_POSTGRES_JSON = ("'[' || " + " || ',' || ".join(f"COALESCE(to_json({c})::text, 'null')" for c in HASHED_COLUMNS)
                  + " || ']'")
_TEXT = {False: "prev_hash || '|' || " + _SQLITE_JSON, True: "prev_hash || '|' || " + _POSTGRES_JSON}

# SQLite: one byte string per event (no text decoded and encoded again), or NULL where the row's
# JSON could differ from Python's: a REAL in user_id (SQLite writes 15 digits, Python 17), or a
# prev_hash that is not 64 bytes (the link is checked as "the text starts with the last hash").
# A BLOB makes json_array fail: the reference check then meets it too.
# The third column: the signature events `signed` needs, gathered in the same pass (gathered.py).
_SQLITE_SQL = ("SELECT CAST(hash AS BLOB), CASE WHEN typeof(user_id) <> 'real' "  # noqa: S608 - constant names
               f"AND length(CAST(prev_hash AS BLOB)) = 64 THEN CAST({_TEXT[False]} AS BLOB) END, "
               f"{gathered.SQLITE_COLUMN} FROM audit_event WHERE seq BETWEEN ? AND ? ORDER BY seq")
# PostgreSQL: the server hashes (about a third of the CPU of sending the rows and hashing them here)
# and links each event to the one before; the types are strict, so no value needs a guard.
_POSTGRES_SQL = ("SELECT count(*), count(*) FILTER (WHERE digest IS DISTINCT FROM hash "  # noqa: S608 - constant names
                 "OR prev_hash IS DISTINCT FROM linked), "
                 "(SELECT prev_hash FROM audit_event WHERE seq = %s), (SELECT hash FROM audit_event WHERE seq = %s) "
                 "FROM (SELECT hash, prev_hash, lag(hash, 1, prev_hash) OVER (ORDER BY seq) AS linked, "
                 f"encode(sha256(convert_to({_TEXT[True]}, 'UTF8')), 'hex') AS digest "
                 "FROM audit_event WHERE seq BETWEEN %s AND %s) AS events")
# Rows per fetch (SQLite): see chain._BATCH.
_BATCH = 2_000

# Every character JSON escapes, and some it must not (DEL, non-ASCII, U+2028, astral), with the
# integers at their limits and NULLs: the database's text must be Python's, or it is not used.
_ODD = "".join(map(chr, range(1, 32))) + '"\\/\x7f µ ✓ \u2028 😀 \'|[],:'
_SAMPLE = {"seq": 2**62, "at": _ODD, "user_id": -(2**31), "field": None, "reason": "", "visibility": "all"}


class Clean(NamedTuple):
    events: int  # how many (`count` is a tuple's method)
    first_prev: str
    last_hash: str


def database_json_holds(conn: Any, postgres: bool, encode: Any) -> bool:
    """Whether this database writes the canonical text exactly as `encode` (Python) does."""
    mark = "%s" if postgres else "?"
    values = [_SAMPLE.get(name, _ODD[::-1] + name) for name in HASHED_COLUMNS]
    prev = "f" * 64
    casts = ", ".join(f"CAST({mark} AS {'BIGINT' if name in _INTEGERS else 'TEXT'}) AS {name}"
                      for name in HASHED_COLUMNS)
    cur = conn.cursor()
    try:
        cur.execute(f"SELECT {_TEXT[postgres]} FROM (SELECT CAST({mark} AS TEXT) AS prev_hash, {casts}) AS sample",  # noqa: S608
                    (prev, *values))
        (written,) = cur.fetchone()
    except conn.Error:
        conn.rollback()
        return False
    finally:
        cur.close()
    return bool(written == f"{prev}|{encode(values)}")


def range_clean(conn: Any, postgres: bool, lo: int, hi: int, events: Gathered | None = None) -> Clean | None:
    """What the reference check finds in a sound range; None at the first doubt. On SQLite,
    `events` gathers the range's signature events as the rows go by (partly, when None is answered)."""
    try:
        found = _postgres(conn, lo, hi) if postgres else _sqlite(conn, lo, hi, Gathered() if events is None else events)
    except conn.Error:  # e.g. json_array refusing a BLOB: the reference check says what it is
        conn.rollback()
        return None
    # seq is the primary key: as many rows as numbers in the range means none is missing.
    return found if found is not None and found.events == hi - lo + 1 else None


def _postgres(conn: Any, lo: int, hi: int) -> Clean | None:
    cur = conn.cursor()
    try:
        cur.execute(_POSTGRES_SQL, (lo, hi, lo, hi))
        count, wrong, first_prev, last_hash = cur.fetchone()
    finally:
        cur.close()
    conn.rollback()  # end the read transaction before the next range's statement
    return Clean(count, first_prev, last_hash) if not wrong and last_hash is not None else None


def _sqlite(conn: Any, lo: int, hi: int, events: Gathered) -> Clean | None:
    cur = conn.cursor()
    try:
        cur.execute(_SQLITE_SQL, (lo, hi))
        sha256, hexlify, gather = hashlib.sha256, binascii.hexlify, events.add_sqlite
        count, first_prev, last = 0, "", b""
        # Per event: one digest and two comparisons. The first event's link is checked when stitching.
        while rows := cur.fetchmany(_BATCH):
            if not count:
                text = rows[0][1]
                if text is None:
                    return None
                last = text[:64]
                first_prev = last.decode()
            for stored, text, event in rows:
                if text is None or not text.startswith(last):
                    return None
                last = hexlify(sha256(text).digest())
                if last != stored:
                    return None
                if event is not None:
                    gather(event)
            count += len(rows)
    finally:
        cur.close()
    return Clean(count, first_prev, last.decode()) if count else None
