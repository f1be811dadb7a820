"""JSON API: deviations (list, raise by hand, assess, close with QA's signature)."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import deviations
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..models import Deviation, DeviationState, Meaning, Signature
from ..pagination import Ask
from . import paging

router = APIRouter(prefix="/api/v1", tags=["deviations"])
readers = require(*deviations.READERS)
assessors = require(*deviations.TRANSITIONS["assess"].roles)
closers = require(*deviations.TRANSITIONS["close"].roles)


class SignatureOut(BaseModel):
    signer_name: str
    at: datetime
    meaning: Meaning
    content_hash: str


class DeviationOut(BaseModel):
    number: str
    lot_number: str | None
    step_code: str | None
    origin: str
    severity: str
    description: str
    blinded_summary: str | None
    impact_assessment: str | None
    capa_reference: str | None
    state: DeviationState
    raised_by: str | None
    raised_at: datetime
    closure: SignatureOut | None
    allowed_actions: list[str] = Field(description="What the transition table lets the caller do now")


def deviation_out(session: Session, deviation: Deviation, viewer: Viewer,
                  around: deviations.Around | None = None) -> DeviationOut:
    """One deviation as the API shows it; a list passes what it read for all its rows at once."""
    near = around or deviations.around(session, [deviation])
    sig: Signature | None = near.closure(deviation)
    return DeviationOut(
        number=deviation.number, lot_number=near.lot_number(deviation), step_code=deviation.step_code,
        origin=deviation.origin, severity=deviation.severity, description=deviation.description,
        blinded_summary=deviation.blinded_summary, impact_assessment=deviation.impact_assessment,
        capa_reference=deviation.capa_reference, state=DeviationState(deviation.state),
        raised_by=near.raiser(deviation), raised_at=deviation.raised_at,
        closure=SignatureOut(signer_name=sig.signer_name, at=sig.at, meaning=Meaning(sig.meaning),
                             content_hash=sig.content_hash) if sig else None,
        allowed_actions=deviations.allowed_actions(deviation, viewer.actor))


class NewDeviation(BaseModel):
    lot_number: str | None = None
    step_code: str | None = None
    severity: str = Field("minor", description="minor | major | critical")
    description: str
    blinded_summary: str | None = Field(None, description="The only text blinded users may see (generic if empty)")


class Assessment(BaseModel):
    impact_assessment: str
    severity: str | None = None
    capa_reference: str | None = None
    blinded_summary: str | None = None
    reason: str | None = Field(None, description="Required when changing the severity or anything already recorded")


class Closure(BaseModel):
    password: str = Field(description="The QA signer's password: closing signs the deviation (meaning approved)")


DeviationPageOut = paging.page_model("DeviationPageOut", "deviations", DeviationOut,
                                     "Most severe first, then oldest first")


@router.get("/deviations", response_model=DeviationPageOut)
def list_deviations(state: DeviationState | None = None, lot: str | None = None, ask: Ask = Depends(paging.ask),
                    viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    of_lot = deviations.lot_by_number(session, lot, field="lot")
    found = deviations.deviation_page(session, ask, states={state} if state else None,
                                      lot_id=of_lot.id if of_lot else None)
    near = deviations.around(session, found.rows)
    return DeviationPageOut(deviations=[deviation_out(session, d, viewer, near) for d in found.rows], next=found.next)


@router.post("/deviations", response_model=DeviationOut, status_code=201)
def raise_deviation(body: NewDeviation, viewer: Viewer = Depends(require(*deviations.RAISERS)),
                    db: Database = Depends(get_db)):
    with db.write() as session:
        lot = deviations.lot_by_number(session, body.lot_number)
        deviation = deviations.raise_deviation(session, viewer.actor, lot_id=lot.id if lot else None,
                                               step_code=body.step_code, origin="manual", severity=body.severity,
                                               description=body.description, blinded_summary=body.blinded_summary)
        return deviation_out(session, deviation, viewer)


@router.get("/deviations/{number}", response_model=DeviationOut)
def get_deviation(number: str, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    return deviation_out(session, deviations.by_number(session, number), viewer)


@router.post("/deviations/{number}/assess", response_model=DeviationOut)
def assess_deviation(number: str, body: Assessment, viewer: Viewer = Depends(assessors),
                     db: Database = Depends(get_db)):
    with db.write() as session:
        deviation = deviations.by_number(session, number)
        deviations.assess_deviation(session, viewer.actor, deviation, **body.model_dump())
        return deviation_out(session, deviation, viewer)


@router.post("/deviations/{number}/close", response_model=DeviationOut)
def close_deviation(number: str, body: Closure, viewer: Viewer = Depends(closers),
                    db: Database = Depends(get_db)):
    with db.write() as session:
        deviation = deviations.by_number(session, number)
        deviations.close_deviation(session, session.merge(viewer.user), body.password, deviation)
        return deviation_out(session, deviation, viewer)
