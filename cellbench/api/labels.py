"""JSON API: label runs (print, list, read, download the output again, reconcile).

Supply managers print and reconcile; QA reads and downloads. Blinded roles get 403: a run's
labels are the same for both arms, but printing and accounting for them is the cell bench's work.
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import studies
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..labels import printing as labelling
from ..labels.runs import run_page as label_run_page
from ..pagination import Ask
from . import paging

router = APIRouter(prefix="/api/v1", tags=["labels"])
readers = require(*labelling.READERS)
printers = require(*labelling.PRINTERS)


class LabelRunOut(BaseModel):
    number: str
    study: str
    blinded_lot: str | None = Field(description="None when the kits listed came from several blinded lots")
    kind: Literal["outer", "vial"]
    output: Literal["sheet", "single", "zpl"]
    kits: int
    printed: int = Field(description="Labels printed: one per kit (outer), one per dose (vial)")
    applied: int | None
    spoiled: int | None
    destroyed: int | None
    created_by: str
    created_at: datetime
    reconciled: bool
    reconciled_by: str | None
    reconciled_at: datetime | None
    output_url: str = Field(description="GET it for the labels, byte for byte as printed (each download is logged)")


class LabelRunDetailOut(LabelRunOut):
    kit_numbers: list[str] = Field(description="In kit-number order, the order printed")


class NewLabelRun(BaseModel):
    study: str
    blinded_lot: str | None = Field(None, description="Its packaged and released kits, unless kit_numbers are given")
    kit_numbers: list[str] | None = Field(None, description="Only these kits (to relabel); in the blinded lot if "
                                                            "one is given")
    kind: Literal["outer", "vial"]
    output: Literal["sheet", "single", "zpl"] = "sheet"


class Reconciliation(BaseModel):
    applied: int = Field(ge=0)
    spoiled: int = Field(ge=0)
    destroyed: int = Field(ge=0, description="Printed but unused, destroyed")
    reason: str | None = Field(None, description="Required when labels were spoiled")


def _url(number: str) -> str:
    return f"/api/v1/label-runs/{number}/output"


def run_out(session: Session, run, *, detail: bool = False) -> LabelRunOut:
    values = {**labelling.view(session, run).as_json(), "output_url": _url(run.number)}
    if detail:
        return LabelRunDetailOut(**values, kit_numbers=[k.number for k in labelling.kits_of(session, run)])
    return LabelRunOut(**values)


LabelRunPageOut = paging.page_model("LabelRunPageOut", "label_runs", LabelRunOut,
                                    "Runs awaiting reconciliation first, newest first within each")


@router.get("/label-runs", response_model=LabelRunPageOut)
def list_runs(study: str | None = None, open_only: bool = False, ask: Ask = Depends(paging.ask),
              viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    """Runs awaiting reconciliation first, newest first within each."""
    found = label_run_page(session, ask, studies.by_code(session, study) if study else None, open_only=open_only)
    return LabelRunPageOut(label_runs=[LabelRunOut(**view.as_json(), output_url=_url(view.number))
                                       for view in labelling.views(session, found.rows)], next=found.next)


@router.post("/label-runs", response_model=LabelRunDetailOut, status_code=201)
def create_run(body: NewLabelRun, request: Request, viewer: Viewer = Depends(printers), db: Database = Depends(get_db)):
    with db.write() as session:
        run, _, _ = labelling.print_run(session, viewer.actor, studies.by_code(session, body.study),
                                        blinded_lot_code=body.blinded_lot, kit_numbers=body.kit_numbers or None,
                                        kind=body.kind, output=body.output,
                                        secret_key=request.app.state.settings.secret_key)
        return run_out(session, run, detail=True)


@router.get("/label-runs/{number}", response_model=LabelRunDetailOut)
def get_run(number: str, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    return run_out(session, labelling.by_number(session, number), detail=True)


@router.get("/label-runs/{number}/output", response_class=Response,
            responses={200: {"content": {"application/pdf": {}, "text/plain": {}},
                             "description": "The labels (PDF, or ZPL as UTF-8 text)"}})
def get_output(number: str, request: Request, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    with db.write() as session:  # the download is an audit event
        run = labelling.by_number(session, number)
        data, media_type = labelling.rendered(session, viewer.actor, run, request.app.state.settings.secret_key)
        name = labelling.filename(run)
    return Response(data, media_type=media_type, headers={"content-disposition": f'attachment; filename="{name}"'})


@router.post("/label-runs/{number}/reconciliation", response_model=LabelRunDetailOut)
def reconcile(number: str, body: Reconciliation, viewer: Viewer = Depends(printers), db: Database = Depends(get_db)):
    with db.write() as session:
        run = labelling.reconcile(session, viewer.actor, labelling.by_number(session, number), body.applied,
                                  body.spoiled, body.destroyed, reason=body.reason)
        return run_out(session, run, detail=True)
