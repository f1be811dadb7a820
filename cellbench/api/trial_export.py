"""JSON API's downloads for the trial database: the study's blinded trial events as CDISC ODM 1.3.2
(.xml) or CSV, for the investigator and the monitor, audited. The unblinded variant is under
/api/v1/study-data (api/study_data.py), the statistician's, after the study unblinding."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response, StreamingResponse

from .. import trial_export
from ..db import Database
from ..deps import Viewer, get_db, require

router = APIRouter(prefix="/api/v1", tags=["trial database export"])
exporters = require(*trial_export.EXPORTERS)
FILES: dict[int | str, dict[str, Any]] = {200: {"content": {"application/xml": {}, "text/csv": {}},
                                                "description": "ODM 1.3.2 Snapshot (.xml) or one row per event (.csv)"}}


def _blinded(db: Database, viewer: Viewer, study: str, fmt: str) -> Response:
    export, pieces = trial_export.opened(  # refused or audited first; then read as it is sent
        db, lambda session, reading: trial_export.blinded_export(session, viewer.actor, study, fmt, reading))
    return StreamingResponse(pieces, media_type=export.media_type, headers=export.headers)


@router.get("/trial-export/{study}.xml", response_class=Response, responses=FILES)
def blinded_odm(study: str, viewer: Viewer = Depends(exporters), db: Database = Depends(get_db)):
    """The study's blinded trial events as ODM; a site role's file holds its own sites' participants."""
    return _blinded(db, viewer, study, "odm")


@router.get("/trial-export/{study}.csv", response_class=Response, responses=FILES)
def blinded_csv(study: str, viewer: Viewer = Depends(exporters), db: Database = Depends(get_db)):
    """The study's blinded trial events as CSV, one row per event."""
    return _blinded(db, viewer, study, "csv")
