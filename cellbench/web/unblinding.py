"""Emergency unblinding pages (the messages they queue are on the notifications page, web/notifications.py).

The arm appears on exactly one page: the response to the investigator's successful unblinding
request. Records read later, by anyone, say who, when and why. Blinded roles reach this module, so
it reaches the sealed compartment only through unblinding.py's blind-safe door.
"""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from sqlmodel import Session

from .. import audit, studies, unblinding
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError
from ..models import Role
from ..templating import render
from . import paging

router = APIRouter(include_in_schema=False)
# unblinding_impact.READERS, named here: this module serves blinded roles and must not import it
# (it reads the sealed compartment). tests/test_unblinding.py checks the two agree.
IMPACT_READERS = (Role.qa, Role.supply_manager)
readers = require(*unblinding.READERS)
FORM_FIELDS = ("study", "participant", "reason_code", "reason")


def participant_url(study: str, participant: str) -> str:
    return f"/unblinding/{quote(study, safe='')}/{quote(participant, safe='')}"


def _page(request: Request, session: Session, viewer: Viewer, form: dict | None = None,
          error: DomainError | None = None):
    all_studies = studies.all_studies(session)
    chosen = (request.query_params.get("study") or (form or {}).get("study") or "").strip().upper()
    study = next((s for s in all_studies if s.code == chosen), None)
    found = unblinding.record_page(session, paging.ask(request), study)
    return render(request, "unblinding/list.html", status_code=error.status if error else 200,
                  rows=found.rows, pager=paging.pager("/unblinding", {"study": chosen}, found),
                  studies=all_studies, chosen=chosen,
                  form=form or {"study": chosen}, error=error, reasons=unblinding.REASON_CODES,
                  can_unblind=viewer.has(*unblinding.UNBLINDERS), participant_url=participant_url)


@router.get("/unblinding")
def unblinding_page(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    return _page(request, session, viewer)


@router.post("/unblinding")
def unblind(request: Request, viewer: Viewer = Depends(form_by(*unblinding.UNBLINDERS)),
            db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: (form.get(k) or "").strip() for k in FORM_FIELDS}
    try:
        with db.write() as session:
            study = studies.by_code(session, values["study"])
            result = unblinding.unblind(session, session.merge(viewer.user), form.get("password", ""), study,
                                        values["participant"], values["reason_code"], values["reason"])
            record_url = participant_url(study.code, result.participant.randomisation_number or "")
            shown = {"study": study.code, "participant": result.participant.randomisation_number,
                     "screening": result.participant.screening_number, "arm": result.arm, "arm_name": result.arm_name,
                     "reason": f"{unblinding.reason_label(result.record.reason_code)}: {result.record.reason}",
                     "at": result.record.at,
                     "to": result.notification.to_address, "signature": result.signature,
                     "contact": study.emergency_contact, "phone": study.emergency_phone}
    except DomainError as error:
        with db.read() as session:
            return _page(request, session, viewer, values, error)
    # Rendered here, once: the arm is never stored anywhere a later page reads it for a blinded role.
    return render(request, "unblinding/result.html", r=shown, record_url=record_url)


@router.get("/unblinding/{study_code}/{participant}")
def participant_records(request: Request, study_code: str, participant: str, viewer: Viewer = Depends(readers),
                        session: Session = Depends(read_session)):
    study = studies.by_code(session, study_code)
    person = unblinding.participant_by_number(session, study, participant)
    key = unblinding.participant_key(study, person)
    # QA and the supply manager get a link to what the unblinding reveals (unblinding_impact's page);
    # everyone else reads who, when and why only.
    return render(request, "unblinding/participant.html", study=study, person=person,
                  impact_url=f"{participant_url(study.code, person.randomisation_number or '')}/impact"
                  if viewer.has(*IMPACT_READERS) else None,
                  rows=unblinding.records_of(session, person), history=audit.history(session, viewer.actor,
                                                                                    "participant", key))
