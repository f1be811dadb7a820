"""JSON API for the batch record: lots, step entries and their values, for instruments and LIMS.

Mutations take `lot_version` (the lot's `row_version` as the caller last read it): a caller acting
on a stale view gets 409, never a duplicate. Omit it to act on the lot as it is now."""
from __future__ import annotations

from datetime import date, datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import lots, release, steps
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..models import Lot, Role
from ..pagination import Ask
from ..specifications import Step
from ..specifications import versions as spec_versions
from . import paging

router = APIRouter(prefix="/api/v1", tags=["batch record"])
reader = require(*lots.READERS)


class ValueOut(BaseModel):
    id: int
    parameter: str
    value: str | None
    unit: str | None
    within_limits: bool | None
    computed: bool
    comment: str | None
    na_reason: str | None
    entered_by: str
    entered_at: datetime
    corrected_by_value: int | None = Field(None, description="set when a correction replaced this value")
    correction_reason: str | None


class EntryOut(BaseModel):
    step: str
    entry: int
    state: str
    values: list[ValueOut]


class LotOut(BaseModel):
    number: str
    product: str
    specification_version: int
    state: str
    expiry: date | None
    lot_version: int
    current_step: str | None
    entries: list[EntryOut] = []


def _summary(session: Session, lot: Lot, current: Step | None) -> LotOut:
    row = lots.spec_of(session, lot)
    return LotOut(number=lot.number, product=row.product_code, specification_version=row.version,
                  state=str(getattr(lot.state, "value", lot.state)), expiry=lot.expiry, lot_version=lot.row_version,
                  current_step=current.code if current else None)


def lot_out(session: Session, lot: Lot, *, detail: bool) -> LotOut:
    by_code = steps.entries_of(session, lot)
    out = _summary(session, lot, steps.current_step(spec_versions.parsed(lots.spec_of(session, lot)), by_code))
    if detail:
        values = steps.values_by_entry(session, [e.id for entries in by_code.values() for e in entries])
        for entries in by_code.values():
            for e in entries:
                out.entries.append(EntryOut(step=e.step_code, entry=e.repeat_index,
                                            state=str(getattr(e.state, "value", e.state)), values=[
                    ValueOut(id=v.id, parameter=v.parameter_code, value=v.value, unit=v.unit,
                             within_limits=v.within_limits, computed=v.computed, comment=v.comment,
                             na_reason=v.na_reason, entered_by=v.entered_by_name, entered_at=v.entered_at,
                             corrected_by_value=v.superseded_by, correction_reason=v.correction_reason)
                    for v in values.get(e.id or 0, [])]))
    return out


class NewLot(BaseModel):
    product: str = Field(description="product code with an effective specification, e.g. asc-cs10")
    donation: str | None = Field(None, description="donation identification, as received (cell products)")


class Version(BaseModel):
    lot_version: int | None = None


class Values(Version):
    values: dict[str, str] = Field(description="parameter code -> value as entered, in the parameter's unit")
    comments: dict[str, str] = {}
    not_applicable: dict[str, str] = Field({}, description="parameter code -> reason")


class Scan(Version):
    scan: str
    override_reason: str | None = Field(None, description="QA only: use a refused material anyway (opens a deviation)")


class Signing(Version):
    password: str


class Correction(Version):
    value: str
    reason: str
    comment: str = ""


class Move(Version):
    reason: str
    password: str | None = None


LotPageOut = paging.page_model("LotPageOut", "lots", LotOut, "Newest first")


@router.get("/lots", response_model=LotPageOut)
def list_lots(state: str | None = None, ask: Ask = Depends(paging.ask), viewer: Viewer = Depends(reader),
              session: Session = Depends(read_session)):
    found = lots.lot_page(session, ask, state)
    current = steps.current_steps(session, found.rows)  # the page's lots at once, not a read per lot
    return LotPageOut(lots=[_summary(session, lot, current.get(lot.id or 0)) for lot in found.rows], next=found.next)


@router.get("/lots/{number}", response_model=LotOut)
def get_lot(number: str, viewer: Viewer = Depends(reader), session: Session = Depends(read_session)):
    return lot_out(session, lots.by_number(session, number), detail=True)


def _act(db: Database, number: str, action) -> LotOut:
    with db.write() as session:
        lot = lots.by_number(session, number)
        action(session, lot)
        return lot_out(session, lot, detail=True)


@router.post("/lots", response_model=LotOut, status_code=201)
def start_lot(body: NewLot, viewer: Viewer = Depends(require(Role.operator)), db: Database = Depends(get_db)):
    with db.write() as session:
        lot = lots.start_lot(session, viewer.actor, body.product, body.donation)
        return lot_out(session, lot, detail=True)


@router.post("/lots/{number}/steps/{step}/entries", response_model=LotOut, status_code=201)
def start_entry(number: str, step: str, body: Version, viewer: Viewer = Depends(require(Role.operator)),
                db: Database = Depends(get_db)):
    return _act(db, number, lambda s, lot: steps.start_entry(s, viewer.actor, lot, step, body.lot_version))


@router.post("/lots/{number}/steps/{step}/entries/{entry}/values", response_model=LotOut)
def record_values(number: str, step: str, entry: int, body: Values, viewer: Viewer = Depends(require(Role.operator)),
                  db: Database = Depends(get_db)):
    codes = set(body.values) | set(body.not_applicable)
    inputs = {c: steps.ValueInput(body.values.get(c, ""), body.comments.get(c, ""), body.not_applicable.get(c, ""))
              for c in codes}
    return _act(db, number, lambda s, lot: steps.record_values(s, viewer.actor, lot, step, entry, inputs,
                                                                 body.lot_version))


@router.post("/lots/{number}/steps/{step}/entries/{entry}/materials", response_model=LotOut)
def record_material(number: str, step: str, entry: int, body: Scan,
                    viewer: Viewer = Depends(require(Role.operator, Role.qa)),
                    db: Database = Depends(get_db)):
    return _act(db, number, lambda s, lot: steps.record_material(s, viewer.actor, lot, step, entry, body.scan,
                                                                   body.lot_version, body.override_reason))


@router.post("/lots/{number}/steps/{step}/entries/{entry}/equipment", response_model=LotOut)
def record_equipment(number: str, step: str, entry: int, body: Scan,
                     viewer: Viewer = Depends(require(Role.operator)), db: Database = Depends(get_db)):
    return _act(db, number, lambda s, lot: steps.record_equipment(s, viewer.actor, lot, step, entry, body.scan,
                                                                    body.lot_version))


@router.post("/lots/{number}/steps/{step}/entries/{entry}/perform", response_model=LotOut,
             description="Sign the entry as performed; the password is checked again (21 CFR 11.200).")
def perform(number: str, step: str, entry: int, body: Signing, viewer: Viewer = Depends(require(Role.operator)),
            db: Database = Depends(get_db)):
    return _act(db, number, lambda s, lot: steps.perform(s, s.merge(viewer.user), body.password, lot, step, entry,
                                                           body.lot_version))


@router.post("/lots/{number}/steps/{step}/entries/{entry}/verify", response_model=LotOut,
             description="Second-person verification: never by the person who performed the step.")
def verify(number: str, step: str, entry: int, body: Signing,
           viewer: Viewer = Depends(require(Role.verifier, Role.operator)), db: Database = Depends(get_db)):
    return _act(db, number, lambda s, lot: steps.verify(s, s.merge(viewer.user), body.password, lot, step, entry,
                                                          body.lot_version))


@router.post("/lots/{number}/values/{value_id}/correction", response_model=LotOut)
def correct(number: str, value_id: int, body: Correction, viewer: Viewer = Depends(require(Role.operator, Role.qa)),
            db: Database = Depends(get_db)):
    return _act(db, number, lambda s, lot: steps.correct_value(s, viewer.actor, lot, value_id, body.value,
                                                                 body.reason, body.comment, body.lot_version))


@router.post("/lots/{number}/moves/{move}", response_model=LotOut,
             description="`move` is one of the lot's moves (hold, resume, abort; certification and release "
                         "have their own endpoints).")
def move_lot(number: str, move: str, body: Move, viewer: Viewer = Depends(require(Role.operator, Role.qa)),
             db: Database = Depends(get_db)):
    return _act(db, number, lambda s, lot: release.move_lot(s, s.merge(viewer.user), lot, move, body.reason,
                                                       password=body.password, seen_version=body.lot_version))
