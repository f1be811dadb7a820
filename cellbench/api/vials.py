"""JSON API for a lot's vials: the reconciliation (filled = placed + QC + retained + destroyed) and
the fate of one vial by its code, for scanners and LIMS. A vial has one fate: a second is refused
(409), and two callers at the same moment get one success and one conflict."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import lots
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..lots import vials

router = APIRouter(prefix="/api/v1", tags=["batch record"])


class VialOut(BaseModel):
    code: str
    fate: str = Field(description="placed in storage, pulled for QC, retained sample, destroyed, "
                                  "placed, now in a kit, or no fate yet")
    storage_position: str | None
    note: str | None = Field(description="why it was destroyed, or where the retained sample is kept")
    recorded_at: datetime | None


class VialsOut(BaseModel):
    lot: str
    filled: int
    placed: int
    pulled_for_qc: int
    retained: int
    destroyed: int
    without_fate: list[str]
    free_for_kits: int
    reconciled: bool
    vials: list[VialOut]


class Fate(BaseModel):
    fate: str = Field(description="qc (pulled for QC), retained (retained sample) or destroyed; placement is "
                                  "recorded by the storage step's entry")
    reason: str | None = Field(None, description="why it was destroyed (required), or where it is retained")


def vials_out(session: Session, lot) -> VialsOut:
    rec = lots.reconcile(session, lot)
    return VialsOut(lot=lot.number, filled=rec.filled, placed=rec.placed, pulled_for_qc=rec.qc,
                    retained=rec.retained, destroyed=rec.destroyed, without_fate=rec.without_fate,
                    free_for_kits=rec.free, reconciled=rec.reconciled,
                    vials=[VialOut(code=v.code, fate=vials.words(v.state), storage_position=v.storage_position,
                                   note=v.fate_note, recorded_at=v.fate_at) for v in lots.vials_of(session, lot)])


@router.get("/lots/{number}/vials", response_model=VialsOut)
def lot_vials(number: str, viewer: Viewer = Depends(require(*lots.READERS)),
              session: Session = Depends(read_session)):
    return vials_out(session, lots.by_number(session, number))


@router.post("/lots/{number}/vials/{code}/fate", response_model=VialsOut)
def record_fate(number: str, code: str, body: Fate, viewer: Viewer = Depends(require(*vials.RECORDERS)),
                db: Database = Depends(get_db)):
    with db.write() as session:
        lot = lots.by_number(session, number)
        lots.record_fate(session, viewer.actor, lot, code, body.fate, body.reason)
        return vials_out(session, lot)
