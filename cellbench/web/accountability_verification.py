"""The monitor's signed verification of a site's accountability (accountability/verification.py),
the site's accountability PDF, and the monitor's queue of sites not verified as they stand.
The page itself is the accountability page with a site chosen (web/accountability.py)."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from .. import accountability, clock, display, pdf
from ..db import Database
from ..deps import Viewer, form_by, form_data, form_text, get_db, require
from ..errors import DomainError
from .accountability import list_page, pdf_response
from .home import QueueItem, work_queue

router = APIRouter(include_in_schema=False)
readers = require(*accountability.READERS)
# the form carries the figures' fingerprint; a page loaded before issue 18 carries their hash instead
FIELDS = ("study", "site", "figures_fingerprint", "figures_hash", "sequence", "comment")


def site_url(study: str, site: str) -> str:
    return f"/accountability?study={quote(study, safe='')}&site={quote(site, safe='')}#verification"


@work_queue
def _not_verified(session: Session, viewer: Viewer) -> list[QueueItem]:
    """One line per site of the monitor's whose figures are not verified as they stand now."""
    if not viewer.has(*accountability.VERIFIERS):
        return []
    zone = clock.zone()
    items = []
    for waiting in accountability.awaiting(session, viewer.actor):
        at = waiting.verified_at
        since = f"not verified since {display.moment(at, zone)}" if at else "never verified"
        text = f"site {waiting.site.code} ({waiting.study.code}): accountability {since}"
        items.append(QueueItem(1, text, site_url(waiting.study.code, waiting.site.code)))
    return items


@router.post("/accountability/verifications")
def verify(request: Request, viewer: Viewer = Depends(form_by(*accountability.VERIFIERS)),
           db: Database = Depends(get_db), form=Depends(form_data)):
    values = {name: form_text(form, name) for name in FIELDS}
    try:
        with db.write() as session:
            row = accountability.verify_by_code(session, session.merge(viewer.user), form_text(form, "password"),
                                                values["study"], values["site"],
                                                seen_fingerprint=values["figures_fingerprint"],
                                                seen_hash=values["figures_hash"], sequence=values["sequence"],
                                                comment=values["comment"])
            number = row.sequence
    except DomainError as error:
        with db.read() as session:
            return list_page(request, session, viewer, error, values)
    notice = quote(f"Verification {number} of {values['site']} signed.")
    return_to = site_url(values["study"], values["site"]).replace("#", f"&notice={notice}#")
    return RedirectResponse(return_to, status_code=303)


@router.get("/accountability/report.pdf")
async def report(request: Request, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    q = request.query_params
    return pdf_response(*await pdf.render_for(
        request, "site accountability report",
        lambda: accountability.site_report_file(db, q.get("study") or "", q.get("site") or "",
                                                zone=request.app.state.settings.zone,
                                                printed_by=viewer.user.full_name, reader=viewer.actor)))
