"""Audit-trail pages: the QA-wide trail with filters and CSV, per-entity history, signed review."""
from __future__ import annotations

from datetime import datetime, time, timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlmodel import Session

from .. import audit, audit_export, audit_review, clock, inputs
from ..audit import AUDIT_READERS
from ..db import Database
from ..deps import Viewer, form_by, get_db, read_session, require
from ..errors import DomainError
from ..templating import render
from . import paging

router = APIRouter(prefix="/audit", include_in_schema=False)
reader = require(*AUDIT_READERS)
reviewer, reviewer_form = require(*audit_review.REVIEWERS), form_by(*audit_review.REVIEWERS)
PAGE = 50  # a trail page: 200 rendered events cost more than the 20 ms a list page may take
REVIEW_PAGE = 200
FILTERS = ("user", "entity_type", "entity_id", "since", "until")


def parse_filter(request: Request) -> audit.TrailFilter:
    """Filters from the query string; dates are the site's calendar days."""
    q = request.query_params
    zone = clock.zone()

    def day(name: str, what: str, plus: int = 0) -> datetime | None:
        if not (q.get(name) or "").strip():
            return None
        start = inputs.day(q.get(name), name, what) + timedelta(days=plus)
        return datetime.combine(start, time(), tzinfo=zone)

    return audit.TrailFilter(user=(q.get("user") or "").strip() or None,
                             entity_type=(q.get("entity_type") or "").strip() or None,
                             entity_id=(q.get("entity_id") or "").strip() or None,
                             since=day("since", "first day"), until=day("until", "last day", plus=1))


@router.get("")
def trail_page(request: Request, viewer: Viewer = Depends(reader),
               session: Session = Depends(read_session)) -> Response:
    flt = parse_filter(request)
    found = audit.trail_page(session, viewer.actor, flt, paging.ask(request, PAGE))
    filters = {k: request.query_params.get(k, "") for k in FILTERS}
    return render(request, "audit/trail.html", events=found.rows, q=request.query_params, page=PAGE,
                  pager=paging.pager("/audit", filters, found), types=audit.entity_types(session, viewer.actor),
                  query=urlencode({k: v for k, v in filters.items() if v}))


@router.get(".csv")
def trail_csv(request: Request, viewer: Viewer = Depends(reader), db: Database = Depends(get_db)) -> Response:
    """The whole filtered trail, streamed in batches (audit_export): the first rows leave at once."""
    return StreamingResponse(audit_export.csv_chunks(db, viewer.actor, parse_filter(request)),
                             media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="cellbench-audit-trail.csv"'})


@router.get("/review")
def review_page(request: Request, viewer: Viewer = Depends(reviewer),
                session: Session = Depends(read_session)) -> Response:
    return _review(request, viewer, session)


def _review(request: Request, viewer: Viewer, session: Session, error: DomainError | None = None) -> Response:
    start, end = audit_review.pending_range(session)
    pending = audit.trail(session, viewer.actor, audit.TrailFilter(), limit=REVIEW_PAGE) if end >= start else []
    pending = [e for e in pending if e.seq >= start]
    return render(request, "audit/review.html", status_code=error.status if error else 200, start=start, end=end,
                  pending=pending, reviews=audit_review.reviews(session), error=error)


@router.post("/review")
def sign_review(request: Request, to_seq: int = Form(...), password: str = Form(""), comment: str = Form(""),
                viewer: Viewer = Depends(reviewer_form), db: Database = Depends(get_db)) -> Response:
    try:
        with db.write() as session:
            audit_review.sign_review(session, session.merge(viewer.user), password, to_seq, comment)
    except DomainError as error:
        with db.read() as session:
            return _review(request, viewer, session, error)
    return RedirectResponse("/audit/review?notice=Audit-trail+review+signed.", status_code=303)


# An id may hold slashes (a visit is NCT07290946/SCR-109/T1): the rest of the path is the id.
@router.get("/{entity_type}/{entity_id:path}")
def entity_history(request: Request, entity_type: str, entity_id: str, viewer: Viewer = Depends(reader),
                   session: Session = Depends(read_session)) -> Response:
    events = audit.history(session, viewer.actor, entity_type, entity_id)
    return render(request, "audit/history.html", events=events, entity_type=entity_type, entity_id=entity_id)
