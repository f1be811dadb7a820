"""Donor pages: the donor list, a donor with its donations, a donation with its test panel (one
tablet form for the whole panel) and QA's signed eligibility decision."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit, clock, donors
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError
from ..models import Role, User
from ..templating import render
from . import paging
from .home import QueueItem, line_for, work_queue

router = APIRouter(include_in_schema=False)
reader = require(*donors.READERS)



def donation_url(identifier: str) -> str:
    return "/donations/" + quote(identifier, safe="")


def _history(session: Session, viewer: Viewer, donor, donations) -> list:
    events = audit.history(session, viewer.actor, "donor", donor.code)
    for donation in donations:
        events += audit.history(session, viewer.actor, "donation", donation.identifier)
    return sorted(events, key=lambda e: e.seq)


# --- donor list and registration -------------------------------------------------------------------


@router.get("/donors")
def donor_list(request: Request, viewer: Viewer = Depends(reader), session: Session = Depends(read_session)):
    state = (request.query_params.get("eligibility") or "").strip()
    found = donors.donor_page(session, paging.ask(request), state or None)
    return render(request, "donors/list.html", rows=found.rows, state=state,
                  pager=paging.pager("/donors", {"eligibility": state}, found))


@router.get("/donors/new")
def new_donor_form(request: Request, viewer: Viewer = Depends(require(Role.operator)),
                   session: Session = Depends(read_session)):
    return render(request, "donors/new.html", form={"code": donors.next_donor_code(session)}, error=None)


@router.post("/donors")
def register_donor(request: Request, viewer: Viewer = Depends(form_by(Role.operator)), db: Database = Depends(get_db),
                   form=Depends(form_data)):
    values = {k: form.get(k, "") for k in ("code", "consent_date", "consent_reference")}
    try:
        with db.write() as session:
            donor = donors.register_donor(session, viewer.actor, values["code"], values["consent_date"],
                                          values["consent_reference"], today=clock.today())
            code = donor.code
    except DomainError as error:
        return render(request, "donors/new.html", status_code=error.status, form=values, error=error)
    return RedirectResponse(f"/donors/{quote(code)}?notice=Donor+registered.", status_code=303)


# --- a donor and its donations -----------------------------------------------------------------------


def _donor_page(request: Request, session: Session, viewer: Viewer, code: str, error: DomainError | None = None,
                form: dict | None = None):
    donor = donors.donor_by_code(session, code)
    donations = donors.donations_of(session, donor)
    views = [_donation_view(session, d) for d in donations]
    return render(request, "donors/detail.html", status_code=error.status if error else 200, donor=donor,
                  donations=views, history=_history(session, viewer, donor, donations), error=error,
                  form=form or {}, panel=donors.REQUIRED_PANEL, donation_url=donation_url)


def _donation_view(session: Session, donation) -> dict:
    sig = donors.decision_signature(session, donation)
    return {"donation": donation, "tests": donors.tests_of(session, donation), "signature": sig,
            "reason": donors.decision_reason(session, sig), "blockers": donors.eligibility_blockers(session, donation)}


@router.get("/donors/{code}")
def donor_page(request: Request, code: str, viewer: Viewer = Depends(reader), session: Session = Depends(read_session)):
    return _donor_page(request, session, viewer, code)


@router.post("/donors/{code}/donations")
def register_donation(request: Request, code: str, viewer: Viewer = Depends(form_by(Role.operator)),
                      db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: form.get(k, "") for k in ("identifier", "check_character", "donated_on")}
    try:
        with db.write() as session:
            donation = donors.register_donation(session, viewer.actor, donors.donor_by_code(session, code),
                                                values["identifier"], values["check_character"], values["donated_on"],
                                                today=clock.today())
            identifier = donation.identifier
    except DomainError as error:
        with db.read() as session:
            return _donor_page(request, session, viewer, code, error, values)
    return RedirectResponse(f"{donation_url(identifier)}?notice=Donation+registered.", status_code=303)


# --- a donation: its panel and its decision ----------------------------------------------------------


def _donation_page(request: Request, session: Session, viewer: Viewer, identifier: str,
                   error: DomainError | None = None, typed: dict | None = None, action: str | None = None):
    donation = donors.donation_by_identifier(session, identifier)
    names = dict(session.execute(select(col(User.id), col(User.full_name))).all())
    return render(request, "donors/donation.html", status_code=error.status if error else 200, error=error,
                  typed=typed or {}, action=action, donor=donors.donor_of(session, donation), names=names,
                  panel=donors.REQUIRED_PANEL, results=donors.RESULTS, window=donors.sample_window(donation),
                  corrections=donors.corrections_of(session, viewer.actor, donation),
                  history=audit.history(session, viewer.actor, "donation", donation.identifier),
                  donation_url=donation_url, **_donation_view(session, donation))


@router.get("/donations/{identifier}")
def donation_page(request: Request, identifier: str, viewer: Viewer = Depends(reader),
                  session: Session = Depends(read_session)):
    return _donation_page(request, session, viewer, identifier)


def _panel_entries(form) -> list[donors.TestEntry]:
    return [donors.TestEntry(code, form.get(f"result:{code}", ""), form.get(f"sample_date:{code}", ""),
                             form.get(f"laboratory:{code}", "")) for code in donors.REQUIRED_PANEL]


@router.post("/donations/{identifier}/tests")
def record_tests(request: Request, identifier: str, viewer: Viewer = Depends(form_by(Role.operator)),
                 db: Database = Depends(get_db), form=Depends(form_data)):
    try:
        with db.write() as session:
            donation = donors.donation_by_identifier(session, identifier)
            donors.record_tests(session, viewer.actor, donation, _panel_entries(form), form.get("reason"),
                                today=clock.today())
            stored = donation.identifier
    except DomainError as error:
        with db.read() as session:
            return _donation_page(request, session, viewer, identifier, error, dict(form), "tests")
    return RedirectResponse(f"{donation_url(stored)}?notice=Test+results+saved.", status_code=303)


@router.post("/donations/{identifier}/decision")
def decide(request: Request, identifier: str, viewer: Viewer = Depends(form_by(Role.qa)),
           db: Database = Depends(get_db), form=Depends(form_data)):
    try:
        with db.write() as session:
            donation = donors.donation_by_identifier(session, identifier)
            donors.decide_eligibility(session, session.merge(viewer.user), form.get("password", ""), donation,
                                      form.get("decision", ""), form.get("reason"))
            stored = donation.identifier
    except DomainError as error:
        typed = {k: form.get(k, "") for k in ("decision", "reason")}  # never the password
        with db.read() as session:
            return _donation_page(request, session, viewer, identifier, error, typed, "decision")
    return RedirectResponse(f"{donation_url(stored)}?notice=Eligibility+decision+signed.", status_code=303)


@work_queue
def _donations_waiting(session: Session, viewer: Viewer) -> list[QueueItem]:
    if not viewer.has(Role.qa, Role.operator):
        return []
    ready, missing = donors.pending_donations(session)
    items = []
    if viewer.has(Role.qa):
        items += line_for(ready, "donations await your eligibility decision",
                          "donation awaits your eligibility decision", "/donors?eligibility=pending",
                          lambda d: donation_url(d.identifier))
    if viewer.has(Role.operator):
        items += line_for(missing, "donations miss eligibility test results",
                          "donation misses eligibility test results", "/donors?eligibility=pending",
                          lambda d: donation_url(d.identifier))
    return items
