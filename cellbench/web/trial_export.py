"""Downloads for the trial database: the study's blinded trial events as CDISC ODM or CSV, for the
investigator and the monitor (trial_export). The unblinded variant is the statistician's, on the
study data page (web/study_data.py), because it reads the sealed compartment and no page a blinded
role uses may reach it."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from .. import trial_export
from ..db import Database
from ..deps import Viewer, get_db, require

router = APIRouter(prefix="/trial-export", include_in_schema=False)
exporters = require(*trial_export.EXPORTERS)


def download(export: trial_export.ExportFile) -> Response:
    return Response(export.content, media_type=export.media_type,
                    headers={"content-disposition": export.disposition})


@router.get("/{study}/{fmt}")
def blinded(study: str, fmt: str, viewer: Viewer = Depends(exporters), db: Database = Depends(get_db)):
    with db.write() as session:  # the download is audited
        export = trial_export.blinded_export(session, viewer.actor, study, fmt)
    return download(export)
