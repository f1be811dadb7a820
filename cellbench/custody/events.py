"""The chain of custody: every hand-over or move of a kit (from, to, who, when, condition), in the
caller's transaction, next to the kit move's audit event. Custody events are the readable chain of
a kit; the audit trail holds the same changes, hashed."""
from __future__ import annotations

from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import CursorResult, select, update
from sqlmodel import Session, col

from .. import audit, kits
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, Forbidden, NotFound
from ..models import CustodyEvent, Kit, KitState

M = TypeVar("M")


class Stored(Protocol):
    @property
    def id(self) -> int | None: ...


def key(row: Stored) -> int:
    """The id of a row read from the database or flushed (only a row never stored has none)."""
    if row.id is None:
        raise ValueError(f"{type(row).__name__} has not been stored yet.")
    return row.id


def person(actor: Actor) -> int:
    """The user id of a person acting (the command line's actor is nobody, and records no such act)."""
    if actor.user_id is None:
        raise Forbidden("This is recorded by a person who signs in.")
    return actor.user_id


def fetch(session: Session, model: type[M], ident: Any, what: str) -> M:
    """A row that a stored reference names; NotFound if it has gone."""
    row = session.get(model, ident)
    if row is None:
        raise NotFound(f"No {what} {ident}.")
    return row


def record(session: Session, actor: Actor, kit: Kit, action: str, *, from_place: str | None = None,
           to_place: str | None = None, shipment_id: int | None = None, condition: str | None = None) -> CustodyEvent:
    """One link of the kit's chain, in the caller's transaction (next to the kit move's audit event)."""
    event = CustodyEvent(kit_id=key(kit), action=action, from_place=from_place, to_place=to_place,
                         shipment_id=shipment_id, by_user=actor.user_id, by_name=actor.name, at=utcnow(),
                         condition=condition)
    session.add(event)
    return event


def chain(session: Session, kit: Kit) -> list[CustodyEvent]:
    """The kit's custody events, oldest first."""
    return list(session.scalars(select(CustodyEvent).where(col(CustodyEvent.kit_id) == kit.id)
                                .order_by(col(CustodyEvent.id))))


def claim_kit(session: Session, kit: Kit, seen_version: int | None = None, *, field: str = "code") -> None:
    """Take the kit for this transaction: a second person acting on it at once gets a conflict."""
    expected = kit.row_version if seen_version is None else seen_version
    changed = cast(CursorResult, session.execute(  # an UPDATE's result counts its rows
        update(Kit).where(col(Kit.id) == kit.id, col(Kit.row_version) == expected)
        .values(row_version=Kit.row_version + 1)))
    if changed.rowcount != 1:
        raise Conflict(f"Someone else acted on kit {kit.number} at the same moment. Reload and check it.", field=field)
    session.refresh(kit)


def relocate(session: Session, actor: Actor, kit: Kit, place: str) -> None:
    """The kit is somewhere else now (audited)."""
    place = place[:100]
    if kit.location != place:
        old, kit.location = kit.location, place
        session.flush()
        audit.record(session, actor, "kit moved", "kit", kit.number, field="location", old=old, new=place)


def move_kits(session: Session, actor: Actor, moving: list[Kit], move: str, *, reason: str, place: str,
              action: str, to_place: str | None = None, shipment_id: int | None = None,
              condition: str | None = None, also: dict | None = None) -> None:
    """Kits of one shipment moving together: the state (kits.move_many: each kit checked, one
    audit event each), the new place (audited like relocate), and a custody link each."""
    if not moving:
        return
    place = place[:100]
    came_from = {kit.id: kit.location for kit in moving}
    twins: dict[str, list[Kit]] = {}
    for kit in moving:  # a kit awaiting final release travels by its own twin move, arriving as it left
        twins.setdefault(kits.move_for(kit, move), []).append(kit)
    for name, group in twins.items():
        kits.move_many(session, actor, group, name, reason=reason, also={**(also or {}), "location": place})
    for kit in moving:
        if came_from[kit.id] != place:
            audit.record(session, actor, "kit moved", "kit", kit.number, field="location", old=came_from[kit.id],
                         new=place)
        record(session, actor, kit, action, from_place=came_from[kit.id], to_place=to_place or place,
               shipment_id=shipment_id, condition=condition[:200] if condition else None)


def travelling(kit: Kit) -> bool:
    """In a shipment on its way: in transit, or held while in transit (its lot was quarantined)."""
    on_the_way = (KitState.in_transit.value, KitState.transit_awaiting_release.value)
    state = KitState(kit.state)
    return state.value in on_the_way or (state is KitState.quarantined and kit.state_before_quarantine in on_the_way)


def recent(session: Session, user_id: int | None, action: str, limit: int) -> list[tuple[CustodyEvent, str]]:
    """A person's latest custody events of one kind, with each kit's number, newest first (the scan
    station's and the returns page's own recent list)."""
    rows = session.execute(select(CustodyEvent, col(Kit.number)).join(Kit, col(Kit.id) == col(CustodyEvent.kit_id))
                           .where(col(CustodyEvent.by_user) == user_id, col(CustodyEvent.action) == action)
                           .order_by(col(CustodyEvent.id).desc()).limit(limit))
    return [(event, number) for event, number in rows]
