"""Deviation pages: the QA queue, raising by hand, assessment, and QA's signed closure."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import Select, select
from sqlmodel import Session, col

from .. import audit, deviations
from ..clock import utcnow
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError, InvalidInput
from ..models import Deviation, DeviationState
from ..templating import render
from . import paging
from .home import QueueItem, line_of, work_queue

router = APIRouter(prefix="/deviations", include_in_schema=False)
readers = require(*deviations.READERS)
RAISE_FIELDS = ("lot_number", "step_code", "severity", "description", "blinded_summary")
ASSESS_FIELDS = ("impact_assessment", "severity", "capa_reference", "blinded_summary", "reason")
STATE_FILTERS = {"": deviations.NOT_CLOSED, "all": None, **{s.value: frozenset({s}) for s in DeviationState}}


def _url(number: str) -> str:
    return f"/deviations/{quote(number, safe='')}"


def _state(deviation: Deviation) -> str:
    return DeviationState(deviation.state).value


def _age_days(deviation: Deviation) -> int:
    return (utcnow() - deviation.raised_at).days


def _in_state(state: DeviationState) -> Select:
    """The deviations in a state, for a queue line (which reads at most two of them)."""
    return select(Deviation).where(col(Deviation.state) == state.value).order_by(col(Deviation.id))


@work_queue
def _deviations_waiting(session: Session, viewer: Viewer) -> list[QueueItem]:
    items = []
    if viewer.has(*deviations.TRANSITIONS["assess"].roles):
        items += line_of(session, _in_state(DeviationState.open),
                         "deviations await an impact assessment", "deviation awaits an impact assessment",
                         "/deviations?state=open", lambda d: _url(d.number))
    if viewer.has(*deviations.TRANSITIONS["close"].roles):
        items += line_of(session, _in_state(DeviationState.assessed),
                         "assessed deviations await your closure", "assessed deviation awaits your closure",
                         "/deviations?state=assessed", lambda d: _url(d.number))
    return items


@router.get("")
def deviation_list(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    q = request.query_params
    state, order = (q.get("state") or "").strip(), (q.get("order") or "severity").strip()
    if state not in STATE_FILTERS:
        raise InvalidInput(f"Unknown state '{state}'.", field="state")
    if order not in ("severity", "age"):
        raise InvalidInput("Order by severity or age.", field="order")
    lot = deviations.lot_by_number(session, q.get("lot"), field="lot")
    found = deviations.deviation_page(session, paging.ask(request), states=STATE_FILTERS[state],
                                      lot_id=lot.id if lot else None, order=order)
    rows = found.rows
    near = deviations.around(session, rows, raisers=False)
    lots = {d.id: near.lot_number(d) for d in rows}
    pager = paging.pager("/deviations", {"state": state, "order": order, "lot": lot.number if lot else ""}, found)
    return render(request, "deviations/list.html", rows=rows, lots=lots, state=state, order=order, pager=pager,
                  lot=lot.number if lot else "", states=[s.value for s in DeviationState], st=_state,
                  age=_age_days, url=_url, can_raise=viewer.has(*deviations.RAISERS))


def _new(request: Request, form: dict, error: DomainError | None = None):
    return render(request, "deviations/new.html", status_code=error.status if error else 200, form=form,
                  error=error, severities=deviations.SEVERITIES, generic=deviations.GENERIC_BLINDED_SUMMARY)


@router.get("/new")
def new_deviation_form(request: Request, viewer: Viewer = Depends(require(*deviations.RAISERS))):
    return _new(request, {"lot_number": request.query_params.get("lot", ""),
                          "step_code": request.query_params.get("step", "")})


@router.post("")
def raise_deviation(request: Request, viewer: Viewer = Depends(form_by(*deviations.RAISERS)),
                    db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: form.get(k, "") for k in RAISE_FIELDS}
    try:
        with db.write() as session:
            lot = deviations.lot_by_number(session, values["lot_number"])
            deviation = deviations.raise_deviation(
                session, viewer.actor, lot_id=lot.id if lot else None, step_code=values["step_code"],
                origin="manual", severity=values["severity"] or "minor", description=values["description"],
                blinded_summary=values["blinded_summary"])
    except DomainError as error:
        return _new(request, values, error)
    return RedirectResponse(f"{_url(deviation.number)}?notice={quote(f'{deviation.number} raised.')}", status_code=303)


def _detail(request: Request, session: Session, viewer: Viewer, number: str, error: DomainError | None = None,
            form: dict | None = None):
    deviation = deviations.by_number(session, number)
    current = {"impact_assessment": deviation.impact_assessment or "", "severity": deviation.severity,
               "capa_reference": deviation.capa_reference or "", "blinded_summary": deviation.blinded_summary or ""}
    return render(request, "deviations/detail.html", status_code=error.status if error else 200, d=deviation,
                  state=_state(deviation), lot=deviations.lot_number_of(session, deviation),
                  actions=deviations.allowed_actions(deviation, viewer.actor), age=_age_days(deviation),
                  closure=deviations.closure_signature(session, deviation), severities=deviations.SEVERITIES,
                  history=audit.history(session, viewer.actor, "deviation", deviation.number),
                  form={**current, **(form or {})}, error=error, url=_url(deviation.number))


@router.get("/{number}")
def deviation_detail(request: Request, number: str, viewer: Viewer = Depends(readers),
                     session: Session = Depends(read_session)):
    return _detail(request, session, viewer, number)


@router.post("/{number}/assess")
def assess(request: Request, number: str, viewer: Viewer = Depends(form_by(*deviations.TRANSITIONS["assess"].roles)),
           db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: form.get(k, "") for k in ASSESS_FIELDS}
    try:
        with db.write() as session:
            deviation = deviations.by_number(session, number)
            deviations.assess_deviation(session, viewer.actor, deviation, **values)
    except DomainError as error:
        with db.read() as session:
            return _detail(request, session, viewer, number, error, values)
    return RedirectResponse(f"{_url(deviation.number)}?notice=Assessment+saved.", status_code=303)


@router.post("/{number}/close")
def close(request: Request, number: str, viewer: Viewer = Depends(form_by(*deviations.TRANSITIONS["close"].roles)),
          db: Database = Depends(get_db), form=Depends(form_data)):
    try:
        with db.write() as session:
            deviation = deviations.by_number(session, number)
            deviations.close_deviation(session, session.merge(viewer.user), form.get("password", ""), deviation)
    except DomainError as error:
        with db.read() as session:
            return _detail(request, session, viewer, number, error)
    return RedirectResponse(f"{_url(deviation.number)}?notice={quote(f'{deviation.number} closed.')}", status_code=303)
