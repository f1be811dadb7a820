"""JSON API: where each study's data stand (database lock, study unblinding, who signed when and
why), the two signed moves for the sponsor's representative, and the statistician's CSV exports of
the arms once the study is unblinded. Unblinded roles only (study_data.py)."""
from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from fastapi import APIRouter, Depends
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import sealed, studies, study_data
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..models import Meaning, Signature
from ..trial_export.exports import opened
from ..trial_export.unblinded import unblinded_export
from .trial_export import FILES

router = APIRouter(prefix="/api/v1", tags=["study unblinding"])
readers = require(*study_data.READERS)
exporters = require(*study_data.EXPORTERS)
CSV = {"description": "CSV; a cell that would start a spreadsheet formula is prefixed with '",
       "content": {"text/csv": {}}}


class SignatureOut(BaseModel):
    signer_name: str
    at: datetime
    meaning: Meaning
    content_hash: str


class StandingOut(BaseModel):
    study: str
    state: study_data.DataState
    locked: SignatureOut | None
    participants_at_lock: int | None
    randomised_at_lock: int | None
    unblinded: SignatureOut | None
    unblinding_reason: str | None


class LockIn(BaseModel):
    password: str = Field(description="Your password: re-authentication, and the signature 'locked'")


class UnblindIn(BaseModel):
    reason: str = Field(description="Why the study is unblinded now (required)")
    password: str = Field(description="Your password: re-authentication, and the signature 'unblinded'")


def _sig(sig: Signature | None) -> SignatureOut | None:
    return SignatureOut(signer_name=sig.signer_name, at=sig.at, meaning=Meaning(sig.meaning),
                        content_hash=sig.content_hash) if sig else None


def _out(s: study_data.Standing) -> StandingOut:
    lock = s.lock
    return StandingOut(study=s.study.code, state=s.state, locked=_sig(s.lock_signature),
                       participants_at_lock=lock.participants if lock else None,
                       randomised_at_lock=lock.randomised if lock else None, unblinded=_sig(s.unblinding_signature),
                       unblinding_reason=lock.unblinding_reason if lock else None)


@router.get("/study-data", response_model=list[StandingOut])
def overview(viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    return [_out(s) for s in study_data.overview(session)]


@router.post("/study-data/{study}/lock", response_model=StandingOut)
def lock(study: str, body: LockIn, viewer: Viewer = Depends(require(*study_data.SPONSOR)),
         db: Database = Depends(get_db)):
    with db.write() as session:
        row = study_data.move(session, session.merge(viewer.user), study, "lock", body.password)
        return _out(study_data.standing(session, studies.by_id(session, row.study_id)))


@router.post("/study-data/{study}/unblind", response_model=StandingOut)
def unblind(study: str, body: UnblindIn, viewer: Viewer = Depends(require(*study_data.SPONSOR)),
            db: Database = Depends(get_db)):
    with db.write() as session:
        row = study_data.move(session, session.merge(viewer.user), study, "unblind", body.password, body.reason)
        return _out(study_data.standing(session, studies.by_id(session, row.study_id)))


def _csv(db: Database, viewer: Viewer, study: str, kind: str, name: str) -> Response:
    with db.write() as session:  # the export is a logged read of the compartment
        text = sealed.export_lists(session, viewer.actor, studies.by_code(session, study), kind)
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{quote(study)}-{name}.csv"'})


@router.get("/study-data/{study}/randomisation.csv", response_class=Response, responses={200: CSV})
def randomisation_csv(study: str, viewer: Viewer = Depends(exporters), db: Database = Depends(get_db)):
    """participant_number, arm, block, position, list_version: every sealed randomisation list."""
    return _csv(db, viewer, study, "randomisation", "randomisation")


@router.get("/study-data/{study}/kits.csv", response_class=Response, responses={200: CSV})
def kits_csv(study: str, viewer: Viewer = Depends(exporters), db: Database = Depends(get_db)):
    """kit_number, arm, blinded_lot, state: every sealed kit list."""
    return _csv(db, viewer, study, "kit", "kits")


def _trial_events(db: Database, viewer: Viewer, study: str, fmt: str) -> Response:
    """The trial database export with each participant's and kit's arm (trial_export.unblinded): the
    statistician's, after the sponsor's database lock and study unblinding."""
    export, pieces = opened(  # a logged read of the compartment and an audited download; then the file streamed
        db, lambda session, reading: unblinded_export(session, viewer.actor, study, fmt, reading))
    return StreamingResponse(pieces, media_type=export.media_type, headers=export.headers)


@router.get("/study-data/{study}/trial-events.xml", response_class=Response, responses=FILES)
def unblinded_trial_events_odm(study: str, viewer: Viewer = Depends(exporters), db: Database = Depends(get_db)):
    return _trial_events(db, viewer, study, "odm")


@router.get("/study-data/{study}/trial-events.csv", response_class=Response, responses=FILES)
def unblinded_trial_events_csv(study: str, viewer: Viewer = Depends(exporters), db: Database = Depends(get_db)):
    return _trial_events(db, viewer, study, "csv")
