"""Custody events and the audit events written beside them, counted kit by kit.

A custody event has no audit event of its own: it is written in the same transaction as the kit
move it goes with (custody.events.record, next to kits.move_many's event, a position's event, or a
shipment's "kit packed"). So each kit's custody events of one kind must be as many as its audit
events of the matching kind: a custody row deleted or added behind cellbench's back is then named.
"""
from __future__ import annotations

from collections import Counter, defaultdict

from .source import Events, Reader

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
_VISIT_KITS_SQL = ("SELECT s.code || '/' || p.screening_number || '/T' || CAST(v.treatment AS VARCHAR(8)), k.number "
                   "FROM visit v JOIN participant p ON p.id = v.participant_id JOIN study s ON s.id = p.study_id "
                   "JOIN kit k ON k.id = v.kit_id")


def _audited(events: Events, visit_kits: dict[str, str]) -> dict[str, Counter[str]]:
    """Per kit number, its audit events that go with custody events, by kind."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for event in events.by_type.get("kit", ()):
        if event.field == "state":
            counts[event.entity_id][event.action] += 1
        elif event.field in ("position", "location", "station"):
            key = f"{event.field}:{event.action}"
            if key not in _NO_CUSTODY:
                counts[event.entity_id][key] += 1
    for event in events.administered:
        counts[visit_kits.get(event.entity_id, f"of visit {event.entity_id}")][event.action] += 1
    for event in events.by_type.get("shipment", ()):
        if event.action == "kit packed" and event.new:
            counts[event.new][event.action] += 1
        elif event.action == "kit unpacked" and event.old:
            counts[event.old][event.action] += 1
    return counts


def _said(actions: tuple[str, ...]) -> str:
    return " or ".join(f"'{action}'" for action in actions)


def check(reader: Reader, events: Events) -> tuple[int, list[str]]:
    """How many custody events were matched, and every kit whose counts disagree."""
    custody: dict[str, Counter[str]] = defaultdict(Counter)
    total = 0
    for number, action, count in reader.rows(_CUSTODY_SQL):
        custody[number][action] += int(count)
        total += int(count)
    audited = _audited(events, {str(ref): number for ref, number in reader.rows(_VISIT_KITS_SQL)})
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
