"""JSON API: kits and blinded lots as everyone sees them (the same for both arms), and label look-up.

`POST /api/v1/kits/scan` only finds the kit a label or typed number stands for; the scan
station's `POST /api/v1/scan` is the one that records a sighting.
"""
from __future__ import annotations

from datetime import date, datetime

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import kits, studies
from ..deps import Viewer, read_session, require
from ..models import Kit, KitState
from ..pagination import Ask
from . import paging
from .codes import CODE_DESCRIPTION, ManualEntryIn

router = APIRouter(prefix="/api/v1", tags=["kits"])
readers = require(*kits.READERS)


class EventOut(BaseModel):
    at: datetime
    who: str
    action: str
    field: str | None
    old_value: str | None
    new_value: str | None
    reason: str | None


class KitOut(BaseModel):
    kit_number: str
    study: str
    blinded_lot: str | None
    expiry: date | None = Field(description="The blinded lot's expiry: the earliest of everything in it")
    state: KitState
    state_label: str = Field(description="The state as blinded users read it")
    location: str
    kit_version: int = Field(description="Changes with every move of the kit (for conflict checks)")


class KitDetailOut(KitOut):
    history: list[EventOut] = Field(description="The kit's audit events the caller may see, oldest first")


KitPageOut = paging.page_model("KitPageOut", "kits", KitOut,
                                     "In kit-number order (random numbers: the order says nothing of arms)")


class CodeIn(ManualEntryIn):
    code: str = Field(description=CODE_DESCRIPTION)


class BlindedLotOut(BaseModel):
    code: str
    study: str
    expiry: date
    kits: int
    kits_by_state: dict[KitState, int]


def kit_out(session: Session, kit: Kit) -> KitOut:
    return KitOut(**kits.view(session, kit).as_json())


def kit_detail(session: Session, viewer: Viewer, kit: Kit) -> KitDetailOut:
    # Whole seconds, as the pages show them: kits packaged in one run differ by microseconds that
    # follow the work done per kit, and that work is not the same for both arms.
    events = [EventOut(at=e.at.replace(microsecond=0), who=e.user_name, action=e.action, field=e.field,
                       old_value=e.old_value, new_value=e.new_value, reason=e.reason)
              for e in kits.history(session, viewer.actor, kit)]
    return KitDetailOut(**kits.view(session, kit).as_json(), history=events)


@router.get("/kits", response_model=KitPageOut)
def list_kits(study: str | None = None, blinded_lot: str | None = None, state: KitState | None = None,
              ask: Ask = Depends(paging.ask), viewer: Viewer = Depends(readers),
              session: Session = Depends(read_session)):
    found = kits.kits(session, ask, study=studies.by_code(session, study) if study else None,
                      blinded_lot=kits.blinded_lot_by_code(session, blinded_lot) if blinded_lot else None,
                      state=state.value if state else None, reader=viewer.actor)
    return KitPageOut(kits=[KitOut(**v.as_json()) for v in kits.views(session, found.rows)], next=found.next)


# Declared before /kits/{number}: "scan" is not a kit number.
@router.post("/kits/scan", response_model=KitDetailOut)
def scan_kit(body: CodeIn, request: Request, viewer: Viewer = Depends(readers),
             session: Session = Depends(read_session)):
    """The kit a scanned label code (signature checked), or a kit number marked as typed by hand with a
    reason, stands for (a lookup: nothing is recorded); a bare kit number, a forged or altered label, a
    wrong check character or an unknown kit is refused with field `code`."""
    return kit_detail(session, viewer, kits.scan_code(session, body.code, request.app.state.settings.secret_key,
                                                          reader=viewer.actor, manual=body.manual,
                                                          reason=body.manual_reason))


@router.get("/kits/{number}", response_model=KitDetailOut)
def get_kit(number: str, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    return kit_detail(session, viewer, kits.by_number(session, number, field="number", reader=viewer.actor))


@router.get("/blinded-lots/{code}", response_model=BlindedLotOut)
def get_blinded_lot(code: str, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    blinded = kits.blinded_lot_by_code(session, code, field="code")
    counts = kits.counts_by_state(session, blinded_lot=blinded, reader=viewer.actor)
    return BlindedLotOut(code=blinded.code, study=studies.by_id(session, blinded.study_id).code, expiry=blinded.expiry,
                         kits=sum(counts.values()), kits_by_state=counts)
