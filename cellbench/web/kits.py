"""Kit pages as everyone sees them: the list with its scan field, one kit, its label QR, a blinded lot.

Blinded roles read these pages, so they are built only from `kits` (which never reaches the sealed
compartment): an active and a placebo kit in the same state render the same, kit number aside.
What differs between viewers depends on the viewer's roles, never on the kit.
"""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from .. import audit, custody, kits, qrpayload, studies
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError
from ..models import KitState, Role, Study
from ..templating import render
from . import paging

router = APIRouter(include_in_schema=False)
readers = require(*kits.READERS)
PAGE_SIZE = 50
# Who gets a link to the unblinded kit view (/supply/kits/...): decided by the viewer's roles alone.
UNBLINDED_KIT_VIEWERS = (Role.supply_manager, Role.qa, Role.qp)
STATES = [(s.value, kits.state_label(s)) for s in KitState]


def kit_url(number: str) -> str:
    return f"/kits/{quote(number, safe='')}"


FILTERS = ("study", "blinded_lot", "state")


def _list(request: Request, session: Session, viewer: Viewer, *, scan_error: DomainError | None = None, code: str = ""):
    q = request.query_params
    typed = {k: (q.get(k) or "").strip() for k in FILTERS}
    all_studies = studies.all_studies(session)
    study = next((s for s in all_studies if s.code == typed["study"].upper()), None)
    error, found = None, None
    try:
        if typed["study"] and study is None:
            studies.by_code(session, typed["study"])  # raises, naming the field
        blinded = kits.blinded_lot_by_code(session, typed["blinded_lot"]) if typed["blinded_lot"] else None
        found = kits.kits(session, paging.ask(request, PAGE_SIZE), study=study, blinded_lot=blinded,
                          state=typed["state"] or None, reader=viewer.actor)
    except DomainError as refused:
        error = refused
    status = scan_error.status if scan_error else (error.status if error else 200)
    return render(request, "kits/list.html", status_code=status,
                  rows=kits.views(session, found.rows) if found else [], pager=paging.pager("/kits", typed, found),
                  filters=typed, studies=all_studies,
                  states=STATES, error=error, scan_error=scan_error, code=code, kit_url=kit_url)


@router.get("/kits")
def kit_list(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    return _list(request, session, viewer)


def _scan(request: Request, session: Session, viewer: Viewer, code: str, manual: object = False,
          reason: str | None = None):
    try:
        kit = kits.scan_code(session, code, request.app.state.settings.secret_key, reader=viewer.actor,
                             manual=manual, reason=reason)
    except DomainError as refused:
        return _list(request, session, viewer, scan_error=refused, code=code)
    return RedirectResponse(kit_url(kit.number), status_code=303)


# Declared before /kits/{number} so that "scan" is never read as a kit number.
@router.get("/kits/scan")
def scan_by_link(request: Request, code: str = "", manual: str = "", manual_reason: str = "",
                 viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    return _scan(request, session, viewer, code, manual, manual_reason)


@router.post("/kits/scan")
def scan_from_form(request: Request, viewer: Viewer = Depends(form_by(*kits.READERS)),
                   db: Database = Depends(get_db), form=Depends(form_data)):
    with db.read() as session:
        return _scan(request, session, viewer, form.get("code", ""), form.get("manual"), form.get("manual_reason"))


@router.get("/kits/{number}")
def kit_page(request: Request, number: str, viewer: Viewer = Depends(readers),
             session: Session = Depends(read_session)):
    kit = kits.by_number(session, number, field="number", reader=viewer.actor)
    # where it is in its tank (tank, rack, box, position), or that it still waits to be put away
    waiting = (kit.site_id is not None and kit.storage_location_id is None
               and KitState(kit.state) in custody.STORABLE_AT_SITE)
    return render(request, "kits/detail.html", kit=kits.view(session, kit),
                  position=custody.position_of(session, kit), not_put_away=waiting,
                  payload=qrpayload.make_payload(kit.number, request.app.state.settings.secret_key),
                  history=kits.history(session, viewer.actor, kit), kit_url=kit_url,
                  unblinded_url=f"/supply/kits/{quote(kit.number, safe='')}"
                  if viewer.has(*UNBLINDED_KIT_VIEWERS) else None)


@router.get("/kits/{number}/qr.png")
def kit_qr(request: Request, number: str, viewer: Viewer = Depends(readers),
           session: Session = Depends(read_session)):
    kit = kits.by_number(session, number, field="number", reader=viewer.actor)
    png = qrpayload.qr_png(qrpayload.make_payload(kit.number, request.app.state.settings.secret_key))
    return Response(png, media_type="image/png")


@router.get("/blinded-lots/{code}")
def blinded_lot_page(request: Request, code: str, viewer: Viewer = Depends(readers),
                     session: Session = Depends(read_session)):
    blinded = kits.blinded_lot_by_code(session, code, field="code")
    study = session.get(Study, blinded.study_id)
    counts = kits.counts_by_state(session, blinded_lot=blinded, reader=viewer.actor)
    return render(request, "kits/blinded_lot.html", blinded=blinded, study=study,
                  counts=[(value, label, counts[value]) for value, label in STATES if counts.get(value)],
                  total=sum(counts.values()), history=audit.history(session, viewer.actor, "blinded_lot", blinded.code))
