"""JSON API: the monitor's signed verification of a site's accountability figures (source data
verification), and where a site's verification stands. Blinded figures only (accountability/verification.py)."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import accountability, studies
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..models import Meaning

router = APIRouter(prefix="/api/v1", tags=["accountability and destruction"])
readers = require(*accountability.READERS)


class VerificationOut(BaseModel):
    sequence: int
    signer_name: str | None
    meaning: Meaning | None
    at: datetime
    figures_hash: str
    as_now: bool = Field(description="Whether the site's figures now are those this verification signed")
    comment: str | None


class StandingOut(BaseModel):
    study: str
    site: str
    status: str = Field(description="not verified | verified | changed since verification")
    figures: dict[str, dict[str, int]] = Field(description="Blinded lot -> kits by category, as the page shows them")
    figures_hash: str = Field(description="Send it back to sign these figures")
    next_sequence: int = Field(description="Send it back: the number of the verification you sign")
    verifications: list[VerificationOut]


class VerifyIn(BaseModel):
    study: str
    site: str
    figures_hash: str = Field(description="The hash of the figures you verified, as read from this API")
    sequence: int = Field(description="next_sequence as read: a second submission of the same visit conflicts")
    comment: str | None = None
    password: str = Field(description="The monitor's password: the verification is signed (meaning verified)")


def _out(now: accountability.Standing) -> StandingOut:
    return StandingOut(study=now.study.code, site=now.site.code, status=now.status, figures=now.figures,
                       figures_hash=now.figures_hash, next_sequence=now.next_sequence,
                       verifications=[VerificationOut(sequence=v.sequence, signer_name=sig.signer_name if sig else None,
                                                      meaning=Meaning(sig.meaning) if sig else None, at=v.at,
                                                      figures_hash=v.figures_hash, as_now=now.matches(v),
                                                      comment=v.comment) for v, sig in now.history])


def _read(session: Session, viewer: Viewer, study_code: str, site_code: str) -> StandingOut:
    study = studies.by_code(session, study_code)
    site = accountability.verification.site_of(session, study, site_code, reader=viewer.actor)
    return _out(accountability.standing(session, study, site))


@router.get("/accountability/verifications", response_model=StandingOut)
def standing(study: str, site: str, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    return _read(session, viewer, study, site)


@router.post("/accountability/verifications", response_model=StandingOut, status_code=201)
def verify(body: VerifyIn, viewer: Viewer = Depends(require(*accountability.VERIFIERS)),
           db: Database = Depends(get_db)):
    with db.write() as session:
        accountability.verify_by_code(session, session.merge(viewer.user), body.password, body.study, body.site,
                                      seen_hash=body.figures_hash, sequence=body.sequence, comment=body.comment)
    with db.read() as session:  # the standing as committed, the new verification first
        return _read(session, viewer, body.study, body.site)
