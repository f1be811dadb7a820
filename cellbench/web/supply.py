"""The supply manager's pages (unblinded): studies, randomisation and kit lists, packaging runs,
blinded-lot compositions and the unblinded kit view (the quarantines: supply_quarantines.py).

Only unblinded roles reach these routes (supply_manager acts, QA and QP read, QA decides on
quarantines). Every read of the sealed compartment is a logged read, so every page that shows an
arm, a list or a kit's contents runs in a write transaction: the "sealed read" event must commit.
"""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlmodel import Session, col

from .. import kits, sealed, studies
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError, InvalidInput, NotFound
from ..labels import printing as labelling
from ..models import BlindedLot, KitQuarantine, Role, saved_id
from ..sealing import LIST_MACHINE
from ..supply import lists, packaging, quarantine, views
from ..supply.views import (
    READERS,
    arm_names,
    composition_by_arm,
    find_list,
    lots_of_quarantines,
    run_kits,
    signature_of,
    user_names,
)
from ..templating import render
from . import paging
from .home import QueueItem, line_for, line_of, work_queue

router = APIRouter(prefix="/supply", include_in_schema=False)
readers = require(*READERS)
MAKERS = lists.MAKERS
LIST_PAGE = 100  # list entries per page
RUN_PAGE = 50  # kits per page of a run: each kit's contents is one logged read
LOW_PLANNED = 10  # fewer kit numbers than this waiting to be packaged: seal a further kit list
MAX_UPLOAD = 2_000_000  # bytes; a 10,000-line list is well under this


def q(text: str) -> str:
    return quote(str(text), safe="")


def list_url(study_code: str, row) -> str:
    return f"/supply/studies/{q(study_code)}/lists/{row.kind}/{row.version}"


# --- work queue -------------------------------------------------------------------------------------


@work_queue
def _supply_waiting(session: Session, viewer: Viewer) -> list[QueueItem]:
    # Runs for every viewer, blinded ones included: it must not touch the sealed compartment.
    items = []
    if viewer.has(Role.supply_manager):
        # Counted in studies (a kit list is sealed per study), each named with what it has left:
        # counted only up to LOW_PLANNED, all a low study needs.
        low = [(study, views.planned_waiting(session, study, LOW_PLANNED)) for study in studies.all_studies(session)]
        low = [(study, planned) for study, planned in low if planned < LOW_PLANNED]
        left = "; ".join(f"{study.code}: {planned} left" for study, planned in low)
        items += line_for(low, f"studies run low on kit numbers to package ({left}): seal a kit list",
                          f"study runs low on kit numbers to package ({left}): seal a kit list", "/supply",
                          lambda row: f"/supply/studies/{q(row[0].code)}/lists/new?kind=kit")
    if viewer.has(*quarantine.DECIDERS):
        open_ = select(KitQuarantine).where(col(KitQuarantine.state) == "open").order_by(col(KitQuarantine.id).desc())
        items += line_of(session, open_, "open kit quarantines await your decision (lift or withdraw)",
                         "open kit quarantine awaits your decision (lift or withdraw)",
                         "/supply/quarantines?state=open", lambda kq: f"/supply/quarantines/{q(kq.number)}")
    return items


# --- overview and studies ---------------------------------------------------------------------------


def _overview(request: Request, session: Session, viewer: Viewer, error: DomainError | None = None,
              typed: dict | None = None):
    rows, open_q = views.overview(session, viewer.actor, request.app.state.settings.secret_key)
    return render(request, "supply/overview.html", status_code=error.status if error else 200, rows=rows,
                  error=error, typed=typed or {}, policies=studies.QUARANTINE_POLICIES, names=user_names(session),
                  planned_counted=views.PLANNED_COUNTED, can_act=viewer.has(*MAKERS), list_url=list_url, q=q,
                  lots_by_id=lots_of_quarantines(session, open_q))


@router.get("")
def overview(request: Request, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    with db.write() as session:  # the lists are a logged read
        return _overview(request, session, viewer)


@router.post("/studies/load")
def load_studies(request: Request, viewer: Viewer = Depends(form_by(*MAKERS)), db: Database = Depends(get_db)):
    try:
        with db.write() as session:
            loaded = studies.sync_from_files(session, viewer.actor)
    except studies.StudyFileError as bad:  # a file that does not load: say which, and load none
        with db.write() as session:
            return _overview(request, session, viewer, InvalidInput(str(bad), field="study_file"))
    notice = f"{len(loaded)} study definition{'s' if len(loaded) != 1 else ''} loaded."
    return RedirectResponse(f"/supply?notice={q(notice)}", status_code=303)


@router.post("/studies/{code}/quarantine-policy")
def set_policy(request: Request, code: str, viewer: Viewer = Depends(form_by(*MAKERS)),
               db: Database = Depends(get_db), form=Depends(form_data)):
    typed = {"study": code, "quarantine_policy": form.get("quarantine_policy", ""), "reason": form.get("reason", "")}
    try:
        with db.write() as session:
            study = studies.by_code(session, code, field="study")
            studies.set_quarantine_policy(session, viewer.actor, study, typed["quarantine_policy"], typed["reason"])
    except DomainError as error:
        with db.write() as session:
            return _overview(request, session, viewer, error, typed)
    return RedirectResponse(f"/supply?notice={q(f'Quarantine policy of {study.code} saved.')}#{q(study.code)}",
                            status_code=303)


# --- lists ------------------------------------------------------------------------------------------


def _new_list(request: Request, session: Session, code: str, error: DomainError | None = None,
              typed: dict | None = None, form_name: str = ""):
    study = studies.by_code(session, code, field="study")
    d = studies.definition(study)
    typed = typed or {"kind": request.query_params.get("kind", "kit")}
    return render(request, "supply/list_new.html", status_code=error.status if error else 200, study=study, d=d,
                  error=error, typed=typed, form_name=form_name, kinds=sealed.LIST_KINDS, q=q)


@router.get("/studies/{code}/lists/new")
def new_list_form(request: Request, code: str, viewer: Viewer = Depends(require(*MAKERS)),
                  session: Session = Depends(read_session)):
    return _new_list(request, session, code)


@router.post("/studies/{code}/lists")
def generate_list(request: Request, code: str, viewer: Viewer = Depends(form_by(*MAKERS)),
                  db: Database = Depends(get_db), form=Depends(form_data)):
    typed = {k: str(form.get(k, "")) for k in ("kind", "size", "seed", "block_sizes")}
    try:
        with db.write() as session:
            study = studies.by_code(session, code, field="study")
            row = lists.generate(session, viewer.actor, study, typed["kind"], typed["size"], seed=typed["seed"],
                                 block_sizes=typed["block_sizes"])
    except DomainError as error:
        with db.read() as session:
            return _new_list(request, session, code, error, typed, "generate")
    notice = lists.generated_notice(row, typed["size"])
    return RedirectResponse(f"{list_url(study.code, row)}?notice={q(notice)}", status_code=303)


def uploaded_text(upload) -> str:
    if upload is None or isinstance(upload, str) or not getattr(upload, "filename", ""):
        raise InvalidInput("Choose the CSV file to import.", field="file")
    raw = upload.file.read(MAX_UPLOAD + 1)
    if len(raw) > MAX_UPLOAD:
        raise InvalidInput(f"The file is larger than {MAX_UPLOAD // 1_000_000} MB.", field="file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("The file is not UTF-8 text; save the CSV as UTF-8 and try again.", field="file") from None


@router.post("/studies/{code}/lists/import")
def import_list(request: Request, code: str, viewer: Viewer = Depends(form_by(*MAKERS)),
                db: Database = Depends(get_db), form=Depends(form_data)):
    typed = {"kind": str(form.get("kind", ""))}
    try:
        text = uploaded_text(form.get("file"))
        with db.write() as session:
            study = studies.by_code(session, code, field="study")
            row = lists.import_csv(session, viewer.actor, study, typed["kind"], text)
    except DomainError as error:
        with db.read() as session:
            return _new_list(request, session, code, error, typed, "import")
    notice = (f"Draft {sealed.LIST_KINDS[row.kind]} version {row.version} imported ({row.size} entries): "
              "check it, then seal it.")
    return RedirectResponse(f"{list_url(study.code, row)}?notice={q(notice)}", status_code=303)


def _list_page(request: Request, session: Session, viewer: Viewer, code: str, kind: str, version: int,
               error: DomainError | None = None, typed: dict | None = None):
    study = studies.by_code(session, code, field="study")
    row = find_list(session, viewer.actor, study, kind, version)
    found = sealed.list_page(session, viewer.actor, row, paging.ask(request, LIST_PAGE))
    url = list_url(study.code, row)
    return render(request, "supply/list.html", status_code=error.status if error else 200, study=study, row=row,
                  kind_label=sealed.LIST_KINDS[row.kind], counts=sealed.arm_counts(session, viewer.actor, row),
                  arms=arm_names(study), entries=found.rows, pager=paging.pager(url, {}, found),
                  names=user_names(session),
                  sig=signature_of(session, row.signature_id), url=url, error=error,
                  typed=typed or {}, can_act=bool(LIST_MACHINE.allowed(row, viewer.actor.roles)))


@router.get("/studies/{code}/lists/{kind}/{version}")
def list_page(request: Request, code: str, kind: str, version: int, viewer: Viewer = Depends(readers),
              db: Database = Depends(get_db)):
    with db.write() as session:
        return _list_page(request, session, viewer, code, kind, version)


@router.post("/studies/{code}/lists/{kind}/{version}/{action}")
def list_action(request: Request, code: str, kind: str, version: int, action: str,
                viewer: Viewer = Depends(form_by(*MAKERS)), db: Database = Depends(get_db), form=Depends(form_data)):
    typed = {"action": action, "reason": str(form.get("reason", ""))}
    try:
        if action not in LIST_MACHINE.table:
            raise NotFound("There is no such action.", field="action")
        with db.write() as session:
            study = studies.by_code(session, code, field="study")
            row = find_list(session, viewer.actor, study, kind, version)
            if action == "seal":
                lists.seal(session, session.merge(viewer.user), viewer.actor, row, str(form.get("password", "")))
            else:
                sealed.discard_list(session, viewer.actor, row, typed["reason"])
    except DomainError as error:
        with db.write() as session:
            return _list_page(request, session, viewer, code, kind, version, error, typed)
    label = sealed.LIST_KINDS[row.kind].capitalize()
    notice = (f"{label} version {row.version} sealed." + (" Its kit numbers are issued." if row.kind == "kit" else "")
              if action == "seal" else f"{label} version {row.version} discarded.")
    return RedirectResponse(f"{list_url(study.code, row)}?notice={q(notice)}", status_code=303)


# --- packaging --------------------------------------------------------------------------------------


def _new_run(request: Request, session: Session, error: DomainError | None = None, typed: dict | None = None):
    all_studies = studies.all_studies(session)
    typed = typed or {"study": request.query_params.get("study") or (all_studies[0].code if all_studies else ""),
                      "asc_lots": [], "placebo_lots": [], "blinded_lot": "", "kit_count": ""}
    planned = {s.code: views.planned_waiting(session, s) for s in all_studies}
    return render(request, "supply/packaging_new.html", status_code=error.status if error else 200,
                  studies=all_studies, planned=planned, planned_counted=views.PLANNED_COUNTED,
                  doses={s.code: s.doses_per_treatment for s in all_studies},
                  asc=packaging.fillable_lots(session, "asc"), placebo=packaging.fillable_lots(session, "placebo"),
                  error=error, typed=typed)


@router.get("/packaging/new")
def new_run_form(request: Request, viewer: Viewer = Depends(require(*packaging.PACKERS)),
                 session: Session = Depends(read_session)):
    return _new_run(request, session)


@router.post("/packaging")
def create_run(request: Request, viewer: Viewer = Depends(form_by(*packaging.PACKERS)),
               db: Database = Depends(get_db), form=Depends(form_data)):
    chosen = {kind: [str(v) for v in form.getlist(kind)] for kind in ("asc_lots", "placebo_lots")}
    typed: dict = {"study": str(form.get("study", "")), "kit_count": str(form.get("kit_count", "")), **chosen,
                   "blinded_lot": str(form.get("blinded_lot", ""))}
    try:
        with db.write() as session:
            study = studies.by_code(session, typed["study"], field="study")
            run = packaging.package(session, viewer.actor, study, kit_count=typed["kit_count"],
                                    asc_lots=chosen["asc_lots"], placebo_lots=chosen["placebo_lots"],
                                    blinded_lot_code=typed["blinded_lot"] or None)
    except DomainError as error:
        with db.read() as session:
            return _new_run(request, session, error, typed)
    notice = f"Packaging run {run.number}: {run.kit_count} kits packaged."
    return RedirectResponse(f"/supply/packaging/{q(run.number)}?notice={q(notice)}", status_code=303)


@router.get("/packaging/{number}")
def run_page(request: Request, number: str, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    with db.write() as session:
        run = packaging.run_by_number(session, number)
        found, total = run_kits(session, viewer.actor, run, paging.ask(request, RUN_PAGE))
        study = studies.by_id(session, run.study_id)
        run_id = saved_id(run)
        run_lots = sealed.lots_of_runs(session, viewer.actor, [run_id], why="packaging run page").get(run_id, [])
        return render(request, "supply/run.html", run=run, study=study, lots=run_lots,
                      blinded=session.get(BlindedLot, run.blinded_lot_id), rows=found.rows, total=total,
                      pager=paging.pager(f"/supply/packaging/{q(run.number)}", {}, found), arms=arm_names(study),
                      names=user_names(session),
                      state_label=kits.state_label, q=q, prints_labels=viewer.has(*labelling.PRINTERS))


# --- blinded lots and kits (unblinded views) ---------------------------------------------------------


@router.get("/blinded-lots/{code}")
def blinded_lot_page(request: Request, code: str, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    with db.write() as session:
        blinded = kits.blinded_lot_by_code(session, code, field="code")
        study = studies.by_id(session, blinded.study_id)
        counts = kits.counts_by_state(session, blinded_lot=blinded)
        return render(request, "supply/blinded_lot.html", blinded=blinded, study=study, arms=arm_names(study),
                      by_arm=composition_by_arm(session, viewer.actor, blinded), counts=counts,
                      state_label=kits.state_label, total=sum(counts.values()), q=q,
                      runs=views.runs_of_blinded_lot(session, blinded))


@router.get("/kits/{number}")
def unblinded_kit(request: Request, number: str, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    with db.write() as session:
        kit = kits.by_number(session, number, field="number")
        arm, units = sealed.contents(session, viewer.actor, kit)
        study = studies.by_id(session, kit.study_id)
        held_by = session.get(KitQuarantine, kit.quarantine_id) if kit.quarantine_id else None
        return render(request, "supply/kit.html", kit=kits.view(session, kit), arm=arm,
                      arm_name=arm_names(study).get(arm) if arm else None, units=units, quarantine=held_by,
                      history=kits.history(session, viewer.actor, kit), q=q)
