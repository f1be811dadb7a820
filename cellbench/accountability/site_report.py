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
from ..reports import certificate_start, when
from .site import CATEGORIES
from .verification import CHANGED, VERIFIED, Standing, site_of, standing

COLUMNS = (*CATEGORIES, "released", "on_hand")
HEADINGS = (*(label for label, _ in CATEGORIES.values()), "Released", "On hand")


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
        pdf.grid(("Blinded lot", *HEADINGS), (18, *([8] * len(COLUMNS))),
                 [[code, *(str(counts.get(name, 0)) for name in COLUMNS)]
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


def site_report_file(db: Database, study_code: str, site_code: str, *, zone: ZoneInfo, printed_by: str,
                     reader: Actor | None = None) -> tuple[str, bytes]:
    """The report and its file name; read in one go, the database let go of before drawing."""
    with db.read() as session:
        report = gather_site_report(session, study_code, site_code, reader=reader)
    name = f"accountability-{report.standing.study.code}-{report.standing.site.code}.pdf"
    return name, site_report_pdf(report, zone=zone, printed_by=printed_by, printed_at=utcnow())
