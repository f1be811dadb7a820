"""The preparer's record pages (unblinded: the preparer only): the thaw or preparation end, each unit
of the kit scanned against the kit, the masking measure, one syringe per gland and its label.

Only this module and its API twin hand the pharmacy the compartment's logged read of a kit's units
(sealed.unit_codes), so they are unblinded-only (tests/test_sealed.py): every route answers 403 to
a blinded person. The page itself has the same shape for both arms and shows no unit's code.
"""
from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from .. import pharmacy, sealed
from ..clock import utcnow
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError
from ..models import Visit
from ..templating import render

router = APIRouter(prefix="/preparation", include_in_schema=False)
preparers = pharmacy.PREPARERS
VISIT = "/{study}/{number}/{treatment}"


def record_url(study: str, number: str, treatment: object) -> str:
    return f"/preparation/{quote(study, safe='')}/{quote(number, safe='')}/{treatment}"


def _page(request: Request, session: Session, viewer: Viewer, study: str, number: str, treatment: str,
          error: DomainError | None = None, form: dict | None = None):
    visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
    v = pharmacy.view(session, viewer.actor, visit)
    return render(request, "pharmacy/preparation_record.html", status_code=error.status if error else 200, v=v,
                  rec=pharmacy.record_view(session, visit), url=record_url(v.study, v.screening_number, v.treatment),
                  participant_url=f"/participants/{quote(v.study, safe='')}/{quote(v.screening_number, safe='')}",
                  error=error, form=form or {}, now=utcnow())


@router.get(VISIT)
def record_page(request: Request, study: str, number: str, treatment: str,
                viewer: Viewer = Depends(require(*preparers)), session: Session = Depends(read_session)):
    return _page(request, session, viewer, study, number, treatment)


def _post(request: Request, viewer: Viewer, db: Database, study: str, number: str, treatment: str, form: dict,
          work: Callable[[Session, Visit], str]):
    """Run one use case on the visit, then back to its record with what was done; on refusal the
    page again, with the reason beside the field and what was typed."""
    try:
        with db.write() as session:
            message = work(session, pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor))
    except DomainError as error:
        with db.read() as session:
            return _page(request, session, viewer, study, number, treatment, error, form)
    return RedirectResponse(f"{record_url(study, number, treatment)}?notice={quote(message)}", status_code=303)


def _typed(form, *names: str) -> dict[str, str]:
    return {name: (form.get(name) or "").strip() for name in names}


@router.post(VISIT + "/thaw-end")
def thaw_end(request: Request, study: str, number: str, treatment: str, viewer: Viewer = Depends(form_by(*preparers)),
             db: Database = Depends(get_db), form=Depends(form_data)):
    typed = _typed(form, "ended_at")

    def work(session: Session, visit: Visit) -> str:
        pharmacy.record_thaw_end(session, viewer.actor, visit, typed["ended_at"])
        return "The end of the thaw or preparation is recorded."

    return _post(request, viewer, db, study, number, treatment, typed, work)


@router.post(VISIT + "/units")
def scan_unit(request: Request, study: str, number: str, treatment: str, viewer: Viewer = Depends(form_by(*preparers)),
              db: Database = Depends(get_db), form=Depends(form_data)):
    typed = _typed(form, "unit_code")

    def work(session: Session, visit: Visit) -> str:
        row = pharmacy.scan_unit(session, viewer.actor, visit, typed["unit_code"], sealed.unit_codes)
        return f"Unit {row.position} is one of the kit's units."

    return _post(request, viewer, db, study, number, treatment, typed, work)


@router.post(VISIT + "/masking")
def masking(request: Request, study: str, number: str, treatment: str, viewer: Viewer = Depends(form_by(*preparers)),
            db: Database = Depends(get_db), form=Depends(form_data)):
    typed = _typed(form, "masking_measure")

    def work(session: Session, visit: Visit) -> str:
        pharmacy.choose_masking(session, viewer.actor, visit, typed["masking_measure"])
        return "The masking measure is recorded."

    return _post(request, viewer, db, study, number, treatment, typed, work)


@router.post(VISIT + "/syringes")
def draw_syringe(request: Request, study: str, number: str, treatment: str,
                 viewer: Viewer = Depends(form_by(*preparers)), db: Database = Depends(get_db),
                 form=Depends(form_data)):
    typed = _typed(form, "gland", "volume_ml")

    def work(session: Session, visit: Visit) -> str:
        pharmacy.draw_syringe(session, viewer.actor, visit, typed["gland"], typed["volume_ml"])
        return f"The {typed['gland']} syringe is recorded: print its label."

    return _post(request, viewer, db, study, number, treatment, typed, work)


@router.post(VISIT + "/labels/{gland}")
def syringe_label(request: Request, study: str, number: str, treatment: str, gland: str,
                  viewer: Viewer = Depends(form_by(*preparers)), db: Database = Depends(get_db)):
    """The label as a PDF at its exact size, for the label printer; each print is on the record."""
    try:
        with db.write() as session:
            visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
            pdf = pharmacy.print_label(session, viewer.actor, visit, gland, request.app.state.settings.secret_key)
    except DomainError as error:
        with db.read() as session:
            return _page(request, session, viewer, study, number, treatment, error, {"gland": gland})
    name = f"syringe-{study}-{number}-T{treatment}-{gland}.pdf".lower()
    return Response(pdf, media_type="application/pdf", headers={"content-disposition": f'inline; filename="{name}"'})
