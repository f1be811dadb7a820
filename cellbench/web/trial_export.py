"""Downloads for the trial database: the study's blinded trial events as CDISC ODM (.xml) or CSV,
for the investigator and the monitor (trial_export). The unblinded variant is the statistician's,
on the study data page (web/study_data.py), because it reads the sealed compartment and no page a
blinded role uses may reach it."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response, StreamingResponse

from .. import trial_export
from ..db import Database
from ..deps import Viewer, get_db, require

router = APIRouter(prefix="/trial-export", include_in_schema=False)
exporters = require(*trial_export.EXPORTERS)


def _blinded(db: Database, viewer: Viewer, study: str, fmt: str) -> Response:
    export, pieces = trial_export.opened(  # refused or audited first; then read as it is sent
        db, lambda session, reading: trial_export.blinded_export(session, viewer.actor, study, fmt, reading))
    return StreamingResponse(pieces, media_type=export.media_type, headers=export.headers)


@router.get("/{study}.xml")
def blinded_odm(study: str, viewer: Viewer = Depends(exporters), db: Database = Depends(get_db)):
    return _blinded(db, viewer, study, "odm")


@router.get("/{study}.csv")
def blinded_csv(study: str, viewer: Viewer = Depends(exporters), db: Database = Depends(get_db)):
    return _blinded(db, viewer, study, "csv")
