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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..kits.lifecycle import _ARRIVES_AS, STATE_LABELS
from ..models import DeviationState, KitState, LotState
from ..pharmacy.lifecycle import VISIT_LABELS, VisitState
from .source import Reader

# The state each kind of record is created in (its creation event carries no "state" field).
_KIT_STATE = {label: state.value for state, label in STATE_LABELS.items()}  # kit events carry the blinded label
_VISIT_STATE = {label: state.value for state, label in VISIT_LABELS.items()}
_HELD = KitState.quarantined.value


def _words(value: Any) -> str:
    return "nothing" if value is None else str(value).replace("_", " ")


def _date(value: Any) -> str | None:
    """A date as the audit trail writes it (ISO), whatever the driver returned."""
    return None if value is None else str(value)[:10]


def _table(states: dict[str, str]) -> Callable[[str | None], str | None]:
    def decode(label: str | None) -> str | None:
        return None if label is None else states.get(label, "?" + label)
    return decode


@dataclass(frozen=True)
class Kind:
    """One replayed kind of record: its audit entity type, its word in messages, its rows (`pub`,
    `state` and then `v` for the value compared), how its events read."""

    entity_type: str
    word: str
    created_by: str
    first_state: str | None
    rows_sql: str
    value_field: str | None = None  # the audit field whose last value the row's `v` must equal
    decode: Callable[[str | None], str | None] = lambda value: value
    stateful: bool = True


_VISIT_REF = "s.code || '/' || p.screening_number || '/T' || CAST(v.treatment AS VARCHAR(8))"
KINDS = (
    Kind("lot", "lot", "lot started", LotState.in_process.value,
         "SELECT number AS pub, state AS state, expiry AS v FROM lot", value_field="expiry"),
    Kind("kit", "kit", "kit number issued", None,
         "SELECT number AS pub, state AS state, state_before_quarantine AS v FROM kit",
         decode=_table(_KIT_STATE)),
    Kind("shipment", "shipment", "shipment created", "packing",
         "SELECT number AS pub, state AS state, NULL AS v FROM shipment"),
    Kind("visit", "visit", "visit planned", VisitState.planned.value,
         f"SELECT {_VISIT_REF} AS pub, v.state AS state, NULL AS v FROM visit v "  # noqa: S608 - constant names
         "JOIN participant p ON p.id = v.participant_id JOIN study s ON s.id = p.study_id",
         decode=_table(_VISIT_STATE)),
    Kind("deviation", "deviation", "deviation raised", DeviationState.open.value,
         "SELECT number AS pub, state AS state, NULL AS v FROM deviation"),
    Kind("kit_quarantine", "kit quarantine", "kit quarantine opened", "open",
         "SELECT q.number AS pub, q.state AS state, (SELECT count(*) FROM kit_quarantine_kit m "
         "WHERE m.quarantine_id = q.id) AS v FROM kit_quarantine q"),
    Kind("blinded_lot", "blinded lot", "blinded lot created", None,
         "SELECT code AS pub, NULL AS state, expiry AS v FROM blinded_lot", value_field="expiry", stateful=False),
)


def _last(kind: Kind, where: str) -> str:
    """The newest value of the entity's events that match `where`: a walk back along the entity's
    index entries (entity type, entity id, seq), stopping at the first that matches."""
    # Built from the constant KINDS; no value comes from outside.
    return ("(SELECT e.new_value FROM audit_event e WHERE e.entity_type = '" + kind.entity_type + "' "  # noqa: S608 - constant names
            "AND e.entity_id = r.pub AND " + where + " ORDER BY e.seq DESC LIMIT 1)")


def _sql(kind: Kind) -> str:
    """Each row beside what its events say: its last state, whether it was created, its last value
    (a kit quarantine: what its opening recorded)."""
    state = _last(kind, "e.field = 'state'")
    created = ("CASE WHEN EXISTS (SELECT 1 FROM audit_event e WHERE e.entity_type = '" + kind.entity_type + "' "  # noqa: S608 - constant names
               "AND e.entity_id = r.pub AND e.action = '" + kind.created_by + "') THEN 1 ELSE 0 END")
    value = (_last(kind, f"e.field = '{kind.value_field}'") if kind.value_field
             else _last(kind, f"e.action = '{kind.created_by}'") if kind.entity_type == "kit_quarantine" else "NULL")
    return "SELECT r.pub, r.state, r.v, " + ", ".join((state, created, value)) + " FROM (" + kind.rows_sql + ") r"  # noqa: S608 - constant names


def _hold(reader: Reader, number: str) -> str | None:
    """A held kit's state before its hold, replayed from its events as kits.move_many writes it."""
    before: str | None = None
    for action, field, old, new in reader.rows(
            "SELECT action, field, old_value, new_value FROM audit_event WHERE entity_type = 'kit' AND entity_id = ? "
            "AND field IN ('state', 'state_before_quarantine') ORDER BY seq", (number,)):
        if field == "state_before_quarantine":
            before = _KIT_STATE.get(new or "")
        elif _KIT_STATE.get(new or "") != _HELD:
            before = None
        else:
            came = _KIT_STATE.get(old or "")
            before = before if came == _HELD else came
            if action == "kit receive into quarantine":
                arrived = _ARRIVES_AS.get(KitState(before)) if before in _KIT_STATE.values() else None
                before = (arrived or KitState.at_site).value
    return before


def _compare(reader: Reader, kind: Kind) -> tuple[int, list[str]]:
    problems: list[str] = []
    rows = reader.rows(_sql(kind))
    for pub, state, value, last_state, created, last_value in rows:
        name = f"{kind.word} {pub}"
        if not created:
            # A record still as it is created (a lot in process, no expiry) says nothing its events
            # would contradict; any other has a history that is not in the audit trail.
            if kind.first_state is None or (kind.stateful and state != kind.first_state) or value not in (None, 0):
                problems.append(f"{name}: the row says {_words(state)}, but no audit event records its creation: "
                                "it was added outside cellbench")
            continue
        expected = kind.decode(last_state) if last_state is not None else kind.first_state
        if expected is not None and expected.startswith("?"):
            problems.append(f"{name}: its audit events end at a state cellbench does not know: {expected[1:]}")
        elif kind.stateful and state != expected:
            problems.append(f"{name}: the row says {_words(state)}, its audit events end at {_words(expected)}")
        if kind.value_field:
            value, last_value = _date(value), _date(last_value)
            if value != last_value:
                problems.append(f"{name}: the row's {kind.value_field} is {_words(value)}, its audit events say "
                                f"{_words(last_value)}")
        elif kind.entity_type == "kit" and (value is not None or state == _HELD or expected == _HELD):
            before = _hold(reader, pub) if expected == _HELD else None
            if value != before:
                problems.append(f"{name}: the row's state before quarantine is {_words(value)}, its audit events "
                                f"say {_words(before)}")
        elif kind.entity_type == "kit_quarantine":
            opened = json.loads(last_value).get("kits") if (last_value or "").startswith("{") else None
            if value is not None and int(value) != opened:
                problems.append(f"{name}: the row holds {value} kits, its audit events say {opened}")
    problems += _deleted(reader, kind, {str(row[0]) for row in rows})
    return len(rows), problems


def _deleted(reader: Reader, kind: Kind, present: set[str]) -> list[str]:
    """Records whose creation the audit trail holds and whose row is gone. The ids come from the
    entity index alone; only ids without a row are looked at further."""
    ids = {str(pub) for (pub,) in reader.rows(
        "SELECT DISTINCT entity_id FROM audit_event WHERE entity_type = ?", (kind.entity_type,))}
    missing = sorted(ids - present)
    if not missing:
        return []
    created = {str(pub) for (pub,) in reader.rows(
        "SELECT DISTINCT entity_id FROM audit_event WHERE entity_type = ? AND action = ?",
        (kind.entity_type, kind.created_by))}
    return [f"{kind.word} {pub}: its audit events record it, but its row is missing: it was deleted"
            for pub in missing if pub in created]


# Whether each unblinding's impact went to the sponsor, beside its audit events: a row marked sent
# takes it off QA's queue, so a mark set behind cellbench's back would hide an unsent impact.
_IMPACTS = ("SELECT u.id, p.randomisation_number, u.impact_sent_at, (SELECT min(e.at) FROM audit_event e "
            "WHERE e.entity_type = 'unblinding' AND e.entity_id = CAST(u.id AS VARCHAR(20)) "
            "AND e.action = 'unblinding impact sent') FROM unblinding u JOIN participant p ON p.id = u.participant_id")


def _impacts(reader: Reader) -> tuple[int, list[str]]:
    rows = reader.rows(_IMPACTS)
    return len(rows), [f"unblinding {uid} of participant {number}: the row says its impact was "
                       f"{'sent at ' + str(mark) if mark else 'not sent'}, its audit events say "
                       f"{'sent at ' + str(first) if first else 'never sent'}"
                       for uid, number, mark, first in rows if mark != first]


def check(reader: Reader) -> tuple[int, list[str]]:
    """How many records were replayed, and every mismatch."""
    problems: list[str] = []
    count = 0
    for kind in KINDS:
        replayed, found = _compare(reader, kind)
        count += replayed
        problems += found
    replayed, found = _impacts(reader)
    return count + replayed, problems + found
