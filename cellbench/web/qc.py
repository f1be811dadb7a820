"""QC pages: a lot's release tests with their results, entry at tablet size, second-person review
and QA's invalidation; the QC work queues."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from .. import deviations, lots, qc
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError
from ..models import Deviation
from ..templating import render
from .home import QueueItem, work_queue

router = APIRouter(include_in_schema=False)


def _url(number: str) -> str:
    return f"/lots/{quote(number, safe='')}/qc"


def qc_view(session: Session, lot) -> dict:
    statuses = qc.test_status(session, lot)
    results = [r for s in statuses for r in s.results]
    deviation_ids = {r.deviation_id for r in results if r.deviation_id}
    numbers = {d.id: d.number for d in (session.get(Deviation, i) for i in deviation_ids) if d}
    return {"lot": lot, "spec_row": lots.spec_of(session, lot), "statuses": statuses,
            "sigs": qc.signatures_of(session, results), "deviation_numbers": numbers,
            "state": qc.effective_state(lot), "may_enter": qc.effective_state(lot) in qc.ENTRY_STATES,
            "problems": qc.release_test_problems(session, lot),
            "post_certification": qc.post_certification_oos(session, lot),
            "open_deviations": deviations.open_deviations(session, lot.id)}


def _page(request: Request, session: Session, number: str, error: DomainError | None = None,
          typed: dict | None = None, target: str | None = None):
    lot = lots.by_number(session, number)
    return render(request, "qc/lot.html", status_code=error.status if error else 200, error=error,
                  typed=typed or {}, target=target, url=_url(lot.number), **qc_view(session, lot))


@router.get("/lots/{number}/qc")
def qc_page(request: Request, number: str, viewer: Viewer = Depends(require(*lots.READERS)),
            session: Session = Depends(read_session)):
    return _page(request, session, number)


def _done(number: str, notice: str, anchor: str = "") -> RedirectResponse:
    return RedirectResponse(f"{_url(number)}?notice={quote(notice)}{anchor}", status_code=303)


@router.post("/lots/{number}/qc/results")
def enter(request: Request, number: str, viewer: Viewer = Depends(form_by(*qc.ANALYSTS)),
          db: Database = Depends(get_db), form=Depends(form_data)):
    test_code = str(form.get("test_code", ""))
    try:
        with db.write() as session:
            result = qc.enter_result(session, viewer.actor, lots.by_number(session, number), test_code,
                                     str(form.get("value", "")), sample_id=str(form.get("sample_id", "")),
                                     retest_of=str(form.get("retest_of", "")).strip() or None)
            verdict, code = result.verdict, result.test_code
    except DomainError as error:
        with db.read() as session:
            return _page(request, session, number, error, dict(form), f"enter:{test_code}")
    notice = ("Result saved: out of specification. An investigation deviation was opened." if verdict == "oos"
              else "Result saved. It counts once a second person has reviewed it.")
    return _done(number, notice, f"#test-{code}")


@router.post("/lots/{number}/qc/results/{result_id}/review")
def review(request: Request, number: str, result_id: int, viewer: Viewer = Depends(form_by(*qc.REVIEWERS)),
           db: Database = Depends(get_db), form=Depends(form_data)):
    try:
        with db.write() as session:
            result = qc.result_of_lot(session, lots.by_number(session, number), result_id)
            qc.review_result(session, session.merge(viewer.user), str(form.get("password", "")), result)
            code = result.test_code
    except DomainError as error:
        with db.read() as session:
            return _page(request, session, number, error, {}, f"review:{result_id}")
    return _done(number, f"Result #{result_id} reviewed.", f"#test-{code}")


@router.post("/lots/{number}/qc/results/{result_id}/invalidation")
def invalidate(request: Request, number: str, result_id: int, viewer: Viewer = Depends(form_by(*qc.INVALIDATORS)),
               db: Database = Depends(get_db), form=Depends(form_data)):
    try:
        with db.write() as session:
            result = qc.result_of_lot(session, lots.by_number(session, number), result_id)
            qc.invalidate_result(session, session.merge(viewer.user), str(form.get("password", "")), result,
                                 str(form.get("reason", "")))
            code = result.test_code
    except DomainError as error:
        with db.read() as session:
            return _page(request, session, number, error, {"reason": form.get("reason", "")},
                         f"invalidate:{result_id}")
    return _done(number, f"Result #{result_id} invalidated.", f"#test-{code}")


@work_queue
def _qc_waiting(session: Session, viewer: Viewer) -> list[QueueItem]:
    items = []
    if viewer.has(*qc.ANALYSTS):
        for lot, missing in qc.lots_awaiting_results(session):
            items.append(QueueItem(missing, f"release tests of lot {lot.number} awaiting QC results", _url(lot.number)))
    if viewer.has(*qc.REVIEWERS):
        for lot, rows in qc.results_awaiting_review(session, viewer.user.id):
            items.append(QueueItem(len(rows), f"QC results of lot {lot.number} awaiting review", _url(lot.number)))
    return items
