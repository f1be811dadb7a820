"""Chain of custody: every hand-over or move of a kit (from, to, who, when, condition), storage
locations at the cell bench and the sites, and shipments from the cell bench to a site pharmacy.

Custody events are the readable chain of a kit; the audit trail holds the same changes, hashed.
Nothing here knows an arm: shipments and receipts treat active and placebo kits alike.
"""
from __future__ import annotations

from sqlmodel import Session

from .audit import Actor
from .db import utcnow
from .models import CustodyEvent, Kit

CELL_BENCH = "Cell bench"


def record(session: Session, actor: Actor, kit: Kit, action: str, *, from_place: str | None = None,
           to_place: str | None = None, shipment_id: int | None = None, condition: str | None = None) -> CustodyEvent:
    """One link of the kit's chain, in the caller's transaction (next to the kit move's audit event)."""
    event = CustodyEvent(kit_id=kit.id, action=action, from_place=from_place, to_place=to_place,
                         shipment_id=shipment_id, by_user=actor.user_id, by_name=actor.name, at=utcnow(),
                         condition=condition)
    session.add(event)
    return event
