"""The supply manager's "no kit" alerts (unblinded): each shortage with its arm and site, on the
home work queue and its own page, acknowledged with what is done about it.

Only unblinded roles reach these routes; the work-queue source runs for every viewer and asks the
compartment nothing unless the viewer handles shortages.
"""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, require
from ..errors import DomainError, InvalidInput
from ..supply import shortages
from ..supply.views import READERS
from ..templating import render
from .home import QueueItem, work_queue

router = APIRouter(prefix="/supply/shortages", include_in_schema=False)
SHOWN = ("open", "all")


@work_queue
def _shortages_waiting(session: Session, viewer: Viewer) -> list[QueueItem]:
    # Runs for every viewer, blinded ones included: the compartment is asked only for a handler.
    if not viewer.has(*shortages.HANDLERS) or not (n := shortages.open_count(session, viewer.actor)):
        return []
    return [QueueItem(n, "\"no kit\" alerts from the sites: send kits of the arm, then acknowledge",
                      "/supply/shortages", one="\"no kit\" alert from a site: send kits of the arm, then acknowledge")]


def _page(request: Request, session: Session, viewer: Viewer, error: DomainError | None = None,
          typed: dict | None = None):
    show = (request.query_params.get("show") or "open").strip()
    if show not in SHOWN:
        raise InvalidInput(f"Show {' or '.join(SHOWN)} shortages.", field="show")
    return render(request, "supply/shortages.html", status_code=error.status if error else 200,
                  rows=shortages.shortages(session, viewer.actor, open_only=show == "open"), show=show,
                  shown=SHOWN, error=error, typed=typed or {}, can_act=viewer.has(*shortages.HANDLERS))


@router.get("")
def shortage_list(request: Request, viewer: Viewer = Depends(require(*READERS)), db: Database = Depends(get_db)):
    with db.write() as session:  # the arms are a logged read
        return _page(request, session, viewer)


@router.post("/{shortage}/acknowledge")
def acknowledge(request: Request, shortage: str, viewer: Viewer = Depends(form_by(*shortages.HANDLERS)),
                db: Database = Depends(get_db), form=Depends(form_data)):
    typed = {"shortage": shortage, "reason": str(form.get("reason", ""))}
    try:
        with db.write() as session:
            number = shortages.acknowledge(session, viewer.actor, shortage, typed["reason"])
    except DomainError as error:
        with db.write() as session:
            return _page(request, session, viewer, error, typed)
    return RedirectResponse(f"/supply/shortages?notice={quote(f'Shortage #{number} acknowledged.', safe='')}",
                            status_code=303)
