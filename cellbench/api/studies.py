"""JSON API: studies as the protocol states them, their sites and blinded lots, and the label QR
public key. Arms by name and ratio only: never which kit or participant is on which."""
from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import kits, qrpayload, studies
from ..deps import Viewer, read_session, require
from ..models import KitState, Study
from ..pagination import Ask
from . import paging

router = APIRouter(prefix="/api/v1", tags=["studies"])
readers = require(*studies.READERS)


class ArmOut(BaseModel):
    code: str
    name: str
    ratio: int


class ScheduleOut(BaseModel):
    treatments: int
    interval_days: int
    window_days: int
    doses_per_treatment: int
    dose_sites: list[str]


class ContactOut(BaseModel):
    name: str
    address: str | None = None
    phone: str
    email: str | None = None


class SiteOut(BaseModel):
    code: str
    name: str
    address: str
    investigator: str


class BlindedLotSummary(BaseModel):
    code: str
    expiry: date
    kits: int
    kits_by_state: dict[KitState, int]


class StudyOut(BaseModel):
    code: str
    eu_ct_number: str
    title: str
    short_title: str
    target_enrolment: int
    sponsor: ContactOut
    emergency: ContactOut
    arms: list[ArmOut]
    ratio: str = Field(description="Allocation ratio, arms in the order listed")
    schedule: ScheduleOut
    label_languages: list[str]


class StudyDetailOut(StudyOut):
    sites: list[SiteOut]
    blinded_lots: list[BlindedLotSummary] = Field(description="A page of the blinded lots, newest first")
    next: str | None = Field(description="The cursor of the next page of blinded lots (pass it as `after`); "
                                         "null on the last page")
    blinded_lot_count: int = Field(description="How many blinded lots the study has (all pages)")
    kits_by_state: dict[KitState, int] = Field(description="The study's kits by state, every blinded lot's")
    label_public_key: str = Field(description="The key that checks label QR signatures, for the pharmacy manual")


def study_out(study: Study) -> dict:
    d = studies.definition(study)
    return {
        "code": study.code, "eu_ct_number": d.study.eu_ct_number, "title": d.study.title,
        "short_title": d.study.short_title,
        "target_enrolment": d.study.target_enrolment,
        "sponsor": ContactOut(name=d.sponsor.name, address=d.sponsor.address, phone=d.sponsor.phone),
        "emergency": ContactOut(name=d.emergency.contact, phone=d.emergency.phone, email=d.emergency.email),
        "arms": [ArmOut(code=a.code, name=a.name, ratio=a.ratio) for a in d.arms], "ratio": d.ratio,
        "schedule": ScheduleOut(**d.schedule.model_dump()), "label_languages": list(d.study.label_languages)}


@router.get("/studies", response_model=list[StudyOut])
def list_studies(viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    return [StudyOut(**study_out(study)) for study in studies.all_studies(session)]


@router.get("/studies/{code}", response_model=StudyDetailOut)
def get_study(code: str, request: Request, ask: Ask = Depends(paging.ask), viewer: Viewer = Depends(readers),
              session: Session = Depends(read_session)):
    """The study as its protocol states it, its sites, and a page of its blinded lots (newest first:
    `after`, `limit`, `next` as every list), with how many there are and the study's kits by state."""
    study = studies.by_code(session, code, field="code")
    # a page of the blinded lots with their kits by state, and the totals over all of them
    found = kits.blinded_lot_page(session, ask, study)
    lots = [BlindedLotSummary(code=blinded.code, expiry=blinded.expiry, kits=total,
                              kits_by_state={state: n for state, _label, n in by_state})
            for blinded, total, by_state in found.page.rows]
    sites = [SiteOut(code=site.code, name=site.name, address=site.address, investigator=link.investigator)
             for site, link in studies.sites_of(session, study)]
    return StudyDetailOut(**study_out(study), sites=sites, blinded_lots=lots, next=found.page.next,
                          blinded_lot_count=found.blinded_lots, kits_by_state=found.kits_by_state,
                          label_public_key=qrpayload.public_key_text(request.app.state.settings.secret_key))
