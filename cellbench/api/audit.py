"""JSON API: the audit trail, filtered by what the caller may see."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlmodel import Session

from .. import audit
from ..audit import AUDIT_READERS
from ..deps import Viewer, read_session, require
from ..errors import InvalidInput
from ..models import AuditEvent
from ..pagination import Ask
from . import paging

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
reader = require(*AUDIT_READERS)


class EventOut(BaseModel):
    seq: int | None  # omitted for blinded callers: gaps would betray events they cannot see
    at: datetime
    user_id: int | None
    user_name: str
    action: str
    entity_type: str
    entity_id: str
    field: str | None
    old_value: str | None
    new_value: str | None
    reason: str | None


def event_out(event: AuditEvent, viewer: Viewer) -> EventOut:
    return EventOut(seq=None if viewer.is_blinded else event.seq, at=event.at, user_id=event.user_id,
                    user_name=event.user_name, action=event.action, entity_type=event.entity_type,
                    entity_id=event.entity_id, field=event.field, old_value=event.old_value,
                    new_value=event.new_value, reason=event.reason)


TrailOut = paging.page_model("TrailOut", "events", EventOut, "Newest first")


@router.get("", response_model=TrailOut)
def trail(viewer: Viewer = Depends(reader), session: Session = Depends(read_session),
          user: str | None = None, entity_type: str | None = None, entity_id: str | None = None,
          since: datetime | None = Query(None, description="ISO 8601 with offset"),
          until: datetime | None = Query(None, description="ISO 8601 with offset"),
          ask: Ask = Depends(paging.ask)):
    flt = audit.TrailFilter(user=user, entity_type=entity_type, entity_id=entity_id, since=_aware(since),
                            until=_aware(until))
    found = audit.trail_page(session, viewer.actor, flt, ask)
    return TrailOut(events=[event_out(e, viewer) for e in found.rows], next=found.next)


@router.get("/{entity_type}/{entity_id}", response_model=list[EventOut])
def history(entity_type: str, entity_id: str, viewer: Viewer = Depends(reader),
            session: Session = Depends(read_session)) -> list[EventOut]:
    return [event_out(e, viewer) for e in audit.history(session, viewer.actor, entity_type, entity_id)]


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        raise InvalidInput("Give the time with its UTC offset, e.g. 2026-11-22T10:00:00+01:00.", field="since/until")
    return moment
