"""The supply manager's paged lists that grow with the years: packaging runs (newest first) and
blinded lots (in code order, each with its kits by state), both of a study or of all. A blinded lot
is opened by its typed or scanned code; no page lists every one (ten years make thousands).

Neither list reads the sealed compartment: a run and a blinded lot hold both arms."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from .. import kits, studies
from ..deps import Viewer, read_session, require
from ..errors import DomainError
from ..supply import packaging, views
from ..supply.views import READERS
from ..templating import render
from . import paging
from .supply import q

router = APIRouter(prefix="/supply", include_in_schema=False)
readers = require(*READERS)
PAGE_SIZE = 50  # runs or blinded lots a page


def _study(session: Session, code: str):
    return studies.by_code(session, code, field="study") if code else None


@router.get("/packaging")
def run_list(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    typed = {"study": (request.query_params.get("study") or "").strip()}
    study = _study(session, typed["study"])
    found = views.runs_page(session, study, paging.ask(request, PAGE_SIZE))
    return render(request, "supply/runs.html", rows=found.rows, pager=paging.pager("/supply/packaging", typed, found),
                  typed=typed, studies=studies.all_studies(session), q=q, can_pack=viewer.has(*packaging.PACKERS))


@router.get("/blinded-lots")
def blinded_lot_list(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    """The paged list; with `code` (typed or scanned), that blinded lot's page, or the list again
    with the code kept and an error naming the field."""
    typed = {"study": (request.query_params.get("study") or "").strip(),
             "code": (request.query_params.get("code") or "").strip()}
    error: DomainError | None = None
    if typed["code"]:
        try:
            blinded = kits.blinded_lot_by_code(session, typed["code"], field="code")
            return RedirectResponse(f"/supply/blinded-lots/{q(blinded.code)}", status_code=303)
        except DomainError as unknown:
            error = unknown
    study = _study(session, typed["study"])
    found = views.blinded_lots_page(session, study, paging.ask(request, PAGE_SIZE))
    filters = {"study": typed["study"]}
    return render(request, "supply/blinded_lots.html", status_code=error.status if error else 200, rows=found.rows,
                  pager=paging.pager("/supply/blinded-lots", filters, found), typed=typed, error=error,
                  studies=studies.all_studies(session), q=q)
