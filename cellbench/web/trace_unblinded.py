"""The donor-to-recipient trace page, for supply manager, QA and QP (unblinded). It opens kits in
the sealed compartment, so each view is a write transaction (every look is an audit event), and no
blinded role reaches this module. (Kit to participant for blinded roles: web/trace.py.)"""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from .. import lots
from ..db import Database
from ..deps import Viewer, get_db, require
from ..errors import DomainError
from ..templating import render
from ..trace import unblinded as trace_unblinded

router = APIRouter(include_in_schema=False)


@router.get("/trace")
def trace_page(request: Request, q: str = "", viewer: Viewer = Depends(require(*trace_unblinded.READERS)),
               db: Database = Depends(get_db)):
    result, error = None, None
    if q.strip():
        try:
            with db.write() as session:
                result = trace_unblinded.trace(session, viewer.actor, q)
        except DomainError as refused:
            error = refused
    return render(request, "trace/full.html", status_code=error.status if error else 200, q=q, t=result, error=error,
                  reads_lots=viewer.has(*lots.READERS))  # supply traces lots whose batch record it does not read
