"""The executed batch record of a lot, as a page and as a PDF (for QA review and for the file)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from markupsafe import Markup, escape
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

Local = Callable[[datetime | None], Markup | str]  # the templates' `local` filter: a time in site time


class Moments(dict[datetime | None, Markup | str]):
    """Each time on the page in site time, worked out once per minute: a record shows a few hundred
    times (every value's entry, every signature), nearly all distinct to the microsecond but few
    distinct to the minute the page shows, and the `local` filter per value was a third of the
    page's rendering. (Zone offsets are whole minutes, so a UTC minute is a site minute.)"""

    def __init__(self, local: Local) -> None:
        super().__init__()
        self.local = local

    def __missing__(self, moment: datetime | None) -> Markup | str:
        minute = moment.replace(second=0, microsecond=0) if moment is not None else None
        shown = self.get(minute)
        if shown is None:
            shown = self[minute] = self.local(moment)
        self[moment] = shown
        return shown


def signature_line(sig: reports.SignatureView, at: Moments) -> Markup:
    """The `signature` macro of _macros.html (name, meaning, time; an invalidated one with when and
    why), written out in Python: a record shows dozens of signatures and a macro call each cost more
    than the rest of a signature's rendering. tests/reports/test_record_page.py holds the two equal."""
    void = sig.invalidated_at is not None
    line = (f'<span class="sig{" sig-void" if void else ""}" title="SHA-256 of signed content: '
            f'{escape(sig.content_hash)}">\n  <strong>{escape(sig.signer_name)}</strong> · '
            f'{escape(sig.meaning.value)} ·\n  <time datetime="{escape(sig.at.isoformat())}">{at[sig.at]}</time>\n')
    if void:
        line += f"<em>— invalidated {at[sig.invalidated_at]}: {escape(sig.invalidated_reason)}</em>"
    return Markup(line + "</span>")  # noqa: S704 - every text in it is escaped above; the times are Markup


class Signed(dict[int, Markup]):
    """Each signature's line, by signature id, worked out once."""

    def __init__(self, at: Moments, signatures: list[reports.SignatureView]) -> None:
        super().__init__((sig.id, signature_line(sig, at)) for sig in signatures)


@dataclass(slots=True)
class RecordPage:
    """The batch record with what the page prints once worked out once: its times and signature lines
    (looked up by the template's plain loops) and the counts of its summary."""

    record: reports.BatchRecord
    at: Moments
    signed: Signed
    completed_at: datetime | None
    out_of_limits: int
    invalidated_signatures: int

    @classmethod
    def of(cls, record: reports.BatchRecord, local: Local) -> RecordPage:
        at = Moments(local)
        signatures = [sig for s in record.steps for e in s.entries for sig in e.signatures]
        signatures += [line.signature for line in record.lot_signatures]
        signatures += [r.closure for r in record.deviations if r.closure is not None]
        signatures += [sig for sig in (record.spec_signature, record.donation_signature) if sig is not None]
        return cls(record, at, Signed(at, signatures), record.completed_at, len(record.out_of_limits),
                   record.invalidated_signatures)


@router.get("/lots/{number}/record")
def record_page(request: Request, number: str, viewer: Viewer = Depends(READERS),
                session: Session = Depends(read_session)):
    record = reports.batch_record(session, number)
    page = RecordPage.of(record, request.app.state.templates.env.filters["local"])
    return render(request, "lots/record.html", record=record, page=page)


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
