"""JSON API for unblinded roles only: what an emergency unblinding reveals about other participants
(block-mates in the randomisation list, shared blinded lots and shipments, this participant's own
kits), and sending it to the sponsor's emergency contact."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from .. import studies, unblinding_impact
from ..db import Database
from ..deps import Viewer, get_db, require

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


class ImpactOut(BaseModel):
    study: str
    participant: str
    findings: list[FindingOut] = Field(description="Participants whose arm is now certain or more probable")
    kits: list[KitOut] = Field(description="This participant's own kits, of the revealed arm")
    notes: list[str] = Field(description="What was looked at and reveals nothing, and why")


class SentOut(BaseModel):
    notification: int
    to_address: str
    subject: str
    created_at: datetime


@router.get("/unblindings/{study_code}/{participant}/impact", response_model=ImpactOut)
def impact(study_code: str, participant: str, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    with db.write() as session:  # the sealed reads are logged
        return unblinding_impact.assess(session, viewer.actor, studies.by_code(session, study_code),
                                        participant).as_json()


@router.post("/unblindings/{study_code}/{participant}/impact", response_model=SentOut, status_code=201)
def send(study_code: str, participant: str, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    with db.write() as session:
        note = unblinding_impact.send(session, viewer.actor, studies.by_code(session, study_code), participant)
        return SentOut(notification=note.id, to_address=note.to_address, subject=note.subject,
                       created_at=note.created_at)
