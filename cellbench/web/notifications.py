"""The notifications page: every message the reader may see, pending, sent or dead, with its attempts
and last error; "retry now" for a dead one and "mark sent" for one that went another way. It took
over the outbox of the unblinding pages (/outbox redirects here).

Blinded roles reach it (site people read the blinded messages of their sites), so it reads only
cellbench.notifications, which never imports the sealed compartment; an unblinded message's text is
shown to unblinded readers only.
"""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from .. import notifications
from ..db import Database
from ..deps import Viewer, form_by, get_db, read_session, require
from ..models import Role
from ..templating import render
from . import paging
from .home import QueueItem, work_queue

router = APIRouter(include_in_schema=False)
readers = require(*notifications.READERS_IN_FULL, *notifications.SITE_READERS)
movers = form_by(*notifications.READERS_IN_FULL)


@work_queue
def _dead_letters(session: Session, viewer: Viewer) -> list[QueueItem]:
    # Sending is the supply manager's side of the trial: a message that could not be delivered is
    # that role's work (a wrong address, a mail server down).
    if not viewer.has(Role.supply_manager):
        return []
    dead = notifications.count(session, notifications.NotificationState.dead.value)
    return [QueueItem(dead, "messages could not be delivered", "/notifications?state=dead",
                      one="message could not be delivered")] if dead else []


@router.get("/notifications")
def notifications_page(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    state = (request.query_params.get("state") or "all").strip()
    found = notifications.message_page(session, viewer.actor, paging.ask(request), state=state)
    return render(request, "notifications/list.html", rows=found.rows, state=state, states=notifications.STATES,
                  pager=paging.pager("/notifications", {"state": state}, found),
                  shown={n.id: notifications.may_read_text(viewer.actor, n) for n in found.rows},
                  can_move=viewer.has(*notifications.READERS_IN_FULL))


@router.get("/outbox")
def outbox_page(request: Request, viewer: Viewer = Depends(readers)):
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/notifications{query}", status_code=307)


@router.post("/notifications/{notification_id}/retry")
def retry(notification_id: str, viewer: Viewer = Depends(movers), db: Database = Depends(get_db)):
    with db.write() as session:
        note = notifications.retry(session, viewer.actor, notification_id)
    notice = f"Message {note.id} is queued again: the sender tries it now."
    return RedirectResponse(f"/notifications?state=pending&notice={quote(notice)}", status_code=303)


@router.post("/notifications/{notification_id}/sent")
def mark_sent(notification_id: str, viewer: Viewer = Depends(movers), db: Database = Depends(get_db)):
    with db.write() as session:
        note = notifications.mark_sent(session, viewer.actor, notification_id)
    return RedirectResponse(f"/notifications?notice={quote(f'Message {note.id} marked sent.')}", status_code=303)


@router.post("/outbox/{notification_id}/sent")
def mark_sent_from_outbox(notification_id: str, viewer: Viewer = Depends(movers), db: Database = Depends(get_db)):
    return mark_sent(notification_id, viewer, db)
