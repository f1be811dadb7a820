"""JSON API for unblinded roles only: what an emergency unblinding reveals about other participants
(block-mates in the randomisation list, shared blinded lots and shipments, this participant's own
kits), and sending it to the sponsor's emergency contact."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from .. import studies, unblinding_impact
from ..db import Database
from ..deps import Viewer, get_db, require
from ..pagination import Ask
from .paging import AFTER, NEXT

router = APIRouter(prefix="/api/v1", tags=["emergency unblinding"])
readers = require(*unblinding_impact.READERS)


class FindingOut(BaseModel):
    participant: str
    site: str = Field(description="The participant's site, or 'not yet randomised' for a list line still free")
    strength: str = Field(description="certain | more probable")
    why: list[str]


class KitOut(BaseModel):
    kit: str
    strength: str
    why: str


class CountsOut(BaseModel):
    block: int = Field(description="Open lines of the participant's randomisation block whose arm is now certain or "
                                   "more probable (0 when the arms known there are in the block's ratio)")
    shipment: int = Field(description="Participants given a kit from a shipment of this participant's kits that "
                                      "holds kits of one arm only")
    blinded_lot: int = Field(description="Participants given a kit from a blinded lot of this participant's kits that "
                                         "holds kits of one arm only")
    own_kits: int = Field(description="Participants later given one of this participant's own kits")
    total: int = Field(description="Participants in `findings` over all pages (one found by several channels "
                                   "counts once)")


class ImpactOut(BaseModel):
    study: str
    participant: str
    counts: CountsOut = Field(description="Participants found, per channel and in all, in full on every page")
    findings: list[FindingOut] = Field(
        description=f"One page ({unblinding_impact.PAGE_SIZE} at most) of the participants whose arm is now certain "
                    "or more probable: certain first, then by participant number; follow `next` for the rest")
    next: str | None = Field(description=NEXT)
    kits: list[KitOut] = Field(description="This participant's own kits, of the revealed arm")
    notes: list[str] = Field(description="What was looked at and reveals nothing, and why")


class SentOut(BaseModel):
    notification: int
    to_address: str
    subject: str
    created_at: datetime


@router.get("/unblindings/{study_code}/{participant}/impact", response_model=ImpactOut)
def impact(request: Request, study_code: str, participant: str, after: str | None = Query(None, description=AFTER),
           viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    """One page of what the participant's emergency unblinding reveals: `counts` per channel in full,
    `findings` 50 at most (certain first, then by participant number) and `next`, the cursor of the
    following page. The sponsor's message (POST) holds every finding."""
    ask = Ask(after=after or None, secret=request.app.state.settings.secret_key, size=unblinding_impact.PAGE_SIZE)
    with db.write() as session:  # the sealed reads are logged
        found = unblinding_impact.assess(session, viewer.actor, studies.by_code(session, study_code), participant, ask)
        return unblinding_impact.as_json(found, ask.secret)


@router.post("/unblindings/{study_code}/{participant}/impact", response_model=SentOut, status_code=201)
def send(study_code: str, participant: str, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    with db.write() as session:
        note = unblinding_impact.send(session, viewer.actor, studies.by_code(session, study_code), participant)
        return SentOut(notification=note.id, to_address=note.to_address, subject=note.subject,
                       created_at=note.created_at)
