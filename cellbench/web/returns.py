"""The pharmacy's returns: a kit brought back from the ward or the preparation room is scanned in
with its condition. Blinded pages: the same for both arms, the kit number aside."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlmodel import Session

from .. import custody, pharmacy
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError
from ..templating import render
from .pharmacy import notice_redirect

router = APIRouter(include_in_schema=False)
pharmacists = pharmacy.PHARMACY

def _returns(request: Request, session: Session, viewer: Viewer, error: DomainError | None = None,
             form: dict | None = None):
    recent = custody.recent(session, viewer.user.id, "returned", 10)
    return render(request, "pharmacy/returns.html", status_code=error.status if error else 200, error=error,
                  form=form or {}, recent=recent)


@router.get("/returns")
def returns_page(request: Request, viewer: Viewer = Depends(require(*pharmacists)),
                 session: Session = Depends(read_session)):
    return _returns(request, session, viewer)


@router.post("/returns")
def return_kit(request: Request, viewer: Viewer = Depends(form_by(*pharmacists)), db: Database = Depends(get_db),
               form=Depends(form_data)):
    values = {k: (form.get(k) or "").strip() for k in ("code", "condition", "manual", "manual_reason")}
    try:
        with db.write() as session:
            kit = pharmacy.return_kit(session, viewer.actor, values["code"], request.app.state.settings.secret_key,
                                      values["condition"], manual=values["manual"], reason=values["manual_reason"])
            number = kit.number
    except DomainError as error:
        with db.read() as session:
            return _returns(request, session, viewer, error, values)
    return notice_redirect("/returns", f"Kit {number} returned to the pharmacy.")

