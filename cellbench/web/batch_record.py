"""The executed batch record of a lot, as a page and as a PDF (for QA review and for the file)."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlmodel import Session

from .. import pdf, reports
from ..clock import utcnow
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..models import Role
from ..templating import render

router = APIRouter(include_in_schema=False)
# The unblinded GMP roles that read batch records; the record names what the lot is made of.
READERS = require(Role.operator, Role.verifier, Role.qa, Role.qp, Role.qc_analyst)


@router.get("/lots/{number}/record")
def record_page(request: Request, number: str, viewer: Viewer = Depends(READERS),
                session: Session = Depends(read_session)):
    return render(request, "lots/record.html", record=reports.batch_record(session, number))


@router.get("/lots/{number}/record.pdf")
async def record_pdf(request: Request, number: str, viewer: Viewer = Depends(READERS),
                     db: Database = Depends(get_db)):
    def make() -> tuple[str, bytes]:
        with db.read() as session:  # read, then let go of the database before the slower rendering
            record = reports.batch_record(session, number)
        return record.lot.number, reports.batch_record_pdf(record, zone=request.app.state.settings.zone,
                                                           printed_by=viewer.user.full_name, printed_at=utcnow())

    # off the event loop, within the time limit, stopped if the client leaves
    lot, document = await pdf.render_for(request, f"batch record of lot {number[:40]}", make)
    name = quote(f"batch-record-{lot}.pdf")
    return Response(document, media_type="application/pdf",
                    headers={"Content-Disposition": f"inline; filename*=UTF-8''{name}"})
