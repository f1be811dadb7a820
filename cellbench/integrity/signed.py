"""Signatures and their audit events, matched both ways.

`signatures.verify_all` starts from the signature rows; a row deleted, or a signature voided by
setting its columns, leaves nothing there to start from. Here every "signed" event must have the
signature row that names it, every signature row its "signed" event, every "signature
invalidated" event a signature that is void for the reason the event gives, and every void
signature its voiding event.

In SQL where it can be: the signature rows are joined to their events by sequence number and only
mismatches come back; the signed events are counted in the one pass that reads the voidings, and
looked at one by one only when the count says one lacks its row.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from ..signatures import VERIFIED_COLUMNS
from .gathered import SIGNED, Gathered
from .source import Reader

_UNMATCHED = ("e.seq IS NULL OR e.action <> 'signed' OR e.entity_type <> s.entity_type OR e.entity_id <> s.entity_id "
              "OR e.new_value <> ('#' || CAST(s.id AS VARCHAR(20)) || ' ' || s.record_hash)")
# Every signature row once, in id order, for both checks that start from the rows: its columns as
# signatures.VERIFIED_COLUMNS (its hashes and content), then its voiding reason, and whether its
# event is not a "signed" event naming it (by id and record hash) on its entity. One pass: reading
# the rows again for each check cost more than checking them.
SIGNATURES_SQL = ("SELECT " + ", ".join(f"s.{name}" for name in VERIFIED_COLUMNS)
                  + f", s.invalidated_reason, CASE WHEN {_UNMATCHED} THEN 1 ELSE 0 END "
                  "FROM signature s LEFT JOIN audit_event e ON e.seq = s.audit_seq ORDER BY s.id")
_ID, _SIGNER_NAME, _MEANING, _ENTITY_TYPE, _ENTITY_ID, _AUDIT_SEQ, _VOIDED_AT, _VOIDING_REASON, _UNMATCHED_FLAG = (
    0, 2, 4, 5, 6, 10, 11, 12, 13)
_SIGNED_SQL = "SELECT seq, field, entity_type, entity_id, new_value FROM audit_event WHERE action = 'signed'"
# One pass for both kinds: the signed events are only counted (a second pass to count them cost
# more than reading them). Only when the chain check did not gather them (gathered.py).
_EVENTS_SQL = ("SELECT seq, at, field, entity_type, entity_id, old_value, reason, action FROM audit_event "
               "WHERE action IN ('signed', 'signature invalidated') ORDER BY seq")
# invalidate() takes its time and then writes its event: the two differ by the time between, a
# moment of one transaction. Far more than that is a voiding time written by hand.
VOIDING_SLACK = timedelta(minutes=1)


class Row(NamedTuple):
    id: int
    audit_seq: int | None
    meaning: str
    entity_type: str
    entity_id: str
    signer_name: str
    invalidated_at: Any
    invalidated_reason: str | None

    def __str__(self) -> str:
        return f"signature {self.id} ({self.meaning} by {self.signer_name} on {self.entity_type} {self.entity_id})"


def _named(text: str | None) -> int | None:
    """The signature id of "#<id> <record hash>" (or "#<id>")."""
    head = (text or "").partition(" ")[0]
    return int(head[1:]) if head.startswith("#") and head[1:].isdigit() else None


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _what(seq: int, field: str | None, entity_type: str, entity_id: str) -> str:
    meaning = (field or "").removeprefix("signature:")
    return f"audit event {seq} ({meaning} signature on {entity_type} {entity_id})"


def _unsigned_events(reader: Reader) -> list[str]:
    """The "signed" events that no signature row names (read only when the counts disagree)."""
    claimed = {seq for (seq,) in reader.rows("SELECT audit_seq FROM signature WHERE audit_seq IS NOT NULL")}
    ids = {sig_id for (sig_id,) in reader.rows("SELECT id FROM signature")}
    problems = []
    for seq, field, entity_type, entity_id, new in reader.rows(_SIGNED_SQL):
        if seq in claimed:
            continue
        sig_id = _named(new)
        what = _what(seq, field, entity_type, entity_id)
        if sig_id is None:
            problems.append(f"{what}: it names no signature")
        elif sig_id not in ids:
            problems.append(f"{what}: signature {sig_id} is missing: its row was deleted")
        else:
            problems.append(f"{what}: signature {sig_id} no longer names this event")
    return problems


def _row(raw: Sequence[Any]) -> Row:
    """A signature as SIGNATURES_SQL reads it, for naming it (built only for a problem, or a voiding)."""
    return Row(raw[_ID], raw[_AUDIT_SEQ], raw[_MEANING], raw[_ENTITY_TYPE], raw[_ENTITY_ID], raw[_SIGNER_NAME],
               raw[_VOIDED_AT], raw[_VOIDING_REASON])


class Prepared(NamedTuple):
    """What `check` reads of the signature rows, read while the chain is checked."""

    unmatched: list[str]  # signatures whose event is not their "signed" event
    void: dict[int, Sequence[Any]]  # the void signatures by id, as SIGNATURES_SQL reads them
    claimed: int  # distinct events the signatures name


def prepare(rows: Sequence[Sequence[Any]]) -> Prepared:
    """From the signature rows as SIGNATURES_SQL reads them."""
    unmatched = [f"{_row(raw)}: it does not match its audit event" for raw in rows if raw[_UNMATCHED_FLAG]]
    claimed = len({raw[_AUDIT_SEQ] for raw in rows} - {None})
    return Prepared(unmatched, {raw[_ID]: raw for raw in rows if raw[_VOIDED_AT] is not None}, claimed)


def _events(reader: Reader) -> Gathered:
    """The signature events read here, when the chain check did not gather them."""
    found = Gathered()
    for seq, at, field, entity_type, entity_id, old, reason, action in reader.rows(_EVENTS_SQL):
        if action == SIGNED:
            found.signed += 1
        else:
            found.voidings.append((seq, at, field, entity_type, entity_id, old, reason))
    return found


def check(reader: Reader, prepared: Prepared | None = None, events: Gathered | None = None) -> list[str]:
    """Every mismatch. `prepared`: the signature rows, read in this snapshot; `events`: the chain's
    "signed" and "signature invalidated" events up to the snapshot's last, gathered by the chain
    check (read here when None)."""
    unmatched, void, claimed = prepared or prepare(reader.rows(SIGNATURES_SQL))
    found = events if events is not None else _events(reader)
    problems = list(unmatched)
    voiding: dict[int, int] = {}
    for seq, at, field, entity_type, entity_id, old, reason in found.voidings:
        sig_id = _named(old)
        if sig_id is not None and sig_id in voiding:
            problems.append(f"{_what(seq, field, entity_type, entity_id)}: signature {sig_id} was already voided "
                            f"by audit event {voiding[sig_id]}")
            continue
        raw = void.get(sig_id) if sig_id is not None else None
        if raw is None:
            problems.append(f"{_what(seq, field, entity_type, entity_id)}: it voided signature {sig_id}, which is "
                            "missing or stands again: a signature row was deleted or its voiding undone outside "
                            "cellbench")
            continue
        voiding[raw[_ID]] = seq
        voided_at = raw[_VOIDED_AT]
        if raw[_VOIDING_REASON] != reason:
            problems.append(f"{_row(raw)}: its voiding reason is not the one audit event {seq} recorded")
        elif str(voided_at)[:16] == at[:16]:  # the same minute, as stored: within the slack
            continue
        elif (moment := _moment(voided_at)) is None or (recorded := _moment(at)) is None or abs(
                recorded - moment) > VOIDING_SLACK:
            problems.append(f"{_row(raw)}: its voiding time {voided_at} is not the time audit event {seq} "
                            f"recorded ({at})")
    problems += [f"{_row(raw)}: it is marked void, but no audit event records its voiding: it was voided outside "
                 "cellbench" for sig_id, raw in void.items() if sig_id not in voiding]
    # Every signature names a "signed" event of its own (above); as many such events as signatures
    # naming distinct ones means none lacks its signature.
    if found.signed != claimed:
        problems = _unsigned_events(reader) + problems
    return problems
