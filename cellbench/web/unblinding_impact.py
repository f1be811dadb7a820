"""What an emergency unblinding reveals about other participants: QA and the supply manager read it
(every sealed read logged under their name) and send it to the sponsor's emergency contact.

Every route here refuses blinded roles (tests/test_sealed.py lists this module as unblinded-only):
the investigator who unblinded is shown her participant's arm and nothing about anyone else.
"""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from .. import studies, unblinding, unblinding_impact
from ..db import Database
from ..deps import Viewer, form_by, get_db, require
from ..pagination import link
from ..templating import render
from .home import QueueItem, line_of, work_queue
from .paging import Pager, ask
from .unblinding import participant_url

router = APIRouter(include_in_schema=False)
readers = require(*unblinding_impact.READERS)


@work_queue
def _impacts_to_send(session: Session, viewer: Viewer) -> list[QueueItem]:
    if not viewer.has(*unblinding_impact.READERS):
        return []
    return line_of(session, unblinding_impact.awaiting_query(),
                   "emergency unblindings: their impact is not yet sent to the sponsor",
                   "emergency unblinding: its impact is not yet sent to the sponsor", "/unblinding",
                   lambda one: participant_url(studies.by_id(session, one.study_id).code,
                                               one.randomisation_number) + "/impact")


@router.get("/unblinding/{study_code}/{participant}/impact")
def impact_page(request: Request, study_code: str, participant: str, viewer: Viewer = Depends(readers),
                db: Database = Depends(get_db)):
    asked = ask(request, unblinding_impact.PAGE_SIZE)
    with db.write() as session:  # the sealed reads are logged
        study = studies.by_code(session, study_code)
        impact = unblinding_impact.assess(session, viewer.actor, study, participant, asked)
        records = unblinding.records_of(session, impact.participant)
        data = unblinding_impact.as_json(impact, asked.secret)
        path = request.url.path
        pager = Pager(path if asked.after else None, link(path, {}, data["next"]) if data["next"] else None)
        return render(request, "unblinding/impact.html", study=study, impact=data, pager=pager,
                      sent=unblinding_impact.sent(session, [r.id for r in records]),
                      record_url=participant_url(study.code, impact.participant.randomisation_number or ""))


@router.post("/unblinding/{study_code}/{participant}/impact")
def send_impact(study_code: str, participant: str, viewer: Viewer = Depends(form_by(*unblinding_impact.READERS)),
                db: Database = Depends(get_db)):
    with db.write() as session:
        study = studies.by_code(session, study_code)
        note = unblinding_impact.send(session, viewer.actor, study, participant)
    url = participant_url(study_code.upper(), participant.upper())
    return RedirectResponse(f"{url}/impact?notice={quote(f'Sent to the sponsor: message {note.id} is queued.')}",
                            status_code=303)
