"""Site pages: participants and visits, the pharmacist's dispensing by scanning, the preparer's
clock and the investigator's administration per gland (returns: `web/returns.py`; the home-page
lines: `web/pharmacy_queue.py`). Built for a tablet.

Blinded people read every page here except the preparation page, and nothing on them comes from
the sealed compartment: an active and a placebo participant in the same situation get the same
page, their numbers aside. What differs between viewers depends on the viewer's roles only.
"""
from __future__ import annotations

from functools import partial
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from .. import audit, clock, custody, pharmacy, studies, users
from ..clock import utcnow
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError, InvalidInput
from ..models import Site
from ..templating import render
from . import paging

router = APIRouter(include_in_schema=False)
readers = require(*pharmacy.READERS)
pharmacists = pharmacy.PHARMACY
preparers = pharmacy.PREPARERS
investigators = pharmacy.ADMINISTRATORS


def participant_url(study: str, screening_number: str) -> str:
    return f"/participants/{quote(study, safe='')}/{quote(screening_number, safe='')}"


def visit_url(view: pharmacy.VisitView) -> str:
    return f"{participant_url(view.study, view.screening_number)}/visits/{view.treatment}"


def _version(text: str | None, field: str) -> int | None:
    text = (text or "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise InvalidInput("This form is damaged; reload the page.", field=field)
    return int(text)


def notice_redirect(url: str, text: str) -> RedirectResponse:
    return RedirectResponse(f"{url}?notice={quote(text)}", status_code=303)


# --- participants --------------------------------------------------------------------------------


def _participants(request: Request, session: Session, viewer: Viewer, error: DomainError | None = None,
                  form: dict | None = None):
    q = request.query_params
    study_code = (q.get("study") or "").strip().upper()
    every_study = studies.all_studies(session)
    study = next((s for s in every_study if s.code == study_code), None)
    due = q.get("due") == "today"
    can_enrol = viewer.has(*pharmacy.ENROLLERS)
    rows = []
    only = pharmacy.due_participants(session, reader=viewer.actor) if due else None
    found = pharmacy.participant_page(session, paging.ask(request), study, reader=viewer.actor, only=only)
    visits_of = pharmacy.visits_by_participant(session, [p for p, _study, _site in found.rows])
    for participant, study_row, site in found.rows:
        visits = visits_of[participant.id]
        upcoming = next((v for v in visits if pharmacy.visit_state(v) not in pharmacy.FINAL), None)
        rows.append({"p": participant, "study": study_row.code, "site": site.code,
                     "number": pharmacy.participant_number(participant), "next": upcoming,
                     "next_label": pharmacy.visit_label(upcoming) if upcoming else None,
                     "url": participant_url(study_row.code, participant.screening_number)})
    return render(request, "pharmacy/participants.html", status_code=error.status if error else 200, rows=rows,
                  studies=[s for s in every_study if users.study_refusal(viewer.actor, s) is None],
                  study=study_code, due=due,  # the sites are read only for the enrolment form
                  sites=pharmacy.enrolment_sites(session, reader=viewer.actor) if can_enrol else [],
                  can_enrol=can_enrol, error=error,
                  pager=paging.pager("/participants", {"study": study_code, "due": q.get("due") or ""}, found),
                  form=form or {"study": study_code})


@router.get("/participants")
def participant_list(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    return _participants(request, session, viewer)


@router.post("/participants")
def enrol(request: Request, viewer: Viewer = Depends(form_by(*pharmacy.ENROLLERS)), db: Database = Depends(get_db),
          form=Depends(form_data)):
    values = {k: (form.get(k) or "").strip() for k in ("study", "site", "screening_number")}
    try:
        with db.write() as session:
            study = studies.by_code(session, values["study"], field="study")
            participant = pharmacy.enrol(session, viewer.actor, study, site_code=values["site"],
                                         screening_number=values["screening_number"])
            url = participant_url(study.code, participant.screening_number)
    except DomainError as error:
        with db.read() as session:
            return _participants(request, session, viewer, error, values)
    return notice_redirect(url, f"{participant.screening_number} enrolled.")


def _participant(request: Request, session: Session, viewer: Viewer, study: str, number: str,
                 error: DomainError | None = None, typed: dict | None = None):
    participant = pharmacy.participant_by_ref(session, study, number, reader=viewer.actor)
    study_row = studies.by_code(session, study)
    visits = pharmacy.visits_of(session, participant)
    views = pharmacy.views(session, viewer.actor, visits)
    ref = pharmacy.participant_ref(study_row, participant)
    history = audit.history(session, viewer.actor, "participant", ref)
    for v in views:
        history += audit.history(session, viewer.actor, "visit", v.ref)
    history.sort(key=lambda e: e.seq)
    site = custody.fetch(session, Site, participant.site_id, "site")
    records = {v.treatment: pharmacy.record_view(session, visit) for v, visit in  # the preparer's own record
               zip(views, visits, strict=True) if v.use_by and viewer.has(*preparers)}
    return render(request, "pharmacy/participant.html", status_code=error.status if error else 200, p=participant,
                  records=records,
                  study=study_row, site=site, number=pharmacy.participant_number(participant), visits=views,
                  url=participant_url(study_row.code, participant.screening_number), visit_url=visit_url,
                  can_randomise=viewer.has(*pharmacy.RANDOMISERS) and participant.randomisation_number is None,
                  criteria=studies.definition(study_row).eligibility, today=clock.today(site), typed=typed or {},
                  history=history, error=error)


@router.get("/participants/{study}/{number}")
def participant_page(request: Request, study: str, number: str, viewer: Viewer = Depends(readers),
                     session: Session = Depends(read_session)):
    return _participant(request, session, viewer, study, number)


@router.post("/participants/{study}/{number}/randomise")
def randomise(request: Request, study: str, number: str, viewer: Viewer = Depends(form_by(*pharmacy.RANDOMISERS)),
              db: Database = Depends(get_db), form=Depends(form_data)):
    answers = {name.removeprefix("criterion_"): value for name, value in form.items()
               if name.startswith("criterion_")}
    try:
        with db.write() as session:
            participant = pharmacy.randomise(session, viewer.actor,
                                             pharmacy.participant_by_ref(session, study, number, reader=viewer.actor),
                                             consent_date=form.get("consent_date"), criteria=answers)
            done = participant.randomisation_number
    except DomainError as error:
        with db.read() as session:
            return _participant(request, session, viewer, study, number, error, dict(form))
    return notice_redirect(participant_url(study, number), f"Randomised: participant number {done}.")


# --- dispensing ----------------------------------------------------------------------------------


DISPENSING_SHOWN = pharmacy.DUE_SHOWN  # visits awaiting a kit, a page: a day's work at one site


@router.get("/dispensing")
def dispensing_list(request: Request, viewer: Viewer = Depends(require(*pharmacists)),
                    session: Session = Depends(read_session)):
    """A page of the day's visits awaiting a dispensed kit (soonest window end first, an order that
    knows no arm) and how many there are in all: a busy day's whole list grew with the years."""
    found, count = pharmacy.due_list(session, paging.ask(request, DISPENSING_SHOWN), pharmacy.AWAITING_DISPENSING,
                                     reader=viewer.actor)
    return render(request, "pharmacy/dispensing.html", visits=found.rows, visit_url=visit_url, count=count,
                  pager=paging.pager("/dispensing", {}, found))


def _dispense_page(request: Request, session: Session, viewer: Viewer, study: str, number: str, treatment: str,
                   error: DomainError | None = None, code: str = "", *, form: dict | None = None):
    """`form`: what was typed into the replace or put-back form (its "action" says which), kept after a refusal."""
    visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
    view = pharmacy.view(session, viewer.actor, visit)
    return render(request, "pharmacy/dispense.html", status_code=error.status if error else 200, v=view,
                  url=visit_url(view), participant_url=participant_url(view.study, view.screening_number),
                  error=error, code=code, replacement_moves=pharmacy.REPLACEMENT_MOVES, form=form or {},
                  fetch_from=custody.position_of_number(session, view.kit_number))


@router.get("/participants/{study}/{number}/visits/{treatment}/dispense")
def dispense_page(request: Request, study: str, number: str, treatment: str,
                  viewer: Viewer = Depends(require(*pharmacists)), session: Session = Depends(read_session)):
    return _dispense_page(request, session, viewer, study, number, treatment)


def _visit_post(request: Request, viewer: Viewer, db: Database, study: str, number: str, treatment: str,
                work, page, *, code: str = "", suffix: str = "/dispense", goto: str | None = None):
    """Run one visit use case, then go to the visit's page `suffix` (or to `goto`); on refusal
    show the page again with the reason and the typed code."""
    try:
        with db.write() as session:
            visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
            message = work(session, visit)
            ctx = pharmacy.context(session, visit)
            url = f"{participant_url(ctx.study.code, ctx.participant.screening_number)}/visits/{visit.treatment}"
    except DomainError as error:
        with db.read() as session:
            return page(request, session, viewer, study, number, treatment, error, code)
    return notice_redirect(goto or url + suffix, message)


@router.get("/participants/{study}/{number}/visits/{treatment}")
def visit_page(study: str, number: str, treatment: str, viewer: Viewer = Depends(readers),
               session: Session = Depends(read_session)):
    """A visit is shown on its participant's page."""
    visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
    ctx = pharmacy.context(session, visit)
    return RedirectResponse(f"{participant_url(ctx.study.code, ctx.participant.screening_number)}#T{visit.treatment}",
                            status_code=303)


@router.post("/participants/{study}/{number}/visits/{treatment}/assign")
def assign(request: Request, study: str, number: str, treatment: str, viewer: Viewer = Depends(form_by(*pharmacists)),
           db: Database = Depends(get_db), form=Depends(form_data)):
    assigned = []

    def work(session, visit):
        kit = pharmacy.assign(session, viewer.actor, visit,
                              seen_version=_version(form.get("visit_version"), "visit_version"))
        assigned.append(kit)
        return f"Kit {kit.number} is assigned: fetch it and scan its label." if kit else ""

    response = _visit_post(request, viewer, db, study, number, treatment, work, _dispense_page)
    if assigned and assigned[0] is None:  # committed: the supply manager is told; the page says so
        with db.read() as session:
            return _dispense_page(request, session, viewer, study, number, treatment, pharmacy.NoKitAvailable())
    return response


@router.post("/participants/{study}/{number}/visits/{treatment}/dispense")
def dispense(request: Request, study: str, number: str, treatment: str,
             viewer: Viewer = Depends(form_by(*pharmacists)), db: Database = Depends(get_db), form=Depends(form_data)):
    code = form.get("code") or ""

    def work(session, visit):
        kit = pharmacy.dispense(session, viewer.actor, visit, code, request.app.state.settings.secret_key,
                                seen_version=_version(form.get("visit_version"), "visit_version"),
                                kit_version=_version(form.get("kit_version"), "kit_version"),
                                manual=form.get("manual"), reason=form.get("manual_reason"))
        return f"Kit {kit.number} dispensed to the preparer."

    return _visit_post(request, viewer, db, study, number, treatment, work, _dispense_page, code=code)


@router.post("/participants/{study}/{number}/visits/{treatment}/replace")
def replace(request: Request, study: str, number: str, treatment: str,
            viewer: Viewer = Depends(form_by(*pharmacists)), db: Database = Depends(get_db), form=Depends(form_data)):
    def work(session, visit):
        old = kit.number if (kit := pharmacy.context(session, visit).kit) else ""
        new = pharmacy.replace_kit(session, session.merge(viewer.user), form.get("password") or "", visit,
                                   what=form.get("what"), reason=form.get("reason"),
                                   seen_version=_version(form.get("visit_version"), "visit_version"))
        if new is None:
            ctx = pharmacy.context(session, visit)
            why = pharmacy.outside_window(visit, clock.today(ctx.site)) or pharmacy.NO_KIT_MESSAGE
            return f"Kit {old} recorded as {form.get('what')}. No other kit was assigned. {why}"
        return f"Kit {old} recorded as {form.get('what')}; kit {new.number} is assigned instead: fetch it and scan it."

    typed = {"action": "replace", "what": form.get("what") or "", "reason": form.get("reason") or ""}
    return _visit_post(request, viewer, db, study, number, treatment, work, partial(_dispense_page, form=typed))


@router.post("/participants/{study}/{number}/visits/{treatment}/unallocate")
def unallocate(request: Request, study: str, number: str, treatment: str,
               viewer: Viewer = Depends(form_by(*pharmacists)), db: Database = Depends(get_db),
               form=Depends(form_data)):
    def work(session, visit):
        kit = pharmacy.unallocate(session, viewer.actor, visit, form.get("reason"),
                                  seen_version=_version(form.get("visit_version"), "visit_version"))
        return f"Kit {kit.number} is back in stock."

    typed = {"action": "unallocate", "reason": form.get("reason") or ""}
    return _visit_post(request, viewer, db, study, number, treatment, work, partial(_dispense_page, form=typed))


# --- preparation ---------------------------------------------------------------------------------


def _preparation(request: Request, session: Session, viewer: Viewer, error: DomainError | None = None,
                 code: str = ""):
    to_prepare = pharmacy.to_prepare(session, reader=viewer.actor)
    # both lists' views in one go: their participants, kits and studies' locks are read once
    shown = pharmacy.views(session, viewer.actor, to_prepare + pharmacy.preparations_running(session,
                                                                                             reader=viewer.actor))
    waiting, running = shown[:len(to_prepare)], shown[len(to_prepare):]
    # each study's presentation sets its window; the hint names it when the visits share one
    windows = {pharmacy.use_window(studies.by_code(session, code)) for code in {v.study for v in waiting + running}}
    counts = {"waiting": pharmacy.passing_count(session, pharmacy.DISPENSED, reader=viewer.actor)
              if len(waiting) == pharmacy.SHOWN else len(waiting),
              "running": pharmacy.passing_count(session, pharmacy.RUNNING, reader=viewer.actor)
              if len(running) == pharmacy.SHOWN else len(running)}
    return render(request, "pharmacy/preparation.html", status_code=error.status if error else 200, waiting=waiting,
                  running=running, counts=counts, error=error, code=code, now=utcnow(), visit_url=visit_url,
                  minutes=int(windows.pop().total_seconds() // 60) if len(windows) == 1 else None)


@router.get("/preparation")
def preparation_page(request: Request, viewer: Viewer = Depends(require(*preparers)),
                     session: Session = Depends(read_session)):
    return _preparation(request, session, viewer)


@router.post("/preparation")
def start_preparation(request: Request, viewer: Viewer = Depends(form_by(*preparers)), db: Database = Depends(get_db),
                      form=Depends(form_data)):
    code = form.get("code") or ""
    try:
        with db.write() as session:
            ctx = pharmacy.start_preparation(session, viewer.actor, code, request.app.state.settings.secret_key,
                                             manual=form.get("manual"), reason=form.get("manual_reason"))
            text = f"Kit {ctx.held_kit.number}: the clock is running. Use by {_local(request, ctx.visit.use_by)}."
    except DomainError as error:
        with db.read() as session:
            return _preparation(request, session, viewer, error, code)
    return notice_redirect("/preparation", text)


def _local(request: Request, moment) -> str:
    return request.app.state.templates.env.filters["local"](moment, "%H:%M")


# --- administration ------------------------------------------------------------------------------


def _administration(request: Request, session: Session, viewer: Viewer, study: str, number: str, treatment: str,
                    error: DomainError | None = None, form: dict | None = None):
    visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
    view = pharmacy.view(session, viewer.actor, visit)
    done = {a.gland: a for a in view.administrations}
    return render(request, "pharmacy/administration.html", status_code=error.status if error else 200, v=view,
                  url=visit_url(view), participant_url=participant_url(view.study, view.screening_number),
                  done=done, error=error, form=form or {}, now=utcnow(), max_volume=pharmacy.MAX_VOLUME_ML)


@router.get("/participants/{study}/{number}/visits/{treatment}/administration")
def administration_page(request: Request, study: str, number: str, treatment: str,
                        viewer: Viewer = Depends(require(*investigators)), session: Session = Depends(read_session)):
    return _administration(request, session, viewer, study, number, treatment)


@router.post("/participants/{study}/{number}/visits/{treatment}/administration")
def administer(request: Request, study: str, number: str, treatment: str,
               viewer: Viewer = Depends(form_by(*investigators)), db: Database = Depends(get_db),
               form=Depends(form_data)):
    values = {k: (form.get(k) or "").strip() for k in ("gland", "administered_at", "volume_ml", "administered_by")}
    try:
        with db.write() as session:
            visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
            row = pharmacy.administer(session, viewer.actor, visit, gland=values["gland"],
                                      volume_ml=values["volume_ml"], administered_at=values["administered_at"],
                                      administered_by=values["administered_by"],
                                      seen_version=_version(form.get("visit_version"), "visit_version"))
            gland = pharmacy.gland_short(pharmacy.context(session, visit).study, row.dose)
    except DomainError as error:
        with db.read() as session:
            return _administration(request, session, viewer, study, number, treatment, error, values)
    url = f"{participant_url(study, number)}/visits/{treatment}/administration"
    return notice_redirect(url, f"{gland.capitalize()} gland recorded.")


@router.post("/participants/{study}/{number}/visits/{treatment}/not-administered")
def not_administered(request: Request, study: str, number: str, treatment: str,
                     viewer: Viewer = Depends(form_by(*pharmacy.VISIT_MOVES["not_administered"].roles)),
                     db: Database = Depends(get_db), form=Depends(form_data)):
    def work(session, visit):
        pharmacy.record_not_administered(session, viewer.actor, visit, form.get("reason"),
                                         seen_version=_version(form.get("visit_version"), "visit_version"))
        return "Recorded as not administered: the kit goes to destruction."

    def page(request, session, viewer, study, number, treatment, error, _code):
        if viewer.has(*investigators):
            return _administration(request, session, viewer, study, number, treatment, error)
        return _preparation(request, session, viewer, error)

    if viewer.has(*investigators):
        return _visit_post(request, viewer, db, study, number, treatment, work, page, suffix="/administration")
    return _visit_post(request, viewer, db, study, number, treatment, work, page, goto="/preparation")
