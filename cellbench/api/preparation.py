"""JSON API: the preparer's record (unblinded: the preparer only). The same use cases as the pages
(web/preparation.py): the thaw or preparation end, units scanned against the kit (the compartment's
logged read, sealed.unit_codes, is handed in here, so this module is unblinded-only), the masking
measure, a syringe per gland, and its label as a PDF. Answers have the same shape for both arms and
carry no unit code."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import pharmacy, sealed
from ..db import Database
from ..deps import Viewer, get_db, read_session, require

router = APIRouter(prefix="/api/v1/preparation", tags=["preparation"])
preparers = require(*pharmacy.PREPARERS)
VISIT = "/{study}/{number}/{treatment}"


class SyringeOut(BaseModel):
    gland: str
    volume_ml: float | None
    drawn_at: datetime | None
    labels_printed: int


class PreparationOut(BaseModel):
    started_at: datetime | None
    use_by: datetime | None
    clock_running: bool = Field(description="False once the visit is closed (every gland recorded, or stopped)")
    thaw_ended_at: datetime | None
    units_scanned: int
    units_expected: int
    syringes: list[SyringeOut]
    masking_measure: str | None
    masking_measures: list[str] = Field(description="The study file's list: the one used is chosen from it")
    max_volume_ml: float
    complete: bool


class ThawEndIn(BaseModel):
    ended_at: datetime | str | None = Field(default=None, description="Empty: now; else site time or ISO 8601")


class UnitIn(BaseModel):
    unit_code: str = Field(description="The code on a unit (vial) of the kit, scanned or typed")


class MaskingIn(BaseModel):
    masking_measure: str


class SyringeIn(BaseModel):
    gland: str | int = Field(description="left or right (or 1, 2: the study's dose sites in order)")
    volume_ml: float | str


def _out(session: Session, viewer: Viewer, study: str, number: str, treatment: str) -> PreparationOut:
    record = pharmacy.record_view(session, pharmacy.visit_by_ref(session, study, number, treatment,
                                                                 reader=viewer.actor))
    return PreparationOut(
        started_at=record.started_at, use_by=record.use_by, clock_running=record.clock_running,
        thaw_ended_at=record.thaw_ended_at, units_scanned=len(record.units_scanned),
        units_expected=record.units_expected, masking_measure=record.masking_measure,
        masking_measures=list(record.masking_measures), max_volume_ml=record.max_volume_ml, complete=record.complete,
        syringes=[SyringeOut(gland=s.gland, volume_ml=s.volume_ml, drawn_at=s.drawn_at, labels_printed=s.labels_printed)
                  for s in record.syringes])


@router.get(VISIT, response_model=PreparationOut)
def record(study: str, number: str, treatment: str, viewer: Viewer = Depends(preparers),
           session: Session = Depends(read_session)):
    return _out(session, viewer, study, number, treatment)


@router.post(VISIT + "/thaw-end", response_model=PreparationOut)
def thaw_end(study: str, number: str, treatment: str, body: ThawEndIn, viewer: Viewer = Depends(preparers),
             db: Database = Depends(get_db)):
    with db.write() as session:
        visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
        pharmacy.record_thaw_end(session, viewer.actor, visit, body.ended_at)
        return _out(session, viewer, study, number, treatment)


@router.post(VISIT + "/units", response_model=PreparationOut, status_code=201)
def scan_unit(study: str, number: str, treatment: str, body: UnitIn, viewer: Viewer = Depends(preparers),
              db: Database = Depends(get_db)):
    """A unit of another kit: 422 naming unit_code, and nothing is recorded."""
    with db.write() as session:
        visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
        pharmacy.scan_unit(session, viewer.actor, visit, body.unit_code, sealed.unit_codes)
        return _out(session, viewer, study, number, treatment)


@router.post(VISIT + "/masking", response_model=PreparationOut)
def masking(study: str, number: str, treatment: str, body: MaskingIn, viewer: Viewer = Depends(preparers),
            db: Database = Depends(get_db)):
    with db.write() as session:
        visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
        pharmacy.choose_masking(session, viewer.actor, visit, body.masking_measure)
        return _out(session, viewer, study, number, treatment)


@router.post(VISIT + "/syringes", response_model=PreparationOut, status_code=201)
def draw_syringe(study: str, number: str, treatment: str, body: SyringeIn, viewer: Viewer = Depends(preparers),
                 db: Database = Depends(get_db)):
    with db.write() as session:
        visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
        pharmacy.draw_syringe(session, viewer.actor, visit, body.gland, body.volume_ml)
        return _out(session, viewer, study, number, treatment)


@router.post(VISIT + "/labels/{gland}", response_class=Response,
             responses={200: {"content": {"application/pdf": {}}, "description": "The syringe label"}})
def syringe_label(study: str, number: str, treatment: str, gland: str, request: Request,
                  viewer: Viewer = Depends(preparers), db: Database = Depends(get_db)):
    """The gland's syringe label as a PDF at its exact size; each print is counted on the record."""
    with db.write() as session:
        visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
        pdf = pharmacy.print_label(session, viewer.actor, visit, gland, request.app.state.settings.secret_key)
    return Response(pdf, media_type="application/pdf",
                    headers={"content-disposition": f'inline; filename="syringe-{study}-{number}-T{treatment}-'
                                                    f'{gland}.pdf"'.lower()})
