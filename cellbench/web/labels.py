"""Label run pages: the runs (those awaiting reconciliation first), printing a run, one run with
its kits, download and reconciliation. Supply managers print and reconcile; QA reads."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit, studies
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError, InvalidInput
from ..labels import printing as labelling
from ..labels.runs import run_page as label_run_page
from ..models import LabelRun
from ..templating import render
from . import paging
from .home import QueueItem, line_of, work_queue

router = APIRouter(prefix="/labels", include_in_schema=False)
readers = require(*labelling.READERS)
printers = require(*labelling.PRINTERS)
NEW_FIELDS = ("study", "blinded_lot", "kit_numbers", "kind", "output")
RECONCILE_FIELDS = ("applied", "spoiled", "destroyed", "reason")


def run_url(number: str) -> str:
    return f"/labels/{quote(number, safe='')}"


@work_queue
def _runs_to_reconcile(session: Session, viewer: Viewer) -> list[QueueItem]:
    if not viewer.has(*labelling.PRINTERS):
        return []
    still_open = select(LabelRun).where(col(LabelRun.reconciled_at).is_(None)).order_by(col(LabelRun.id))
    return line_of(session, still_open, "label runs await your reconciliation",
                   "label run awaits your reconciliation", "/labels?open=1", lambda run: run_url(run.number))


@router.get("")
def run_list(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    open_only = request.query_params.get("open") == "1"
    found = label_run_page(session, paging.ask(request), open_only=open_only)
    return render(request, "labels/list.html", rows=labelling.views(session, found.rows), open_only=open_only,
                  run_url=run_url, pager=paging.pager("/labels", {"open": "1" if open_only else ""}, found),
                  can_print=viewer.has(*labelling.PRINTERS), kinds=labelling.KINDS, outputs=labelling.OUTPUTS)


def _new(request: Request, session: Session, form: dict, error: DomainError | None = None):
    return render(request, "labels/new.html", status_code=error.status if error else 200, form=form, error=error,
                  studies=studies.all_studies(session),
                  kinds=labelling.KINDS, outputs=labelling.OUTPUTS, max_kits=labelling.MAX_KITS_PER_RUN)


@router.get("/new")
def new_run_form(request: Request, viewer: Viewer = Depends(printers), session: Session = Depends(read_session)):
    q = request.query_params
    form = {"study": q.get("study", ""), "blinded_lot": q.get("blinded_lot", ""), "kit_numbers": "",
            "kind": q.get("kind", "outer"), "output": q.get("output", "sheet")}
    if form["blinded_lot"] and not form["study"]:  # a link from a blinded lot: its study, if the code is one
        form["study"] = labelling.study_code_of_blinded_lot(session, form["blinded_lot"])
    return _new(request, session, form)


@router.post("")
def print_run(request: Request, viewer: Viewer = Depends(form_by(*labelling.PRINTERS)),
              db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: form.get(k, "") for k in NEW_FIELDS}
    try:
        with db.write() as session:
            if not values["study"].strip():
                raise InvalidInput("Choose the study.", field="study")
            study = studies.by_code(session, values["study"])
            run, _, _ = labelling.print_run(session, viewer.actor, study, blinded_lot_code=values["blinded_lot"],
                                            kit_numbers=values["kit_numbers"], kind=values["kind"],
                                            output=values["output"], secret_key=request.app.state.settings.secret_key)
            number, printed = run.number, run.printed
    except DomainError as error:
        with db.read() as session:
            return _new(request, session, values, error)
    notice = f"{number}: {printed} label{'s' if printed != 1 else ''} printed. Download them, then reconcile the run."
    return RedirectResponse(f"{run_url(number)}?notice={quote(notice)}", status_code=303)


def _detail(request: Request, session: Session, viewer: Viewer, number: str, error: DomainError | None = None,
            form: dict | None = None):
    run = labelling.by_number(session, number)
    return render(request, "labels/detail.html", status_code=error.status if error else 200,
                  run=labelling.view(session, run), kits=labelling.kits_of(session, run),
                  filename=labelling.filename(run), kinds=labelling.KINDS, outputs=labelling.OUTPUTS,
                  doses=studies.by_id(session, run.study_id).doses_per_treatment,
                  can_reconcile=viewer.has(*labelling.PRINTERS) and run.reconciled_at is None,
                  history=audit.history(session, viewer.actor, "label_run", run.number),
                  form=form or {}, error=error, url=run_url(run.number))


@router.get("/{number}")
def run_page(request: Request, number: str, viewer: Viewer = Depends(readers),
             session: Session = Depends(read_session)):
    return _detail(request, session, viewer, number)


@router.get("/{number}/download")
def download(request: Request, number: str, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    with db.write() as session:  # every download is an audit event
        run = labelling.by_number(session, number)
        data, media_type = labelling.rendered(session, viewer.actor, run, request.app.state.settings.secret_key)
        name = labelling.filename(run)
    return Response(data, media_type=media_type, headers={"content-disposition": f'attachment; filename="{name}"'})


@router.post("/{number}/reconciliation")
def reconcile(request: Request, number: str, viewer: Viewer = Depends(form_by(*labelling.PRINTERS)),
              db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: form.get(k, "") for k in RECONCILE_FIELDS}
    try:
        with db.write() as session:
            run = labelling.by_number(session, number)
            labelling.reconcile(session, viewer.actor, run, values["applied"], values["spoiled"],
                                values["destroyed"], reason=values["reason"])
            number = run.number
    except DomainError as error:
        with db.read() as session:
            return _detail(request, session, viewer, number, error, values)
    return RedirectResponse(f"{run_url(number)}?notice={quote(f'{number} reconciled.')}", status_code=303)
