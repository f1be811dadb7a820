"""The audit chain check of one range of events: recompute every event's hash and link, name the
first mismatch (integrity.verify_chain splits the chain into ranges and stitches them).

The chain is read with the plain DB-API driver, never as ORM objects (building a million ORM
objects costs about seven times more than hashing them), and split across processes by sequence
range: each event stores the hash it links to, so ranges can be checked independently and then
stitched at their borders. A range is first offered to `proof` (the database writes the canonical
text: about half the cost); what it does not prove sound is read here as before and its first
problem named.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sqlalchemy.engine import make_url

from ..audit import GENESIS_HASH, HASHED_COLUMNS
from . import gathered, proof
from .gathered import Gathered

# Built from the constant column names; the range is bound.
_SELECT = (f"SELECT {', '.join(HASHED_COLUMNS)}, prev_hash, hash FROM audit_event "  # noqa: S608 - constant names
           "WHERE seq BETWEEN ? AND ? ORDER BY seq")
# Rows per fetch. Small batches stay in the CPU caches: reading SQLite in batches of 20,000 was about
# 40 % slower than in batches of 1,000 to 2,000 (the Python objects of a big batch spill out of cache).
_BATCH = 2_000
BROKEN_LINK = "its link to the previous event does not match: the chain was altered here"


def _canonical_json() -> Callable[[Sequence[Any]], str]:
    """What `audit.event_hash` computes with json.dumps(values, ensure_ascii=False, separators=(",", ":")),
    with its C encoder built once instead of once per row (JSONEncoder.encode builds a new one on
    every call, which cost as much as reading the row). Same encoder, same settings, same text."""
    settings = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the ordinary path
        return settings.encode
    try:
        encoder = make(None, settings.default, json.encoder.encode_basestring, None,
                       settings.key_separator, settings.item_separator, False, False, True)
    except TypeError:  # the accelerator's signature changed: the ordinary path
        return settings.encode
    join = "".join

    def canonical(values: Sequence[Any]) -> str:
        return join(encoder(values, 0))

    sample = (1, "µ \"quoted\" \\ \n\t\x01\u2028 ✓", None, 2**70, 1.5, "")
    return canonical if canonical(sample) == settings.encode(sample) else settings.encode


@dataclass
class Problem:
    seq: int
    what: str

    def __str__(self) -> str:
        return f"audit event {self.seq}: {self.what}"


@dataclass
class _Range:
    lo: int
    hi: int
    count: int = 0
    first_prev: str | None = None
    last_hash: str | None = None
    problem: Problem | None = None
    events: Gathered | None = None  # the range's signature events, when asked for


@dataclass
class Report:
    events: int = 0
    signatures: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    problems: list[str] = field(default_factory=list)
    replayed: int = 0  # records whose state was replayed from their audit events
    custody: int = 0  # custody events matched to the kit moves they go with
    timings: dict[str, float] = field(default_factory=dict)  # seconds per part of verify

    @property
    def ok(self) -> bool:
        return not self.problems


def _connect(url: str) -> tuple[Any, str]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("verify needs a database file, not an in-memory database")
        # Quoted: a path with ?, # or % must not be read as URI syntax.
        return sqlite3.connect(f"file:{quote(parsed.database)}?mode=ro", uri=True), "?"
    import psycopg

    conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(conninfo), "%s"


def _check_range(url: str, lo: int, hi: int, gather: bool = False) -> _Range:
    """One range checked; with `gather`, its signature events gathered as well (`signed` matches them)."""
    conn, mark = _connect(url)
    try:
        postgres = mark == "%s"
        events = Gathered() if gather else None
        clean = proof.range_clean(conn, postgres, lo, hi, events) if proof.database_json_holds(
            conn, postgres, _canonical_json()) else None
        result = _Range(lo, hi, *clean) if clean is not None else _named_first_problem(conn, mark, lo, hi)
        if gather and (postgres or clean is None):  # the proof gathered none of them, or not all
            events = gathered.read_range(conn, mark, lo, hi)
        result.events = events
        return result
    finally:
        conn.close()


def _named_first_problem(conn: Any, mark: str, lo: int, hi: int) -> _Range:
    """The reference check: every column read as Python values and hashed as `audit.event_hash`
    hashes them; it names the first row that does not hold."""
    result = _Range(lo, hi)
    # A named (server-side) cursor on PostgreSQL streams instead of buffering every row.
    cur = conn.cursor(name="cellbench_verify") if mark == "%s" else conn.cursor()
    try:
        cur.execute(_SELECT.replace("?", mark), (lo, hi))
        encode = _canonical_json()
        sha256 = hashlib.sha256
        expected, prev = lo, None
        # The loop body is the verifier's cost per event: keep it to the checks themselves.
        while rows := cur.fetchmany(_BATCH):
            for row in rows:
                seq = row[0]
                if seq != expected:
                    result.count = expected - lo
                    result.problem = Problem(expected, f"is missing (the sequence jumps to {seq}): a row was deleted")
                    return result
                if row[12] != prev:
                    if prev is not None:
                        result.count = expected - lo
                        result.problem = Problem(seq, BROKEN_LINK)
                        return result
                    result.first_prev = prev = row[12]  # the range's first row: checked when stitching
                digest = sha256(f"{prev}|{encode(row[:12])}".encode()).hexdigest()
                if digest != row[13]:
                    result.count = expected - lo
                    result.problem = Problem(seq, "its content does not match its hash: the row was changed")
                    return result
                prev, expected = digest, seq + 1
        result.count = expected - lo
        if expected != hi + 1:
            result.problem = Problem(expected, f"is missing (the chain ends at {expected - 1}): a row was deleted")
        result.last_hash = prev
        return result
    finally:
        cur.close()
