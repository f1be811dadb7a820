"""Signatures and their audit events, matched both ways.

`signatures.verify_all` starts from the signature rows; a row deleted, or a signature voided by
setting its columns, leaves nothing there to start from. Here every "signed" event must name a
signature row that names it back, every "signature invalidated" event a signature that is void
for the reason the event gives, and every void signature its voiding event.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from .source import Event, Reader

_SIGNATURES_SQL = ("SELECT id, audit_seq, record_hash, meaning, entity_type, entity_id, signer_name, "
                   "invalidated_at, invalidated_reason FROM signature ORDER BY id")
# invalidate() takes its time and then writes its event: the two differ by the time between, a
# moment of one transaction. Far more than that is a voiding time written by hand.
VOIDING_SLACK = timedelta(minutes=1)


class Row(NamedTuple):
    id: int
    audit_seq: int | None
    record_hash: str
    meaning: str
    entity_type: str
    entity_id: str
    signer_name: str
    invalidated_at: Any
    invalidated_reason: str | None

    def __str__(self) -> str:
        return f"signature {self.id} ({self.meaning} by {self.signer_name} on {self.entity_type} {self.entity_id})"


def _named(text: str | None) -> tuple[int | None, str]:
    """The signature id and the rest of "#<id> <record hash>" (or "#<id>")."""
    head, _, rest = (text or "").partition(" ")
    return (int(head[1:]) if head.startswith("#") and head[1:].isdigit() else None), rest


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _what(event: Event) -> str:
    meaning = (event.field or "").removeprefix("signature:")
    return f"audit event {event.seq} ({meaning} signature on {event.entity_type} {event.entity_id})"


def check(reader: Reader, signed: list[Event], voided: list[Event]) -> tuple[dict[int, str], list[str]]:
    """Every problem found; and the "signed" events by sequence number (what each says it
    signed), for verify_all's check from the signature side."""
    rows = {row[0]: Row(*row) for row in reader.rows(_SIGNATURES_SQL)}
    problems: list[str] = []
    for event in signed:
        sig_id, record_hash = _named(event.new)
        row = rows.get(sig_id) if sig_id is not None else None
        if sig_id is None:
            problems.append(f"{_what(event)}: it names no signature")
        elif row is None:
            problems.append(f"{_what(event)}: signature {sig_id} is missing: its row was deleted")
        elif (row.audit_seq, row.record_hash) != (event.seq, record_hash) or (
                row.entity_type, row.entity_id) != (event.entity_type, event.entity_id):
            problems.append(f"{_what(event)}: {row} does not match this event")
    voiding: dict[int, Event] = {}
    for event in voided:
        sig_id, _ = _named(event.old)
        row = rows.get(sig_id) if sig_id is not None else None
        if sig_id is None or row is None:
            problems.append(f"{_what(event)}: it voids signature {sig_id}, which is missing: its row was deleted")
            continue
        if sig_id in voiding:
            problems.append(f"{_what(event)}: {row} was already voided by audit event {voiding[sig_id].seq}")
            continue
        voiding[sig_id] = event
        at, recorded = _moment(row.invalidated_at), _moment(event.at)
        if row.invalidated_at is None:
            problems.append(f"{row}: audit event {event.seq} voided it, but the row says it stands: "
                            "its voiding was undone outside cellbench")
        elif row.invalidated_reason != event.reason:
            problems.append(f"{row}: its voiding reason is not the one audit event {event.seq} recorded")
        elif at is None or recorded is None or abs(recorded - at) > VOIDING_SLACK:
            problems.append(f"{row}: its voiding time {row.invalidated_at} is not the time audit event "
                            f"{event.seq} recorded ({event.at})")
    for row in rows.values():
        if row.invalidated_at is not None and row.id not in voiding:
            problems.append(f"{row}: it is marked void, but no audit event records its voiding: "
                            "it was voided outside cellbench")
    return {event.seq: event.new or "" for event in signed}, problems
