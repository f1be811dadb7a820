"""Database lock, study unblinding and the statistician's export (study_data.py).

Unblinded roles only: the supply manager signs for the sponsor, the statistician downloads the arms
once the study is unblinded, QA reads who signed what and when. Every blinded role is refused here
(tests/test_sealed.py UNBLINDED_ONLY), since the downloads come from the sealed compartment.
"""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlmodel import Session

from .. import sealed, studies, study_data
from ..db import Database
from ..deps import Viewer, form_by, form_data, form_text, get_db, read_session, require
from ..errors import DomainError
from ..templating import render
from ..trial_export.exports import opened
from ..trial_export.unblinded import unblinded_export
from .home import QueueItem, line_for, work_queue

router = APIRouter(prefix="/study-data", include_in_schema=False)
readers = require(*study_data.READERS)
exporters = require(*study_data.EXPORTERS)
DONE = {"lock": "The database of {} is locked.", "unblind": "{} is unblinded: the statistician may export its arms."}


@work_queue
def _ready(session: Session, viewer: Viewer) -> list[QueueItem]:
    """The statistician's queue: studies unblinded, ready to export; the sponsor's: studies locked,
    awaiting the unblinding. One list page holds every study's actions."""
    if viewer.has(*study_data.EXPORTERS):
        return line_for(study_data.overview(session, study_data.DataState.unblinded),
                        "studies are unblinded, ready for you to export", "study is unblinded, ready for you to export",
                        "/study-data", lambda s: f"/study-data#{s.study.code}")
    if viewer.has(*study_data.SPONSOR):
        return line_for(study_data.overview(session, study_data.DataState.locked),
                        "studies are locked and await the study unblinding",
                        "study is locked and awaits the study unblinding",
                        "/study-data", lambda s: f"/study-data#{s.study.code}")
    return []


def _page(request: Request, session: Session, viewer: Viewer, error: DomainError | None = None,
          typed: dict | None = None) -> Response:
    rows = [(s, study_data.actions_for(s, viewer.roles)) for s in study_data.overview(session)]
    return render(request, "study_data/list.html", status_code=error.status if error else 200, rows=rows,
                  error=error, typed=typed or {}, can_export=viewer.has(*study_data.EXPORTERS))


@router.get("")
def overview_page(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    return _page(request, session, viewer)


@router.post("/{study}/{action}")
def move(request: Request, study: str, action: str, viewer: Viewer = Depends(form_by(*study_data.SPONSOR)),
         db: Database = Depends(get_db), form=Depends(form_data)):
    typed = {"study": study, "action": action, "reason": form_text(form, "reason")}
    try:
        with db.write() as session:
            study_data.move(session, session.merge(viewer.user), study, action, form_text(form, "password"),
                            typed["reason"])
    except DomainError as error:
        with db.read() as session:
            return _page(request, session, viewer, error, typed)
    return RedirectResponse(f"/study-data?notice={quote(DONE[action].format(study))}", status_code=303)


def _download(db: Database, viewer: Viewer, study: str, kind: str, name: str) -> Response:
    with db.write() as session:  # the export is a logged read of the compartment
        text = sealed.export_lists(session, viewer.actor, studies.by_code(session, study, field="study"), kind)
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{quote(study)}-{name}.csv"'})


@router.get("/{study}/randomisation.csv")
def randomisation_csv(study: str, viewer: Viewer = Depends(exporters), db: Database = Depends(get_db)):
    return _download(db, viewer, study, "randomisation", "randomisation")


@router.get("/{study}/kits.csv")
def kits_csv(study: str, viewer: Viewer = Depends(exporters), db: Database = Depends(get_db)):
    return _download(db, viewer, study, "kit", "kits")


def _trial_events(db: Database, viewer: Viewer, study: str, fmt: str) -> Response:
    """The trial database export with each participant's and kit's arm (trial_export.unblinded): the
    statistician's, after the sponsor's database lock and study unblinding."""
    export, pieces = opened(  # a logged read of the compartment and an audited download; then the file streamed
        db, lambda session, reading: unblinded_export(session, viewer.actor, study, fmt, reading))
    return StreamingResponse(pieces, media_type=export.media_type, headers=export.headers)


@router.get("/{study}/trial-events.xml")
def unblinded_trial_events_odm(study: str, viewer: Viewer = Depends(exporters), db: Database = Depends(get_db)):
    return _trial_events(db, viewer, study, "odm")


@router.get("/{study}/trial-events.csv")
def unblinded_trial_events_csv(study: str, viewer: Viewer = Depends(exporters), db: Database = Depends(get_db)):
    return _trial_events(db, viewer, study, "csv")
