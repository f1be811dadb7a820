"""Blinded trace pages: which participant received which kit, at which visit, and a kit's chain of
custody. Pharmacists, investigators and monitors read them, so they are built from trace.py alone,
which never reaches the sealed compartment. (Donor to recipient: web/trace_unblinded.py.)"""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlmodel import Session

from .. import kits, trace
from ..deps import Viewer, read_session, require
from ..errors import DomainError
from ..models import Role
from ..templating import render

router = APIRouter(include_in_schema=False)
readers = require(*trace.READERS)
FULL_TRACE = (Role.supply_manager, Role.qa, Role.qp)  # get a link to the donor-to-recipient trace


@router.get("/trace/kits")
def kit_trace_page(request: Request, q: str = "", viewer: Viewer = Depends(readers),
                   session: Session = Depends(read_session)):
    result, error = None, None
    if q.strip():
        try:
            result = trace.kit_participants(session, viewer.actor, q)
        except DomainError as refused:
            error = refused
    return render(request, "trace/kits.html", status_code=error.status if error else 200, q=q, result=result,
                  error=error, full_trace=viewer.has(*FULL_TRACE))


@router.get("/kits/{number}/custody")
def custody_page(request: Request, number: str, viewer: Viewer = Depends(readers),
                 session: Session = Depends(read_session)):
    kit = trace.kit_for_chain(session, number)
    return render(request, "trace/custody.html", kit=kits.view(session, kit),
                  links=trace.custody_chain(session, viewer.actor, kit))
