"""Specification versions: what is loaded, what is effective, and QA's approval."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError
from ..models import Role, Signature
from ..specifications import versions as spec_versions
from ..templating import render

router = APIRouter(include_in_schema=False)


def _page(request: Request, session: Session, error: DomainError | None = None):
    rows = spec_versions.all_versions(session)
    sigs = {r.id: session.get(Signature, r.signature_id) for r in rows if r.signature_id}
    return render(request, "specifications/list.html", status_code=error.status if error else 200, rows=rows,
                  sigs=sigs, error=error, parsed=spec_versions.parsed)


@router.get("/specifications")
def spec_list(request: Request, viewer: Viewer = Depends(require(Role.qa, Role.qp, Role.operator)),
              session: Session = Depends(read_session)):
    return _page(request, session)


@router.post("/specifications/load")
def load(request: Request, viewer: Viewer = Depends(form_by(Role.qa)), db: Database = Depends(get_db)):
    try:
        with db.write() as session:
            spec_versions.sync_from_files(session, viewer.actor)
    except (DomainError, ValueError) as error:
        error = error if isinstance(error, DomainError) else DomainError(str(error), "file")
        with db.read() as session:
            return _page(request, session, error)
    return RedirectResponse("/specifications?notice=Specification+files+loaded.", status_code=303)


@router.post("/specifications/{spec_id}/approve")
def approve(request: Request, spec_id: int, viewer: Viewer = Depends(form_by(Role.qa)),
            db: Database = Depends(get_db), form=Depends(form_data)):
    try:
        with db.write() as session:
            spec_versions.approve(session, session.merge(viewer.user), form.get("password", ""), spec_id)
    except DomainError as error:
        with db.read() as session:
            return _page(request, session, error)
    return RedirectResponse("/specifications?notice=Specification+approved.", status_code=303)
