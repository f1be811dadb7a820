"""JSON API: the monitor's signed verification of a site's accountability figures (source data
verification), and where a site's verification stands. Blinded figures only (accountability/verification.py).

A read answers from the site's fingerprint of its figures in a few rows, with one page of the
figures (a blinded lot a row, thousands after some years); what the monitor signs is still the
figures whole, read and hashed at the signing."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import accountability, studies
from ..accountability import verification
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..models import Meaning
from ..pagination import Ask
from . import paging

router = APIRouter(prefix="/api/v1", tags=["accountability and destruction"])
readers = require(*accountability.READERS)
FIRST_PAGE = 100  # the figures' page a signing answers with: a GET's without `limit`


class VerificationOut(BaseModel):
    sequence: int
    signer_name: str | None
    meaning: Meaning | None
    at: datetime
    figures_hash: str = Field(description="SHA-256 of the figures this verification signed")
    as_now: bool = Field(description="Whether the site's figures now are those this verification signed")
    comment: str | None


class StandingOut(BaseModel):
    study: str
    site: str
    status: str = Field(description="not verified | verified | changed since verification")
    figures: dict[str, dict[str, int]] = Field(
        description="One page of the figures: blinded lot -> kits by category, newest blinded lot first (`after`, "
                    "`limit`). (Before issue 18 every blinded lot was given at once.)")
    figures_next: str | None = Field(
        description="The cursor of the figures' next page (pass it as `after`); null on the last page. It holds for "
                    "the figures it was read with: once they change it is refused (400, field `after`), so every "
                    "page of one walk is of the same figures.")
    blinded_lot_count: int = Field(description="How many blinded lots the figures hold, over all pages")
    figures_fingerprint: str = Field(
        description="Send it back to sign these figures (the same on every page of them; it changes when they do). "
                    "Replaces the hash of the figures now, which would need every blinded lot read.")
    next_sequence: int = Field(description="Send it back: the number of the verification you sign")
    verifications: list[VerificationOut]


class VerifyIn(BaseModel):
    study: str
    site: str
    figures_fingerprint: str | None = Field(None, description="figures_fingerprint as read with the figures you "
                                                              "verified: if they changed since, 409 naming it")
    figures_hash: str | None = Field(None, description="Before issue 18: the SHA-256 of the figures as read then "
                                                       "(still accepted; send figures_fingerprint instead)")
    sequence: int = Field(description="next_sequence as read: a second submission of the same visit conflicts")
    comment: str | None = None
    password: str = Field(description="The monitor's password: the verification is signed (meaning verified)")


def _out(now: verification.Glance, page: verification.FiguresPage) -> StandingOut:
    return StandingOut(study=now.study.code, site=now.site.code, status=now.status, figures=page.figures,
                       figures_next=page.next, blinded_lot_count=page.blinded_lots,
                       figures_fingerprint=now.figures_fingerprint, next_sequence=now.next_sequence,
                       verifications=[VerificationOut(sequence=v.sequence, signer_name=sig.signer_name if sig else None,
                                                      meaning=Meaning(sig.meaning) if sig else None, at=v.at,
                                                      figures_hash=v.figures_hash, as_now=now.matches(v),
                                                      comment=v.comment) for v, sig in now.history])


def _read(session: Session, viewer: Viewer, study_code: str, site_code: str, ask: Ask) -> StandingOut:
    study = studies.by_code(session, study_code)
    now = verification.glance(session, study, verification.site_of(session, study, site_code, reader=viewer.actor))
    return _out(now, verification.figures_page(session, now, ask))


@router.get("/accountability/verifications", response_model=StandingOut)
def standing(study: str, site: str, ask: Ask = Depends(paging.ask), viewer: Viewer = Depends(readers),
             session: Session = Depends(read_session)):
    """Where the site's verification stands, with a page of its figures (`figures_next` for the next)."""
    return _read(session, viewer, study, site, ask)


@router.post("/accountability/verifications", response_model=StandingOut, status_code=201)
def verify(request: Request, body: VerifyIn, viewer: Viewer = Depends(require(*accountability.VERIFIERS)),
           db: Database = Depends(get_db)):
    with db.write() as session:
        accountability.verify_by_code(session, session.merge(viewer.user), body.password, body.study, body.site,
                                      seen_fingerprint=body.figures_fingerprint, seen_hash=body.figures_hash,
                                      sequence=body.sequence, comment=body.comment)
    first = Ask(None, request.app.state.settings.secret_key, FIRST_PAGE)
    with db.read() as session:  # the standing as committed, the new verification first
        return _read(session, viewer, body.study, body.site, first)
