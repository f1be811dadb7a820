"""A site's accountability as a PDF: the figures per blinded lot now, and every monitor's
verification of them with printed name, time and meaning, and whether the figures still match.
Blinded (blinded lots and counts only), so every reader of accountability may print it."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session

from .. import studies
from ..audit import Actor
from ..clock import utcnow
from ..db import Database
from ..models import Meaning
from ..pdf import PlainText, char_width, checkpoint
from ..reports import certificate_start, when
from ..reports.document import CELL_SIZE, HEAD, LINE, PAD, PLAIN, SLACK, RecordPDF
from .site import CATEGORIES
from .verification import CHANGED, VERIFIED, Standing, site_of, standing

COLUMNS = (*CATEGORIES, "released", "on_hand")
HEADINGS = (*(label for label, _ in CATEGORIES.values()), "Released", "On hand")
# Characters that make grid() split, join or keep a cell's text otherwise than as one word.
ONE_WORD_BREAKERS = frozenset(" \n:\u00a0")


@dataclass
class SiteReport:
    standing: Standing

    @property
    def title(self) -> str:
        return f"Accountability — {self.standing.study.code} at {self.standing.site.code}"


def gather_site_report(session: Session, study_code: str, site_code: str, reader: Actor | None = None) -> SiteReport:
    study = studies.by_code(session, study_code)
    return SiteReport(standing(session, study, site_of(session, study, site_code, reader=reader)))


def status_text(now: Standing, zone: ZoneInfo) -> str:
    """What the page and the PDF say of the latest verification, in the same words."""
    latest = now.latest
    if latest is None:
        return "Not verified by a monitor."
    if now.status == VERIFIED:
        return f"Verified on {when(latest.at, zone)}: the figures are as verified."
    assert now.status == CHANGED
    return f"Changed since verification on {when(latest.at, zone)}."


def site_report_pdf(report: SiteReport, *, zone: ZoneInfo, printed_by: str, printed_at: datetime) -> bytes:
    now = report.standing
    study, site = now.study, now.site
    pdf = certificate_start(report.title, f"Accountability {study.code} {site.code}",
                            "Kits of the study at the site by blinded lot, from their states in cellbench, and the "
                            "monitor's source data verifications. ", zone=zone, printed_by=printed_by,
                            printed_at=printed_at)
    pdf.pairs([("Trial", f"{study.code} (EU CT {study.eu_ct_number}), {study.short_title}"),
               ("Site", f"{site.code}, {site.name}"),
               ("Figures now (SHA-256)", now.figures_hash),
               ("Verification", status_text(now, zone))])
    pdf.heading("Figures by blinded lot")
    if now.figures:
        figures_table(pdf, [[code, *(str(counts.get(name, 0)) for name in COLUMNS)]
                            for code, counts in sorted(now.figures.items())])
    else:
        pdf.line_of([("", "No kits of this study at this site.")])
    pdf.heading("Source data verifications")
    if now.history:
        pdf.grid(("No.", "Printed name", "Meaning", "Time", "Figures", "Comment"), (8, 36, 16, 38, 30, 40),
                 [[str(v.sequence), sig.signer_name if sig else "", Meaning(sig.meaning).value if sig else "",
                   when(sig.at if sig else v.at, zone), "as now" if now.matches(v) else "changed since",
                   v.comment or ""] for v, sig in now.history])
    else:
        pdf.line_of([("", "No verification recorded.")])
    return bytes(pdf.output())


def figures_table(pdf: RecordPDF, rows: list[list[str]]) -> None:
    """The figures by blinded lot, drawn as RecordPDF.grid draws them, but a row at a time without
    grid's work per cell: at ten years a site has thousands of blinded lots, and measuring, wrapping
    and setting the font cell by cell was most of the report's time. Here every cell is one word (a
    code or a count) in one look: each distinct text is measured once, the column widths are grid's
    (the same fit from the widest word of each column), and each cell is ruled by one rectangle and
    placed at grid's baseline, a row written at once with each distinct text encoded once
    (pdf.PlainText: text() per cell was most of what was left). A text that is not one word fitting
    its column goes to grid()."""
    columns, widths = ("Blinded lot", *HEADINGS), (18, *([8] * len(COLUMNS)))
    pdf.set_font("Doc", "", CELL_SIZE)
    measure = char_width(pdf)
    cleaned: dict[str, tuple[str, float]] = {}
    for row in rows:
        for value in row:
            if value not in cleaned:
                text = pdf.clean(value)
                cleaned[value] = (text, sum(map(measure, text)))
    widest = [max(cleaned[row[i]][1] for row in rows) for i in range(len(columns))]
    head = pdf._measure([{"text": c, "style": HEAD} for c in columns])
    scale = pdf.epw / sum(widths)
    scaled = pdf._fit([w * scale for w in widths], [head, [(1, PLAIN, [[("", w)]]) for w in widest]])
    if any(ONE_WORD_BREAKERS & set(text) for text, _ in cleaned.values()) or any(
            size > width - 2 * PAD - SLACK for size, width in zip(widest, scaled, strict=True)):
        pdf.grid(columns, widths, rows)
        return
    laid_head = pdf._lay(head, scaled)
    if pdf.get_y() + 3 * LINE + 4 * PAD > pdf.page_break_trigger:  # no heading alone at a page foot
        pdf.add_page()
    pdf._row(laid_head, None)
    xs = [pdf.l_margin + sum(scaled[:i]) for i in range(len(scaled))]
    height, k = LINE + 2 * PAD, pdf.k
    pdf.set_font("Doc", "", CELL_SIZE)
    # Per column, what rect(x, y, width, height, style="D") and text(x + PAD, ...) write that does
    # not depend on the row; each row is then written with one _out (its lines joined as _out would).
    columns_out = [(f"{x * k:.2f}", f"{width * k:.2f} {-height * k:.2f} re S", f"{(x + PAD) * k:.2f}")
                   for x, width in zip(xs, scaled, strict=True)]
    plain = PlainText(pdf)
    for row in rows:
        checkpoint()
        if int((pdf.page_break_trigger - pdf.get_y() - 2 * PAD) // LINE) < 1:
            pdf.add_page()
            pdf._row(laid_head, None)
            pdf.set_font("Doc", "", CELL_SIZE)
        y = pdf.get_y()
        baseline = y + PAD + 0.5 * LINE + 0.3 * pdf.font_size
        if plain.ready():
            _plain_row(pdf, plain, columns_out, row, cleaned, f"{(pdf.h - y) * k:.2f}", f"{(pdf.h - baseline) * k:.2f}")
        else:  # the page's first row: text() sets the font on the page
            for x, width, value in zip(xs, scaled, row, strict=True):
                pdf._out(f"{x * k:.2f} {(pdf.h - y) * k:.2f} {width * k:.2f} {-height * k:.2f} re S")
                text = cleaned[value][0]
                if text:
                    pdf.text(x + PAD, baseline, text)
        pdf.set_xy(pdf.l_margin, y + height)
    pdf.set_x(pdf.l_margin)


def _plain_row(pdf: RecordPDF, plain: PlainText, columns: list[tuple[str, str, str]], row: list[str],
               cleaned: dict[str, tuple[str, float]], top: str, baseline: str) -> None:
    """One row's rules and texts, written as rect() and text() write them (PlainText)."""
    before, after = plain.wrapping()
    parts = []
    for (x, rule, text_x), value in zip(columns, row, strict=True):
        parts.append(f"{x} {top} {rule}")
        text = cleaned[value][0]
        if text:
            parts.append(f"{before}BT {text_x} {baseline} Td {plain.shown(text)} ET{after}")
    pdf._out("\n".join(parts))


def site_report_file(db: Database, study_code: str, site_code: str, *, zone: ZoneInfo, printed_by: str,
                     reader: Actor | None = None) -> tuple[str, bytes]:
    """The report and its file name; read in one go, the database let go of before drawing."""
    with db.read() as session:
        report = gather_site_report(session, study_code, site_code, reader=reader)
    name = f"accountability-{report.standing.study.code}-{report.standing.site.code}.pdf"
    return name, site_report_pdf(report, zone=zone, printed_by=printed_by, printed_at=utcnow())
