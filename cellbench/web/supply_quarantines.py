"""The supply pages of blind-preserving kit quarantines (unblinded): the list, one quarantine with its
kits' arms, opening one by hand, and QA's decision to lift or withdraw it.

Every page that shows a member's arm runs in a write transaction: the sealed read event must commit.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from .. import kits, lots, studies
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError, InvalidInput, NotFound
from ..models import Lot
from ..supply import quarantine
from ..supply.views import (
    READERS,
    arm_names,
    blinded_codes_of,
    lots_of_quarantines,
    quarantine_kits,
    quarantines_page,
    signature_of,
    user_names,
)
from ..templating import render
from . import paging
from .supply import q

router = APIRouter(prefix="/supply", include_in_schema=False)
readers = require(*READERS)

QUARANTINE_STATES = tuple(state.value for state in quarantine.QuarantineState)


@router.get("/quarantines")
def quarantine_list(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    state = (request.query_params.get("state") or "").strip()
    if state and state not in QUARANTINE_STATES:
        raise InvalidInput(f"Unknown state '{state}'.", field="state")
    found = quarantines_page(session, paging.ask(request), state or None)
    return render(request, "supply/quarantines.html", rows=found.rows, state=state, states=QUARANTINE_STATES,
                  pager=paging.pager("/supply/quarantines", {"state": state}, found),
                  lots_by_id=lots_of_quarantines(session, found.rows),
                  study_codes={s.id: s.code for s in studies.all_studies(session)},
                  causes=quarantine.CAUSES, can_open=viewer.has(*quarantine.OPENERS), q=q)


def _new_quarantine(request: Request, session: Session, error: DomainError | None = None, typed: dict | None = None):
    return render(request, "supply/quarantine_new.html", status_code=error.status if error else 200, error=error,
                  typed=typed or {"lot": request.query_params.get("lot", ""), "policy": "", "reason": ""},
                  policies=studies.QUARANTINE_POLICIES, studies=studies.all_studies(session))


@router.get("/quarantines/new")
def new_quarantine_form(request: Request, viewer: Viewer = Depends(require(*quarantine.OPENERS)),
                        session: Session = Depends(read_session)):
    return _new_quarantine(request, session)


@router.post("/quarantines")
def open_quarantine(request: Request, viewer: Viewer = Depends(form_by(*quarantine.OPENERS)),
                    db: Database = Depends(get_db), form=Depends(form_data)):
    typed = {k: str(form.get(k, "")) for k in ("lot", "policy", "reason")}
    try:
        with db.write() as session:
            if not typed["lot"].strip():
                raise InvalidInput("Give the lot number.", field="lot")
            opened = quarantine.open_manual(session, viewer.actor, lots.by_number(session, typed["lot"]),
                                            typed["policy"] or None, typed["reason"])
    except DomainError as error:
        with db.read() as session:
            return _new_quarantine(request, session, error, typed)
    notice = q(", ".join(f"{kq.number} opened ({kq.kit_count} kits)" for kq in opened) + ".")
    if len(opened) == 1:  # one record per study the lot's kits are in
        return RedirectResponse(f"/supply/quarantines/{q(opened[0].number)}?notice={notice}", status_code=303)
    return RedirectResponse(f"/supply/quarantines?state=open&notice={notice}", status_code=303)


def _quarantine_page(request: Request, session: Session, viewer: Viewer, number: str,
                     error: DomainError | None = None, typed: dict | None = None):
    kq = quarantine.by_number(session, number)
    study = studies.by_id(session, kq.study_id)
    members = quarantine_kits(session, viewer.actor, kq)
    return render(request, "supply/quarantine.html", status_code=error.status if error else 200, kq=kq, study=study,
                  lot=session.get(Lot, kq.lot_id) if kq.lot_id else None,
                  cause=quarantine.CAUSES.get(kq.cause, kq.cause),
                  policy=studies.QUARANTINE_POLICIES.get(kq.policy, kq.policy),
                  members=members, arms=arm_names(study), state_label=kits.state_label, names=user_names(session),
                  blinded_codes=blinded_codes_of(session, {kit.blinded_lot_id for kit, _ in members}),
                  closure=signature_of(session, kq.closure_signature_id), error=error, typed=typed or {},
                  can_decide=bool(quarantine.allowed_decisions(kq, viewer.actor)), q=q)


@router.get("/quarantines/{number}")
def quarantine_page(request: Request, number: str, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    with db.write() as session:  # the members' arms are a logged read
        return _quarantine_page(request, session, viewer, number)


DECISIONS = {"lift": (quarantine.lift, "lifted"), "withdraw": (quarantine.withdraw, "withdrawn")}


@router.post("/quarantines/{number}/{action}")
def decide_quarantine(request: Request, number: str, action: str,
                      viewer: Viewer = Depends(form_by(*quarantine.DECIDERS)), db: Database = Depends(get_db),
                      form=Depends(form_data)):
    typed = {"action": action, "reason": str(form.get("reason", ""))}
    try:
        if action not in DECISIONS:
            raise NotFound("There is no such action.", field="action")
        decide, done = DECISIONS[action]
        with db.write() as session:
            kq = quarantine.by_number(session, number)
            decide(session, session.merge(viewer.user), kq, typed["reason"], str(form.get("password", "")))
    except DomainError as error:
        with db.write() as session:
            return _quarantine_page(request, session, viewer, number, error, typed)
    return RedirectResponse(f"/supply/quarantines/{q(kq.number)}?notice={q(f'{kq.number} {done}.')}", status_code=303)
