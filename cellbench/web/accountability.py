"""Accountability pages: the balance by place and blinded lot, signed physical counts, and
destruction (the sponsor's authorisation, then the record of it, then its certificate).

Pharmacists and monitors read these pages, so they are built from accountability.py alone, which
never reaches the sealed compartment. (By manufacturing lot: web/lot_accountability.py.)
"""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlmodel import Session, col

from .. import accountability, kits, pdf, studies, users
from ..accountability import destruction, listing
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError
from ..models import Kit, Role, Signature, Site, Study, User
from ..templating import render
from . import paging
from .home import QueueItem, line_for, line_of, work_queue

router = APIRouter(include_in_schema=False)
readers = require(*accountability.READERS)
LOT_VIEWERS = (Role.supply_manager, Role.qa)  # get a link to accountability by manufacturing lot


def row_url(study: str, place: str, blinded_lot: str) -> str:
    return f"/accountability/{quote(study, safe='')}/{quote(place, safe='')}/{quote(blinded_lot, safe='')}"


def destruction_url(number: str) -> str:
    return f"/destructions/{quote(number, safe='')}"


@work_queue
def _accountability_waiting(session: Session, viewer: Viewer) -> list[QueueItem]:
    items = []
    # A discrepancy is the counting site's and supply's to resolve (QA oversees); the monitor only
    # reads. A site's people count only their own sites' discrepancies.
    if viewer.has(Role.pharmacist, Role.supply_manager, Role.qa):
        items += line_of(session, accountability.discrepancies(viewer.actor),
                         "stock counts differ from cellbench's: find out why",
                         "stock count differs from cellbench's: find out why", "/accountability",
                         lambda _rec: "/accountability")
    if viewer.has(*destruction.RECORDERS):
        waiting = [d for d in destruction.destructions(session, state=destruction.DestructionState.authorised.value,
                                                         reader=viewer.actor)
                   if "record" in destruction.allowed_actions(session, d, viewer.actor)]
        items += line_for(waiting, "authorised destructions await you to carry them out and record them",
                          "authorised destruction awaits you to carry it out and record it",
                          "/destructions?state=authorised", lambda d: destruction_url(d.number))
    return items


def _study(session: Session, request: Request) -> tuple[list[Study], Study | None]:
    all_studies = studies.all_studies(session)
    code = (request.query_params.get("study") or "").strip().upper()
    if code:
        return all_studies, studies.by_code(session, code)
    return all_studies, all_studies[0] if all_studies else None


def list_page(request: Request, session: Session, viewer: Viewer, error: DomainError | None = None,
              form: dict | None = None) -> Response:
    """A page of the study's rows (newest blinded lot first), the totals over all of them and how
    many are in discrepancy; with `site` chosen, that site's rows and its monitor verifications."""
    all_studies, study = _study(session, request)
    if form and form.get("study"):  # a refused form shows its own study again
        study = studies.by_code(session, form["study"])
    site_code = (request.query_params.get("site") or (form or {}).get("site") or "").strip().upper()
    site = accountability.verification.site_of(session, study, site_code, reader=viewer.actor) \
        if study and site_code else None
    discrepant = bool(request.query_params.get("discrepant"))
    found = listing.listing(session, paging.ask(request), study, site or "all", discrepant=discrepant,
                            reader=viewer.actor) if study else None
    sites = studies.sites_of(session, study) if study else []
    seen = [s for s, _ in sites if users.sees(viewer.actor, s, study)]
    filters = {"study": study.code if study else "", "site": site.code if site else "",
               "discrepant": "1" if discrepant else ""}
    return render(request, "accountability/list.html", status_code=error.status if error else 200,
                  studies=all_studies, study=study, listing=found, rows=found.page.rows if found else [],
                  pager=paging.pager("/accountability", filters, found.page if found else None),
                  discrepant=discrepant, categories=accountability.CATEGORIES,
                  released_terms=accountability.RELEASED_TERMS, row_url=row_url, sites=sites,
                  lot_link=viewer.has(*LOT_VIEWERS), can_authorise=viewer.has(*destruction.AUTHORISERS),
                  site=site,  # where its verification stands, without reading its figures (issue 18)
                  standing=accountability.verification.glance(session, study, site) if site and study else None,
                  latest_by_site=accountability.verification.latest_by_site(session, study, seen)
                  if study and not site else [],
                  may_verify=viewer.has(*accountability.VERIFIERS), error=error, form=form or {})


@router.get("/accountability")
def accountability_page(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    return list_page(request, session, viewer)


def _row_page(request: Request, session: Session, viewer: Viewer, study_code: str, place: str, code: str,
              error: DomainError | None = None, form: dict | None = None):
    study = studies.by_code(session, study_code)
    site = accountability.place_of(session, study, place, reader=viewer.actor)
    blinded = kits.blinded_lot_by_code(session, code)
    row = accountability.row_of(session, study, site, blinded)
    history = accountability.reconciliations(session, study, site, blinded)
    sigs = {s.id: s for s in session.scalars(select(Signature).where(
        col(Signature.id).in_([r.signature_id for r in history if r.signature_id])))}
    names = dict(session.execute(select(col(User.id), col(User.full_name))).all())
    destroyable = destruction.destroyable_kits(session, study, site, blinded)
    return render(request, "accountability/row.html", status_code=error.status if error else 200, study=study,
                  row=row, history=history, sigs=sigs, names=names, categories=accountability.CATEGORIES,
                  destroyable=[kits.view(session, k) for k in destroyable], error=error, form=form or {},
                  may_count=accountability.may_act_at(viewer.actor, site),
                  can_authorise=viewer.has(*destruction.AUTHORISERS), expected_of=accountability.expected_of)


@router.get("/accountability/{study_code}/{place}/{code}")
def row_page(request: Request, study_code: str, place: str, code: str, viewer: Viewer = Depends(readers),
             session: Session = Depends(read_session)):
    return _row_page(request, session, viewer, study_code, place, code)


@router.post("/accountability/{study_code}/{place}/{code}/count")
def count(request: Request, study_code: str, place: str, code: str,
          viewer: Viewer = Depends(form_by(*accountability.COUNTERS)),
          db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: (form.get(k) or "").strip() for k in ("counted_in_stock", "comment")}
    try:
        with db.write() as session:
            study = studies.by_code(session, study_code)
            site = accountability.place_of(session, study, place)
            rec = accountability.reconcile(session, session.merge(viewer.user), form.get("password", ""), study, site,
                                           kits.blinded_lot_by_code(session, code), values["counted_in_stock"],
                                           values["comment"])
    except DomainError as error:
        with db.read() as session:
            return _row_page(request, session, viewer, study_code, place, code, error, values)
    notice = ("Count recorded: it balances." if rec.balanced
              else "Count recorded: it differs from cellbench's (discrepancy).")
    return RedirectResponse(f"{row_url(study_code, place, code)}?notice={quote(notice)}", status_code=303)


# --- destruction ----------------------------------------------------------------------------------


@router.get("/destructions")
def destruction_list(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    state = (request.query_params.get("state") or "").strip() or None
    found = accountability.destruction_page(session, paging.ask(request), state=state, reader=viewer.actor)
    sites = {s.id: s for s in session.scalars(select(Site))}
    codes = {s.id: s.code for s in studies.all_studies(session)}
    return render(request, "accountability/destructions.html", rows=found.rows, state=state or "",
                  pager=paging.pager("/destructions", {"state": state or ""}, found),
                  place=lambda d: accountability.place_name(sites.get(d.site_id)), study_code=codes,
                  url=destruction_url, can_authorise=viewer.has(*destruction.AUTHORISERS),
                  studies=studies.all_studies(session), sites=lambda s: studies.sites_of(session, s))


def _new_page(request: Request, session: Session, study_code: str, place: str, error: DomainError | None = None,
              chosen: list[str] | None = None):
    study = studies.by_code(session, study_code)
    site = accountability.place_of(session, study, place)
    candidates = destruction.destroyable_kits(session, study, site)
    by_lot: dict[int | None, list[Kit]] = {}
    for kit in candidates:
        by_lot.setdefault(kit.blinded_lot_id, []).append(kit)
    gates = {lot_id: destruction.destruction_blocked(session, study, site, group) for lot_id, group in by_lot.items()}
    return render(request, "accountability/destruction_new.html", status_code=error.status if error else 200,
                  study=study, place=accountability.place_key(site), place_name=accountability.place_name(site),
                  kits=[(kits.view(session, k), gates[k.blinded_lot_id]) for k in candidates], error=error,
                  chosen=set(chosen or []))


@router.get("/destructions/new")
def new_destruction(request: Request, viewer: Viewer = Depends(require(*destruction.AUTHORISERS)),
                    session: Session = Depends(read_session)):
    q = request.query_params
    return _new_page(request, session, q.get("study") or "", q.get("place") or "")


@router.post("/destructions")
def authorise(request: Request, viewer: Viewer = Depends(form_by(*destruction.AUTHORISERS)),
              db: Database = Depends(get_db), form=Depends(form_data)):
    study_code, place, chosen = form.get("study", ""), form.get("place", ""), form.getlist("kits")
    try:
        with db.write() as session:
            study = studies.by_code(session, study_code)
            d = destruction.authorise(session, session.merge(viewer.user), form.get("password", ""), study,
                                         accountability.place_of(session, study, place), chosen)
    except DomainError as error:
        with db.read() as session:
            return _new_page(request, session, study_code, place, error, chosen)
    return RedirectResponse(f"{destruction_url(d.number)}?notice={quote(f'{d.number} authorised.')}", status_code=303)


def _detail(request: Request, session: Session, viewer: Viewer, number: str, error: DomainError | None = None,
            form: dict | None = None):
    d = destruction.by_number(session, number, reader=viewer.actor)
    ask = paging.ask(request)  # the kits a page at a time, by number; the count is of them all
    data = accountability.gather(session, d, ask)
    url = destruction_url(d.number)
    pager = paging.Pager(url if ask.after else None, paging.link(url, {}, data.kits_next) if data.kits_next else None)
    return render(request, "accountability/destruction.html", status_code=error.status if error else 200, d=d,
                  data=data, error=error, pager=pager,
                  form=form or {"destroyed_on": destruction.local_today(session, d).isoformat()},
                  may_record="record" in destruction.allowed_actions(session, d, viewer.actor),
                  url=destruction_url(d.number))


@router.get("/destructions/{number}")
def destruction_page(request: Request, number: str, viewer: Viewer = Depends(readers),
                     session: Session = Depends(read_session)):
    return _detail(request, session, viewer, number)


@router.post("/destructions/{number}/record")
def record(request: Request, number: str, viewer: Viewer = Depends(form_by(*destruction.RECORDERS)),
           db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: (form.get(k) or "").strip() for k in ("method", "destroyed_on", "witness")}
    try:
        with db.write() as session:
            d = destruction.by_number(session, number)
            destruction.record_destruction(session, session.merge(viewer.user), form.get("password", ""), d,
                                              **values)
    except DomainError as error:
        with db.read() as session:
            return _detail(request, session, viewer, number, error, values)
    return RedirectResponse(f"{destruction_url(d.number)}?notice={quote(f'{d.number} recorded as destroyed.')}",
                            status_code=303)


def pdf_response(name: str, pdf: bytes) -> Response:
    """A PDF shown in the browser, saved under its own name."""
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}"})


@router.get("/destructions/{number}/certificate.pdf")
async def certificate(request: Request, number: str, viewer: Viewer = Depends(readers),
                      db: Database = Depends(get_db)):
    return pdf_response(*await pdf.render_for(
        request, f"destruction certificate {number[:40]}",
        lambda: accountability.certificate_file(db, number, zone=request.app.state.settings.zone,
                                                printed_by=viewer.user.full_name, reader=viewer.actor)))

