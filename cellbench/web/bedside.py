"""The bedside: the investigator's scanning page (the participant's card, then each syringe
label, one scan field that a keyboard-mode scanner fills and submits with Enter), and the
participant's identification card as a PDF.

Blinded people use both, and nothing here reads the sealed compartment: an active and a placebo
participant get the same page, card and messages, their numbers aside.
"""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from .. import audit, pharmacy
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError
from ..templating import render
from .pharmacy import participant_url, visit_url

router = APIRouter(include_in_schema=False)
investigators = pharmacy.ADMINISTRATORS
SCAN_ACTIONS = (pharmacy.BEDSIDE_PASSED, pharmacy.BEDSIDE_REFUSED)


def _page(request: Request, session: Session, viewer: Viewer, study: str, number: str, treatment: str,
          error: DomainError | None = None, code: str = ""):
    visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
    view = pharmacy.view(session, viewer.actor, visit)
    scans = [e for e in audit.history(session, viewer.actor, "visit", view.ref) if e.action in SCAN_ACTIONS]
    checks = pharmacy.bedside_checks(session, visit)
    return render(request, "pharmacy/bedside.html", status_code=error.status if error else 200, v=view,
                  url=visit_url(view), participant_url=participant_url(view.study, view.screening_number),
                  scans=scans[::-1], passed=SCAN_ACTIONS[0], error=error, code=code,
                  card_ok=any(c.dose is None for c in checks), checked={c.dose for c in checks if c.dose},
                  given={a.gland for a in view.administrations})


@router.get("/participants/{study}/{number}/visits/{treatment}/bedside")
def bedside_page(request: Request, study: str, number: str, treatment: str,
                 viewer: Viewer = Depends(require(*investigators)), session: Session = Depends(read_session)):
    return _page(request, session, viewer, study, number, treatment)


@router.post("/participants/{study}/{number}/visits/{treatment}/bedside")
def bedside_scan(request: Request, study: str, number: str, treatment: str,
                 viewer: Viewer = Depends(form_by(*investigators)), db: Database = Depends(get_db),
                 form=Depends(form_data)):
    code = form.get("code") or ""
    try:
        with db.write() as session:
            visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
            result = pharmacy.bedside_scan(session, viewer.actor, visit, code, request.app.state.settings.secret_key)
    except DomainError as error:
        with db.read() as session:
            return _page(request, session, viewer, study, number, treatment, error, code)
    url = f"{participant_url(study, number)}/visits/{treatment}/bedside"
    return RedirectResponse(f"{url}?notice={quote(result.message)}", status_code=303)


@router.post("/participants/{study}/{number}/card")
def participant_card(request: Request, study: str, number: str,
                     viewer: Viewer = Depends(form_by(*pharmacy.CARD_PRINTERS)), db: Database = Depends(get_db)):
    with db.write() as session:
        participant = pharmacy.participant_by_ref(session, study, number, reader=viewer.actor)
        pdf = pharmacy.participant_card(session, viewer.actor, participant, request.app.state.settings.secret_key)
        name = f"participant-card-{participant.randomisation_number}.pdf"
    return Response(pdf, media_type="application/pdf", headers={"content-disposition": f'inline; filename="{name}"'})
