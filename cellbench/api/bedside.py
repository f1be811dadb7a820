"""JSON API: the bedside scan (the participant's card, then each syringe label) for a handheld
scanner's app. The same service as the page; answers and refusals name only what was scanned,
the same for both arms."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from .. import pharmacy
from ..db import Database
from ..deps import Viewer, get_db, require

router = APIRouter(prefix="/api/v1", tags=["pharmacy"])


class ScanIn(BaseModel):
    code: str = Field(description="The participant card's or the syringe label's QR code, as scanned")


class ScanOut(BaseModel):
    kind: str = Field(description="card or syringe")
    message: str
    dose: int | None = Field(description="The syringe's dose (1 = the study's first gland); none for a card")


@router.post("/participants/{study}/{number}/visits/{treatment}/bedside-scans", response_model=ScanOut,
             status_code=201)
def bedside_scan(study: str, number: str, treatment: int, body: ScanIn, request: Request,
                 viewer: Viewer = Depends(require(*pharmacy.ADMINISTRATORS)), db: Database = Depends(get_db)):
    """A scan that matches this visit: 201. One that does not: 422, and the refusal is recorded in
    the audit trail although nothing else is."""
    with db.write() as session:
        visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
        result = pharmacy.bedside_scan(session, viewer.actor, visit, body.code, request.app.state.settings.secret_key)
        return ScanOut(kind=result.kind, message=result.message, dose=result.dose)
