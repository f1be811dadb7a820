"""QC pages: a lot's results grid (every lot-stage release test, entered and saved at once), the
donor-stage tests shown with the donation's eligibility, a second person's review of a set of results
under one signature, retests and QA's invalidation; the QC work queues and the list they open."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import func, select
from sqlmodel import Session

from .. import deviations, donors, lots, pagination, qc
from ..db import Database
from ..deps import Viewer, form_by, form_data, form_text, form_texts, get_db, read_session, require
from ..errors import DomainError
from ..models import Deviation, Lot
from ..specifications import unit_text
from ..specifications import versions as spec_versions
from ..templating import render
from .home import QueueItem, line_of, work_queue
from .paging import ask
from .paging import pager as paging_links

router = APIRouter(include_in_schema=False)


def _url(number: str) -> str:
    return f"/lots/{quote(number, safe='')}/qc"


def qc_view(session: Session, lot: Lot, viewer: Viewer) -> dict:
    statuses = qc.test_status(session, lot)
    results = [r for s in statuses for r in s.results]
    deviation_ids = {r.deviation_id for r in results if r.deviation_id}
    numbers = {d.id: d.number for d in (session.get(Deviation, i) for i in deviation_ids) if d}
    pending = qc.awaiting_review(session, lot)
    reviewable = qc.reviewable_by(session, lot, viewer.user.id) if viewer.has(*qc.REVIEWERS) else []
    names = {s.test.code: s.test.name for s in statuses}
    spec_row = lots.spec_of(session, lot)
    return {"lot": lot, "spec_row": spec_row, "spec_name": spec_versions.parsed(spec_row).product.name,
            "statuses": statuses, "grid": qc.grid(session, lot),
            "donor": qc.donor_stage(session, lot), "sigs": qc.signatures_of(session, results),
            "deviation_numbers": numbers, "may_enter": qc.effective_state(lot) in qc.ENTRY_STATES,
            "problems": qc.release_test_problems(session, lot), "reviewable": reviewable,
            "not_mine": [r for r in pending if r not in reviewable], "names": names,
            "post_certification": qc.post_certification_oos(session, lot),
            "open_deviations": deviations.open_deviations(session, lot.id), "qc": qc, "unit_text": unit_text,
            "reads_donations": viewer.has(*donors.READERS)}


def _page(request: Request, session: Session, viewer: Viewer, number: str, error: DomainError | None = None,
          typed: dict | None = None, target: str | None = None):
    lot = lots.by_number(session, number)
    typed = typed or {}
    code = (target or "").removeprefix("enter:")
    if error is not None and target == f"enter:{code}" and not typed.get("retest_of"):
        # A single new result comes back into its grid row, with what was typed and why it was refused.
        typed = {f"value:{code}": typed.get("value", ""), f"sample:{code}": typed.get("sample_id", "")}
        target, error.problems = "grid", {code: error.message}  # type: ignore[attr-defined]
    problems = getattr(error, "problems", {}) if target == "grid" else {}
    return render(request, "qc/lot.html", status_code=error.status if error else 200, error=error,
                  typed=typed, target=target, row_problems=problems, url=_url(lot.number),
                  **qc_view(session, lot, viewer))


@router.get("/lots/{number}/qc")
def qc_page(request: Request, number: str, viewer: Viewer = Depends(require(*lots.READERS)),
            session: Session = Depends(read_session)):
    return _page(request, session, viewer, number)


def _done(number: str, notice: str, anchor: str = "") -> RedirectResponse:
    return RedirectResponse(f"{_url(number)}?notice={quote(notice)}{anchor}", status_code=303)


def _grid_rows(form) -> list[qc.Row]:
    """The grid's rows as posted: value:<test code> and sample:<test code> for each offered test."""
    codes = [key.removeprefix("value:") for key in form if key.startswith("value:")]
    return [qc.Row(code, form_text(form, f"value:{code}"), form_text(form, f"sample:{code}")) for code in codes]


@router.post("/lots/{number}/qc/grid")
def enter_grid(request: Request, number: str, viewer: Viewer = Depends(form_by(*qc.ANALYSTS)),
               db: Database = Depends(get_db), form=Depends(form_data)):
    try:
        with db.write() as session:
            saved = qc.enter_results(session, viewer.actor, lots.by_number(session, number), _grid_rows(form))
            count, oos = len(saved), sum(1 for r in saved if r.verdict == "oos")
    except DomainError as error:
        with db.read() as session:
            return _page(request, session, viewer, number, error, dict(form), "grid")
    notice = f"{count} result{'s' if count != 1 else ''} saved. They count once a second person has reviewed them."
    if oos:
        notice += (f" {oos} {'is' if oos == 1 else 'are'} out of specification: an investigation deviation was "
                   "opened for each.")
    return _done(number, notice, "#results")


@router.post("/lots/{number}/qc/review")
def review_set(request: Request, number: str, viewer: Viewer = Depends(form_by(*qc.REVIEWERS)),
               db: Database = Depends(get_db), form=Depends(form_data)):
    chosen = form_texts(form, "result")
    try:
        with db.write() as session:
            qc.review_results(session, session.merge(viewer.user), form_text(form, "password"),
                              lots.by_number(session, number), chosen)
    except DomainError as error:
        with db.read() as session:
            return _page(request, session, viewer, number, error, {"result": chosen}, "review")
    count = len(set(chosen))
    return _done(number, f"{count} result{'s' if count != 1 else ''} reviewed under one signature.", "#results")


@router.post("/lots/{number}/qc/results")
def enter(request: Request, number: str, viewer: Viewer = Depends(form_by(*qc.ANALYSTS)),
          db: Database = Depends(get_db), form=Depends(form_data)):
    """One result: the retest of a current result (the correction path) or a single entry by hand."""
    test_code = form_text(form, "test_code")
    try:
        with db.write() as session:
            result = qc.enter_result(session, viewer.actor, lots.by_number(session, number), test_code,
                                     form_text(form, "value"), sample_id=form_text(form, "sample_id"),
                                     retest_of=form_text(form, "retest_of").strip() or None)
            verdict, code = result.verdict, result.test_code
    except DomainError as error:
        with db.read() as session:
            return _page(request, session, viewer, number, error, dict(form), f"enter:{test_code}")
    notice = ("Result saved: out of specification. An investigation deviation was opened." if verdict == "oos"
              else "Result saved. It counts once a second person has reviewed it.")
    return _done(number, notice, f"#test-{code}")


@router.post("/lots/{number}/qc/results/{result_id}/review")
def review(request: Request, number: str, result_id: int, viewer: Viewer = Depends(form_by(*qc.REVIEWERS)),
           db: Database = Depends(get_db), form=Depends(form_data)):
    try:
        with db.write() as session:
            result = qc.result_of_lot(session, lots.by_number(session, number), result_id)
            qc.review_result(session, session.merge(viewer.user), form_text(form, "password"), result)
            code = result.test_code
    except DomainError as error:
        with db.read() as session:
            return _page(request, session, viewer, number, error, {}, "review")
    return _done(number, f"Result #{result_id} reviewed.", f"#test-{code}")


@router.post("/lots/{number}/qc/results/{result_id}/invalidation")
def invalidate(request: Request, number: str, result_id: int, viewer: Viewer = Depends(form_by(*qc.INVALIDATORS)),
               db: Database = Depends(get_db), form=Depends(form_data)):
    try:
        with db.write() as session:
            result = qc.result_of_lot(session, lots.by_number(session, number), result_id)
            qc.invalidate_result(session, session.merge(viewer.user), form_text(form, "password"), result,
                                 form_text(form, "reason"))
            code = result.test_code
    except DomainError as error:
        with db.read() as session:
            return _page(request, session, viewer, number, error, {"reason": form_text(form, "reason")},
                         f"invalidate:{result_id}")
    return _done(number, f"Result #{result_id} invalidated.", f"#test-{code}")


def _to_review(session: Session, viewer: Viewer) -> list[tuple[Lot, int]]:
    """Lots with a set this person may review, and how many results: only what needs their action."""
    if not viewer.has(*qc.REVIEWERS):
        return []
    return [(lot, len(rows)) for lot, rows in qc.results_awaiting_review(session, viewer.user.id)]


SHOWN = pagination.PAGE_SIZE  # lots with results to enter, a page


@router.get("/qc")
def qc_list(request: Request, viewer: Viewer = Depends(require(*qc.ANALYSTS, *qc.REVIEWERS)),
            session: Session = Depends(read_session)):
    """A page of the lots with results to enter (the count is of them all), and the sets to review."""
    to_enter, waiting, pager = [], 0, None
    if viewer.has(*qc.ANALYSTS):
        query = qc.awaiting_results_query(session)
        found = pagination.page(session, query, qc.AWAITING_ORDER, ask(request, SHOWN))
        to_enter = qc.missing_of(session, list(found.rows))
        waiting = len(to_enter) if found.first and not found.next else \
            session.scalar(select(func.count()).select_from(query.subquery())) or 0
        pager = paging_links("/qc", {}, found)
    return render(request, "qc/queue.html", to_enter=to_enter, waiting=waiting, pager=pager,
                  to_review=_to_review(session, viewer), url=_url)


@work_queue
def _qc_waiting(session: Session, viewer: Viewer) -> list[QueueItem]:
    items = []
    if viewer.has(*qc.ANALYSTS):
        items += line_of(session, qc.awaiting_results_query(session).order_by(*qc.AWAITING_ORDER.columns),
                         "lots with QC results to enter", "lot with QC results to enter", "/qc",
                         lambda lot: _url(lot.number))
    if to_review := _to_review(session, viewer):
        href = _url(to_review[0][0].number) + "#review" if len(to_review) == 1 else "/qc"
        items.append(QueueItem(len(to_review), "sets of QC results for you to review", href,
                               one="set of QC results for you to review"))
    return items
