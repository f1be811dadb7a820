"""Custody events and the audit events written beside them, counted kit by kit.

A custody event has no audit event of its own: it is written in the same transaction as the kit
move it goes with (custody.events.record, next to kits.move_many's event, a position's event, or a
shipment's "kit packed"). So each kit's custody events of one kind must be as many as its audit
events of the matching kind: a custody row deleted or added behind cellbench's back is then named.
"""
from __future__ import annotations

from collections import Counter, defaultdict

from .source import Reader

# custody actions -> the kit's audit events that go with them, one for one.
EXACT: dict[tuple[str, ...], tuple[str, ...]] = {
    ("packed",): ("kit packed",),  # on the shipment, naming the kit (custody.packing.pack_kit)
    ("unpacked",): ("kit unpacked",),
    ("dispatched",): ("kit ship", "kit ship awaiting release"),
    ("received",): ("kit receive", "kit receive awaiting release"),
    ("received into quarantine",): ("kit receive into quarantine",),
    ("dispensed",): ("kit dispense",),
    ("preparation started",): ("kit start preparation",),
    ("not administered",): ("kit not administered",),
    # one per gland, on the visit (pharmacy.administration): counted on the kit the visit holds
    ("administered",): ("administration recorded",),
    ("returned",): ("kit return",),
    ("destroyed",): ("kit destroy",),
    ("scanned",): ("station:kit scanned",),  # a scan station's scan (custody.scanning)
}
# Custody actions whose audit event is also written without one: a custody event needs its event,
# but not every such event has a custody event. A kit found missing at receipt is recorded lost
# with no custody event (custody.receipt); a kit stored where it already was is not moved
# (custody.events.relocate writes only a change of place).
AT_MOST: dict[tuple[str, ...], tuple[str, ...]] = {
    ("missing", "lost in transit"): ("kit lose",),
    ("stored",): ("location:kit moved",),
    ("damaged",): ("kit damage",),  # kits.move "damage" is a move of its own as well
}
# Any other custody action is a placing in a box (custody.positions.place): "kit <action>" on the
# field "position". A position cleared because its kit had left is no hand-over: no custody event.
_POSITION = "position:kit "
_NO_CUSTODY = frozenset({"position:kit position cleared"})

_CUSTODY_SQL = ("SELECT k.number, c.action, count(*) FROM custody_event c JOIN kit k ON k.id = c.kit_id "
                "GROUP BY k.number, c.action")
_STATE_MOVES = sorted({kind for kinds in (*EXACT.values(), *AT_MOST.values()) for kind in kinds if ":" not in kind}
                      - {"kit packed", "kit unpacked", "administration recorded"})
# The kit's audit events that go with custody events, counted per kit in SQL (an index range per
# entity type): its moves of state that carry one, and its placings, moves and scans.
_KIT_EVENTS_SQL = ("SELECT entity_id, field, action, count(*) FROM audit_event WHERE entity_type = 'kit' AND ("  # noqa: S608
                   f"(field = 'state' AND action IN ({', '.join(repr(a) for a in _STATE_MOVES)})) "
                   "OR field IN ('position', 'location', 'station')) GROUP BY entity_id, field, action")
_PACKED_SQL = ("SELECT CASE WHEN action = 'kit packed' THEN new_value ELSE old_value END, action, count(*) "
               "FROM audit_event WHERE entity_type = 'shipment' AND action IN ('kit packed', 'kit unpacked') "
               "GROUP BY CASE WHEN action = 'kit packed' THEN new_value ELSE old_value END, action")
_VISIT_KITS_SQL = ("SELECT k.number, count(*) FROM visit v JOIN participant p ON p.id = v.participant_id "
                   "JOIN study s ON s.id = p.study_id JOIN kit k ON k.id = v.kit_id "
                   "JOIN audit_event e ON e.entity_type = 'visit' AND e.action = 'administration recorded' "
                   "AND e.entity_id = s.code || '/' || p.screening_number || '/T' || CAST(v.treatment AS VARCHAR(8)) "
                   "GROUP BY k.number")


def _audited(reader: Reader) -> dict[str, Counter[str]]:
    """Per kit number, its audit events that go with custody events, by kind."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for number, field, action, count in reader.rows(_KIT_EVENTS_SQL):
        key = action if field == "state" else f"{field}:{action}"
        if key not in _NO_CUSTODY:
            counts[number][key] += int(count)
    for number, action, count in reader.rows(_PACKED_SQL):
        if number:
            counts[number][action] += int(count)
    for number, count in reader.rows(_VISIT_KITS_SQL):
        counts[number]["administration recorded"] += int(count)
    return counts


def _said(actions: tuple[str, ...]) -> str:
    return " or ".join(f"'{action}'" for action in actions)


def check(reader: Reader) -> tuple[int, list[str]]:
    """How many custody events were matched, and every kit whose counts disagree."""
    custody: dict[str, Counter[str]] = defaultdict(Counter)
    total = 0
    for number, action, count in reader.rows(_CUSTODY_SQL):
        custody[number][action] += int(count)
        total += int(count)
    audited = _audited(reader)
    known = {action for group in (*EXACT, *AT_MOST) for action in group}
    problems: list[str] = []
    for number in sorted(custody.keys() | audited.keys()):
        rows, trail = custody.get(number, Counter()), audited.get(number, Counter())
        rules = [(group, kinds, True) for group, kinds in EXACT.items()]
        rules += [(group, kinds, False) for group, kinds in AT_MOST.items()]
        rules += [((action,), (_POSITION + action,), True) for action in rows if action not in known]
        rules += [((key.removeprefix(_POSITION),), (key,), True) for key in trail
                  if key.startswith(_POSITION) and key.removeprefix(_POSITION) not in rows]
        for group, kinds, exact in rules:
            have, want = sum(rows[a] for a in group), sum(trail[k] for k in kinds)
            if have == want or (not exact and have < want):
                continue
            shown = _said(tuple(kind.split(":", 1)[-1] for kind in kinds))
            if have > want:
                problems.append(f"kit {number}: {have} {_said(group)} custody events but {want} {shown} audit "
                                "events: a custody event was added outside cellbench")
            else:
                problems.append(f"kit {number}: {have} {_said(group)} custody events but {want} {shown} audit "
                                "events: a custody event was deleted")
    return total, problems
