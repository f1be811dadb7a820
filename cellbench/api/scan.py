"""JSON API: the scan endpoint (a label code or a kit number in, a verdict out)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from .. import kits, scanning
from ..db import Database
from ..deps import Viewer, get_db, require

router = APIRouter(prefix="/api/v1", tags=["scan"])


class ScanIn(BaseModel):
    code: str = Field(description="The label's QR payload as scanned, or a kit number typed by hand")
    station: str = Field(default="", max_length=200, description="Where the scan happened, e.g. 'RH-ENT pharmacy'")


class VerdictOut(BaseModel):
    ok: bool
    kit_number: str
    state: str
    state_label: str
    blinded_lot: str | None
    expiry: str | None
    location: str
    next_step: str


@router.post("/scan", response_model=VerdictOut)
def scan(body: ScanIn, request: Request, viewer: Viewer = Depends(require(*kits.READERS)),
         db: Database = Depends(get_db)):
    with db.write() as session:
        verdict = scanning.scan(session, viewer.actor, body.code, request.app.state.settings.secret_key,
                                station=body.station)
    return verdict.as_json()
