"""Replay each lot's, kit's, shipment's, visit's, deviation's and kit quarantine's state, and the
key dates (a lot's and a blinded lot's expiry, a held kit's state before its hold), from the audit
events, and compare them with the rows.

Every service records a state change as an audit event on the entity's public id with
field "state" and the new state (`lots.move`, `kits.move_many`, `custody` receipt, dispatch,
assessment and loss, `pharmacy.set_state`, `deviations`, `supply.quarantine`); each entity's
creation event gives its first state. The last such event is what the row must say. A row changed
in the database behind cellbench's back then disagrees with its own history, and is named by its
public id (lot number, kit number, shipment number, visit reference, deviation number).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..kits.lifecycle import _ARRIVES_AS, STATE_LABELS
from ..models import DeviationState, KitState, LotState
from ..pharmacy.lifecycle import VISIT_LABELS, VisitState
from .source import Event, Events, Reader

# The state each kind of record is created in (its creation event carries no "state" field).
_KIT_STATE = {label: state.value for state, label in STATE_LABELS.items()}  # kit events carry the blinded label
_VISIT_STATE = {label: state.value for state, label in VISIT_LABELS.items()}
_HELD = KitState.quarantined.value


@dataclass
class Replayed:
    """What one entity's audit events say."""

    created: bool = False
    state: str | None = None
    values: dict[str, str | None] = field(default_factory=dict)  # key dates and the like, by name
    unknown: list[str] = field(default_factory=list)  # states no service writes


def _words(value: Any) -> str:
    return "nothing" if value is None else str(value).replace("_", " ")


def _date(value: Any) -> str | None:
    """A date as the audit trail writes it (ISO), whatever the driver returned."""
    return None if value is None else str(value)[:10]


@dataclass(frozen=True)
class Kind:
    """One replayed kind of record: its word in messages, how its events read, its rows."""

    word: str
    created_by: str
    first_state: str | None
    rows_sql: str  # public id, state, then the values compared, in `compared` order
    decode: Callable[[str | None], str | None] = lambda value: value
    compared: tuple[str, ...] = ()
    normalise: Callable[[Any], Any] = lambda value: value
    stateful: bool = True


def _table(states: dict[str, str]) -> Callable[[str | None], str | None]:
    def decode(label: str | None) -> str | None:
        return states.get(label or "", "?" + str(label))
    return decode


KINDS: dict[str, Kind] = {
    "lot": Kind("lot", "lot started", LotState.in_process.value, "SELECT number, state, expiry FROM lot",
                compared=("expiry",), normalise=_date),
    "kit": Kind("kit", "kit number issued", None, "SELECT number, state, state_before_quarantine FROM kit",
                decode=_table(_KIT_STATE), compared=("state_before_quarantine",)),
    "shipment": Kind("shipment", "shipment created", "packing", "SELECT number, state FROM shipment"),
    "visit": Kind("visit", "visit planned", VisitState.planned.value,
                  "SELECT s.code || '/' || p.screening_number || '/T' || CAST(v.treatment AS VARCHAR(8)), v.state "
                  "FROM visit v JOIN participant p ON p.id = v.participant_id JOIN study s ON s.id = p.study_id",
                  decode=_table(_VISIT_STATE)),
    "deviation": Kind("deviation", "deviation raised", DeviationState.open.value, "SELECT number, state FROM deviation"),
    "kit_quarantine": Kind("kit quarantine", "kit quarantine opened", "open",
                           "SELECT q.number, q.state, q.kit_count, (SELECT count(*) FROM kit_quarantine_kit m "
                           "WHERE m.quarantine_id = q.id) FROM kit_quarantine q", compared=("kits", "members")),
    "blinded_lot": Kind("blinded lot", "blinded lot created", None, "SELECT code, NULL, expiry FROM blinded_lot",
                        compared=("expiry",), normalise=_date, stateful=False),
}


def _kit_hold(trail: Replayed, event: Event, new: str | None) -> None:
    """A held kit's state before its hold, as kits.move_many writes it (and release_finally)."""
    if event.field == "state_before_quarantine":
        trail.values["state_before_quarantine"] = _KIT_STATE.get(event.new or "")
        return
    if new != _HELD:
        trail.values["state_before_quarantine"] = None
        return
    old = _KIT_STATE.get(event.old or "")
    before = trail.values.get("state_before_quarantine") if old == _HELD else old
    if event.action == "kit receive into quarantine":
        arrived = _ARRIVES_AS.get(KitState(before)) if before in _KIT_STATE.values() else None
        before = (arrived or KitState.at_site).value
    trail.values["state_before_quarantine"] = before


def replay(kind: Kind, events: Iterable[Event]) -> dict[str, Replayed]:
    trails: dict[str, Replayed] = {}
    for event in events:
        trail = trails.get(event.entity_id)
        if trail is None:
            trail = trails[event.entity_id] = Replayed(values={name: None for name in kind.compared})
        if event.action == kind.created_by:
            trail.created = True
            if kind.first_state is not None:
                trail.state = kind.first_state
            if kind.word == "kit quarantine":
                opened = json.loads(event.new or "{}")
                trail.values["kits"] = trail.values["members"] = opened.get("kits")
        if event.field == "state":
            new = kind.decode(event.new)
            if new is not None and new.startswith("?"):
                trail.unknown.append(f"audit event {event.seq} records a state cellbench does not know: {new[1:]}")
            trail.state = new
            if kind.word == "kit":
                _kit_hold(trail, event, new)
        elif event.field == "state_before_quarantine" and kind.word == "kit":
            _kit_hold(trail, event, None)
        elif event.field == "expiry" and "expiry" in kind.compared:
            trail.values["expiry"] = _date(event.new)
    return trails


def compare(kind: Kind, trails: dict[str, Replayed], rows: list[tuple[Any, ...]]) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for row in rows:
        public, state, *values = row
        public = str(public)
        seen.add(public)
        trail = trails.get(public)
        name = f"{kind.word} {public}"
        if trail is None or not trail.created:
            # A record still as it is created (a lot in process, no expiry) says nothing its events
            # would contradict; any other has a history that is not in the audit trail.
            if (kind.first_state is None or (kind.stateful and state != kind.first_state)
                    or any(kind.normalise(value) is not None for value in values[:1])):
                problems.append(f"{name}: the row says {_words(state)}, but no audit event records its creation: "
                                "it was added outside cellbench")
            continue
        problems.extend(f"{name}: {unknown}" for unknown in trail.unknown)
        if kind.stateful and state != trail.state:
            problems.append(f"{name}: the row says {_words(state)}, its audit events end at {_words(trail.state)}")
        for key, value in zip(kind.compared, values, strict=True):
            value = kind.normalise(value)
            expected = trail.values.get(key)
            if key in ("kits", "members") and value is not None:
                value = int(value)
            if value != expected:
                problems.append(f"{name}: the row's {_words(key)} is {_words(value)}, its audit events say "
                                f"{_words(expected)}")
    for public, trail in trails.items():
        if public not in seen and trail.created:
            problems.append(f"{kind.word} {public}: its audit events record it, but its row is missing: "
                            "it was deleted")
    return problems


def check(reader: Reader, events: Events) -> tuple[int, list[str]]:
    """How many records were replayed, and every mismatch."""
    problems: list[str] = []
    count = 0
    for entity_type, kind in KINDS.items():
        trails = replay(kind, events.by_type.get(entity_type, ()))
        rows = reader.rows(kind.rows_sql)
        count += len(rows)
        problems.extend(compare(kind, trails, rows))
    return count, problems
