"""Resupply (unblinded, the supply manager only): the proposals the trigger makes, with per-arm
figures and picked kits, accepted into a shipment being packed or dismissed with a reason; the
settings per site and arm; and the home queue line. No blinded role reaches these routes."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, require
from ..errors import DomainError, InvalidInput
from ..supply import resupply, resupply_desk
from ..templating import render
from . import paging
from .home import QueueItem, work_queue

router = APIRouter(prefix="/supply/resupply", include_in_schema=False)
PLANNERS = tuple(resupply.PLANNERS)
SHOWN = ("open", "all")
PAGE_SIZE = 50  # proposals a page, each with its picked kits by arm


def q(text: str) -> str:
    return quote(str(text), safe="")


@work_queue
def _proposals_waiting(session: Session, viewer: Viewer) -> list[QueueItem]:
    # Runs for every viewer, blinded ones included: a count of proposals, read only for supply.
    if not viewer.has(*PLANNERS) or not (n := resupply_desk.open_count(session, viewer.actor)):
        return []
    return [QueueItem(n, "resupply proposals wait: accept to pack the shipment, or dismiss", "/supply/resupply",
                      one="resupply proposal waits: accept to pack the shipment, or dismiss")]


def _list_page(request: Request, session: Session, viewer: Viewer, error: DomainError | None = None):
    show = (request.query_params.get("show") or "open").strip()
    if show not in SHOWN:
        raise InvalidInput(f"Show {' or '.join(SHOWN)} proposals.", field="show")
    found = resupply_desk.proposal_page(session, viewer.actor, paging.ask(request, PAGE_SIZE), open_only=show == "open")
    return render(request, "supply/resupply.html", status_code=error.status if error else 200, error=error,
                  rows=found.rows, pager=paging.pager("/supply/resupply", {"show": show}, found), show=show,
                  shown=SHOWN)


@router.get("")
def proposal_list(request: Request, viewer: Viewer = Depends(require(*PLANNERS)), db: Database = Depends(get_db)):
    with db.write() as session:  # the picked kits' arms are a logged read
        return _list_page(request, session, viewer)


@router.post("/evaluate")
def evaluate_now(viewer: Viewer = Depends(form_by(*PLANNERS)), db: Database = Depends(get_db)):
    with db.write() as session:
        found = resupply.evaluate_all(session, "evaluated on request")
    notice = f"Every site evaluated: {len(found)} open proposal{'s' if len(found) != 1 else ''}."
    return RedirectResponse(f"/supply/resupply?notice={q(notice)}", status_code=303)


@router.get("/settings")
def settings_page(request: Request, viewer: Viewer = Depends(require(*PLANNERS)), db: Database = Depends(get_db)):
    with db.read() as session:
        return _settings(request, session, viewer)


def _settings(request: Request, session: Session, viewer: Viewer, error: DomainError | None = None,
              typed: dict | None = None):
    return render(request, "supply/resupply_settings.html", status_code=error.status if error else 200,
                  lines=resupply_desk.settings(session, viewer.actor), error=error, typed=typed or {},
                  fields=resupply_desk.SETTING_FIELDS)


@router.post("/settings")
def save_setting(request: Request, viewer: Viewer = Depends(form_by(*PLANNERS)), db: Database = Depends(get_db),
                 form=Depends(form_data)):
    typed = {name: str(form.get(name, "")) for name in ("study", "site", "arm", "min_stock", "max_stock",
                                                        "do_not_ship_days", "setting_version")}
    try:
        with db.write() as session:
            resupply_desk.set_setting(session, viewer.actor, study_code=typed["study"], site_code=typed["site"],
                                      arm=typed["arm"], min_stock=typed["min_stock"], max_stock=typed["max_stock"],
                                      do_not_ship_days=typed["do_not_ship_days"],
                                      seen_version=typed["setting_version"])
    except DomainError as error:
        with db.read() as session:
            return _settings(request, session, viewer, error, typed)
    notice = f"Saved: {typed['site']} · {typed['arm']}."
    return RedirectResponse(f"/supply/resupply/settings?notice={q(notice)}", status_code=303)


def _proposal_page(request: Request, session: Session, viewer: Viewer, number: str,
                   error: DomainError | None = None, typed: dict | None = None):
    (row,) = resupply_desk.proposals(session, viewer.actor, number=number)
    return render(request, "supply/resupply_proposal.html", status_code=error.status if error else 200, p=row,
                  error=error, typed=typed or {})


@router.get("/{number}")
def proposal(request: Request, number: str, viewer: Viewer = Depends(require(*PLANNERS)),
             db: Database = Depends(get_db)):
    with db.write() as session:
        return _proposal_page(request, session, viewer, number)


@router.post("/{number}/accept")
def accept(request: Request, number: str, viewer: Viewer = Depends(form_by(*PLANNERS)),
           db: Database = Depends(get_db), form=Depends(form_data)):
    try:
        with db.write() as session:
            shipment = resupply_desk.accept(session, viewer.actor, number, form.get("proposal_version"))
            shipment_number = shipment.number
    except DomainError as error:
        with db.write() as session:
            return _proposal_page(request, session, viewer, number, error)
    notice = f"Proposal {number} accepted: shipment {shipment_number} is packed; check it and dispatch it."
    return RedirectResponse(f"/shipments/{q(shipment_number)}?notice={q(notice)}", status_code=303)


@router.post("/{number}/dismiss")
def dismiss(request: Request, number: str, viewer: Viewer = Depends(form_by(*PLANNERS)),
            db: Database = Depends(get_db), form=Depends(form_data)):
    typed = {"reason": str(form.get("reason", ""))}
    try:
        with db.write() as session:
            resupply_desk.dismiss(session, viewer.actor, number, typed["reason"], form.get("proposal_version"))
    except DomainError as error:
        with db.write() as session:
            return _proposal_page(request, session, viewer, number, error, typed)
    return RedirectResponse(f"/supply/resupply?notice={q(f'Proposal {number} dismissed.')}", status_code=303)
