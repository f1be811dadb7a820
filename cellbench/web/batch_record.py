"""The executed batch record of a lot, as a page and as a PDF (for QA review and for the file)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from markupsafe import Markup, escape

try:  # MarkupSafe's own escaper, without the Markup object `escape` wraps each text in
    from markupsafe._speedups import _escape_inner
except ImportError:  # pragma: no cover - MarkupSafe without its C speedups (or a later layout)
    from markupsafe._native import _escape_inner
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


def _text(value: object) -> str:
    """`value` escaped as the templates escape it: a page writes out a thousand recorded texts, and
    `escape` (a Markup object each) was a third of writing them."""
    return _escape_inner(value) if type(value) is str else str(escape(value))


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
            f'{_text(sig.content_hash)}">\n  <strong>{_text(sig.signer_name)}</strong> · '
            f'{_text(sig.meaning.value)} ·\n  <time datetime="{_text(sig.at.isoformat())}">{at[sig.at]}</time>\n')
    if void:
        line += f"<em>— invalidated {at[sig.invalidated_at]}: {_text(sig.invalidated_reason)}</em>"
    return Markup(line + "</span>")  # noqa: S704 - every text in it is escaped above; the times are Markup


class Signed(dict[int, Markup]):
    """Each signature's line, by signature id, worked out once."""

    def __init__(self, at: Moments, signatures: list[reports.SignatureView]) -> None:
        super().__init__((sig.id, signature_line(sig, at)) for sig in signatures)


_OOS, _COMPUTED = ' class="oos"', ' <small class="tag">computed by cellbench</small>'


def value_rows(entry: reports.EntryRecord, at: Moments) -> Markup:
    """The rows of one entry's table of values, written out in Python: a record prints a few hundred
    values, and the template's loop (an attribute lookup and an escape per cell) was most of the
    page's rendering. Every recorded text is escaped; the verdicts and notes are the record's own
    fixed words and the times are Markup already."""
    out = []
    for line in entry.lines:
        label, limits = _text(line.label), _text(line.limits)
        for v in line.rows:
            struck = " struck" if v.superseded else ""
            marks = (_COMPUTED if v.computed else "") + (f'<br><small class="changed-mark">{v.note}</small>'
                                                         if v.note else "")
            out.append(f'<tr{_OOS if v.out_of_limits else ""}><td>{label}{marks}</td>\n'
                       f'  <td class="val{struck}">{_text(v.shown)}</td><td>{limits}</td>'
                       f'<td class="verdict{struck}">{v.verdict}</td>\n'
                       f'  <td>{_text(v.remark)}</td><td>{_text(v.by)}<br><small>{at[v.at]}</small></td></tr>\n')
        if not line.rows:
            out.append(f'<tr><td>{label}</td><td><small>not recorded</small></td><td>{limits}</td>'
                       f'<td>{"not recorded" if line.required else "optional"}</td><td></td><td></td></tr>\n')
        out += [f'<tr class="change"><td colspan="6">Changed after first entry — {label}: '
                f'<span class="struck">{_text(c.before.shown)}</span> → {_text(c.after_shown)};\n'
                f'  by {_text(c.by or "cellbench")} at {at[c.at]}. Reason: {_text(c.reason)}</td></tr>\n'
                for c in line.changes]
    return Markup("".join(out))  # noqa: S704 - every recorded text in it is escaped above


def uses(entry: reports.EntryRecord) -> Markup:
    """The materials and equipment an entry used, one list item each (escaped as value_rows)."""
    items = [f"<li><strong>Material:</strong> {_text(m.name)} ({_text(m.supplier)}) · supplier lot "
             f"{_text(m.supplier_lot)} · expiry {m.expiry}</li>\n" for m in entry.materials]
    items += [f"<li><strong>Equipment:</strong> {_text(e.name)} · asset {_text(e.asset_id)} · calibration due "
              f"{e.calibration_due}</li>\n" for e in entry.equipment]
    return Markup("".join(items))  # noqa: S704 - every recorded text in it is escaped above; dates are dates


@dataclass(slots=True)
class EntryHTML:
    """One step entry's values table rows, its uses and its signature lines, written out once."""

    rows: Markup
    uses: Markup
    signatures: Markup


@dataclass(slots=True)
class RecordPage:
    """The batch record with what the page prints once worked out once: its times, signature lines
    and entries' tables (looked up by the template's plain loops) and the counts of its summary."""

    record: reports.BatchRecord
    at: Moments
    signed: Signed
    entries: dict[int, EntryHTML]  # by step entry id
    completed_at: datetime | None
    out_of_limits: int
    invalidated_signatures: int

    @classmethod
    def of(cls, record: reports.BatchRecord, local: Local) -> RecordPage:
        at = Moments(local)
        entries = [e for s in record.steps for e in s.entries]
        signatures = [sig for e in entries for sig in e.signatures]
        signatures += [line.signature for line in record.lot_signatures]
        signatures += [r.closure for r in record.deviations if r.closure is not None]
        signatures += [sig for sig in (record.spec_signature, record.donation_signature) if sig is not None]
        signed = Signed(at, signatures)
        html = {e.entry.id: EntryHTML(value_rows(e, at), uses(e),
                                      Markup(" ").join(signed[sig.id] for sig in e.signatures)) for e in entries}
        return cls(record, at, signed, html, record.completed_at, len(record.out_of_limits),
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
