"""JSON API's downloads for the trial database: the study's blinded trial events as CDISC ODM 1.3.2
(`odm`) or CSV (`csv`), for the investigator and the monitor, audited. The unblinded variant is
under /api/v1/study-data (api/study_data.py), the statistician's, after the study unblinding."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from .. import trial_export
from ..db import Database
from ..deps import Viewer, get_db, require

router = APIRouter(prefix="/api/v1", tags=["trial database export"])
exporters = require(*trial_export.EXPORTERS)
FILES: dict[int | str, dict[str, Any]] = {200: {"content": {"application/xml": {}, "text/csv": {}},
               "description": "ODM 1.3.2 Snapshot (xml) or one row per event (csv)"}}


def download(export: trial_export.ExportFile) -> Response:
    return Response(export.content, media_type=export.media_type,
                    headers={"content-disposition": export.disposition})


@router.get("/trial-export/{study}/{fmt}", response_class=Response, responses=FILES)
def blinded(study: str, fmt: str, viewer: Viewer = Depends(exporters), db: Database = Depends(get_db)):
    """The study's blinded trial events (`fmt`: odm or csv); a site role's file holds its own sites."""
    with db.write() as session:
        export = trial_export.blinded_export(session, viewer.actor, study, fmt)
    return download(export)
