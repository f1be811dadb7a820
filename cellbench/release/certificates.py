"""Certificates of a lot: the certificate of analysis (each release test with its method as recorded,
criterion, result, verdict and reviewer, and who approved the results) and the release certificate
(the lot's particulars, the QP's declaration with each certification, and the sponsor release).
Both show every signature with printed name, time and meaning.

Data is gathered once inside the transaction (certificate_data); rendering here touches the database
no more. The PDF helpers (font, page footer, tables, the one way a time is written) are those of the
batch-record printout, so every printed record of a lot looks alike.
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from ..models import LotState
from ..reports import DECISION_TITLES, OOS, RecordPDF, certificate_start, text, when
from .certificate_data import (
    QP_DECISIONS,
    RELEASES,
    CertificateData,
    PendingLine,
    SignatureLine,
    TestLine,
    batch_size,
    gather,
    instruments_used,
    recorded_method,
    trials_of,
)

__all__ = ["DECISION_TITLES", "QP_DECISIONS", "RELEASES", "CertificateData", "PendingLine", "SignatureLine",
           "TestLine", "batch_size", "coa_pdf", "gather", "instruments_used", "manufacturer_line",
           "qp_declaration", "recorded_method", "release_certificate_pdf", "trials_of"]

NOT_SET = "NOT SET: the manufacturing authorisation number is missing from cellbench's settings"


def manufacturer_line(manufacturer: str | None, authorisation: str) -> str:
    """Who made the lot and under which authorisation, in one line (labels, summaries)."""
    made = manufacturer or "not named in this specification version"
    return f"{made}; manufacturing authorisation {authorisation or 'not set'}"


def _trials(data: CertificateData) -> str:
    return ", ".join(data.trials) or "the clinical trials it is supplied to"


def qp_declaration(data: CertificateData, kind: str) -> str:
    """What the QP's signature "certified" declares, in the words of EU GMP Annex 16 and of the GMP
    for investigational medicinal products (Reg. 536/2014 Art. 62, Del. Reg. 2017/1569 Art. 12),
    written for this lot. An initial certification says what it does in cellbench: the lot may
    ship under quarantine and is used only after the final certification."""
    trials = "s" if len(data.trials) > 1 else ""
    base = (f"I, the Qualified Person signing below, certify that lot {data.lot.number} of {data.product} was "
            "manufactured and checked in compliance with Good Manufacturing Practice for investigational medicinal "
            "products and the Guidelines on Good Manufacturing Practice specific to Advanced Therapy Medicinal "
            f"Products, with the product specification file ({data.product_code} version {data.spec_version}) "
            f"and with the authorisation{trials} of the clinical trial{trials} {_trials(data)}.")
    if kind == "certify_initial":
        return (base + " This certification rests on the results available when it was signed: the tests listed "
                "as pending were outstanding, each with an owner and a due date. It allows the lot to be shipped "
                "to the trial sites under quarantine; the lot is not used until my final certification, given "
                "when those results are complete and within specification.")
    rests = (" It rests on the batch record and the audit trail reviewed by QA, the deviations closed or assessed, "
             "the donor's eligibility and the release test results on the certificate of analysis.")
    if kind == "certify_final_shipped":
        return base + rests + " It completes the initial certification and releases the lot shipped under quarantine."
    return base + rests


def _sponsor_statement(kind: str) -> str:
    if kind == "release_for_shipment":
        return ("The sponsor confirmed the QP's initial certification and that the trial authorisations are in "
                "place, and released the lot for shipment to the trial sites under quarantine until the QP's "
                "final certification.")
    return ("The sponsor confirmed that the QP certification is complete and that the trial authorisations are in "
            "place, and released the lot for use in the trials (regulatory release).")


# --- rendering --------------------------------------------------------------------------------


def _facts(pdf: RecordPDF, data: CertificateData, authorisation: str) -> None:
    lot = data.lot
    rows: list[tuple[str, str]] = [
        ("Product", f"{data.product} ({data.product_code})"),
        ("Manufactured by", data.manufacturer or "not named in this specification version"),
        ("Manufacturing authorisation", authorisation or NOT_SET),
        ("Lot number", lot.number),
        ("Batch size", data.batch_size),
        ("Specification", f"{data.product_code} version {data.spec_version}"),
        ("Clinical trials", ", ".join(data.trials) or "none loaded for this product"),
        ("Expiry", lot.expiry.isoformat() if lot.expiry else "not set"),
        ("Lot state", text(lot.state))]
    if data.donation:
        rows.append(("Donation", data.donation))
    pdf.pairs(rows)
    pdf.ln(2)


SIGNATURE_COLUMNS, SIGNATURE_WIDTHS = ("Signed for", "Printed name", "Meaning", "Time", "Note"), (46, 28, 18, 36, 58)


def _signature_rows(pdf: RecordPDF, lines: list[SignatureLine], zone: ZoneInfo, empty: str) -> None:
    if not lines:
        pdf.line_of([("", empty)])
        return
    pdf.grid(SIGNATURE_COLUMNS, SIGNATURE_WIDTHS,
             [[line.label + (f"\nINVALIDATED: {line.void}" if line.void else ""), line.name, line.meaning,
               when(line.at, zone), line.note] for line in lines])


def _pending(pdf: RecordPDF, pending: list[PendingLine], zone: ZoneInfo) -> None:
    pdf.grid(("Pending test", "Owner", "Due", "Resolved"), (60, 50, 30, 46),
             [[p.test, p.owner, p.due.isoformat(), when(p.resolved, zone) if p.resolved else "open"]
              for p in pending])


def _new_pdf(title: str, data: CertificateData, zone: ZoneInfo, printed_by: str, printed_at: datetime) -> RecordPDF:
    return certificate_start(f"{title} — lot {data.lot.number}", f"Lot {data.lot.number} · {title.lower()}", "",
                             zone=zone, printed_by=printed_by, printed_at=printed_at)


def _test_row(t: TestLine, zone: ZoneInfo) -> list:
    verdict: object = {"text": t.verdict, "style": OOS} if t.failing else t.verdict
    reviewer = f"{t.reviewer}, {when(t.reviewed_at, zone)}" if t.reviewer else "—"
    return [t.name, t.method, t.criterion, t.result, verdict, reviewer]


def coa_pdf(data: CertificateData, *, zone: ZoneInfo, printed_by: str, printed_at: datetime,
            authorisation: str = "") -> bytes:
    """Certificate of analysis: every release test of the lot's specification version, the methods
    with the instruments the lot's record shows, and who approved the results."""
    pdf = _new_pdf("Certificate of analysis", data, zone, printed_by, printed_at)
    _facts(pdf, data, authorisation)
    pdf.heading("Release tests")
    pdf.grid(("Test", "Method", "Acceptance criterion", "Result", "Verdict", "Reviewed by"), (30, 38, 32, 26, 20, 40),
             [_test_row(t, zone) for t in data.tests])
    pdf.line_of([("", "Methods name the instruments as recorded on the lot's batch record.")])
    pdf.ln(1)
    conclusion = ("All release tests meet the specification." if data.conforms else
                  "Not every release test has a reviewed result within specification (see the verdicts above).")
    pdf.line_of([("B", "Conclusion: "), ("", conclusion)])
    pdf.heading("Approval of the results")
    if data.unreviewed:
        pdf.line_of([("B", f"NOT APPROVED: {data.unreviewed} result{'s' if data.unreviewed != 1 else ''} "
                           "await second-person review.")])
    _signature_rows(pdf, data.approvals, zone, "No result has been approved yet.")
    if data.pending:
        pdf.heading("Tests pending at initial certification")
        _pending(pdf, data.pending, zone)
    pdf.heading("Certification and release of the lot")
    _signature_rows(pdf, data.reviews + data.decisions, zone, "No review or certification signed yet.")
    return bytes(pdf.output())


def _status(data: CertificateData) -> str:
    state = LotState(data.lot.state)
    if state is LotState.released:
        return "RELEASED: certified by the QP and released by the sponsor; the lot may be used for kits."
    if state is LotState.rejected:
        return "REJECTED: the lot must not be used."
    return f"NOT RELEASED: the lot is {text(state)}; it must not be used for kits."


def release_certificate_pdf(data: CertificateData, *, zone: ZoneInfo, printed_by: str,
                            printed_at: datetime, authorisation: str = "") -> bytes:
    """Release certificate: the lot's particulars, each QP certification with the QP's declaration
    and signature, and the sponsor release."""
    pdf = _new_pdf("Release certificate", data, zone, printed_by, printed_at)
    _facts(pdf, data, authorisation)
    pdf.line_of([("B", "Status: "), ("", _status(data))])
    pdf.line_of([("", "The release test results and their approval are on the lot's certificate of analysis.")])
    pdf.heading("Certification by the Qualified Person")
    if not data.certifications:
        pdf.line_of([("", "Not certified.")])
    for line in data.certifications:
        pdf.line_of([("B", line.label + (" — INVALIDATED, no longer stands" if line.void else ""))])
        pdf.line_of([("", qp_declaration(data, line.kind))])
        pdf.ln(1)
        _signature_rows(pdf, [line], zone, "")
        if line.kind == "certify_initial" and data.pending:
            pdf.ln(1)
            _pending(pdf, data.pending, zone)
        pdf.ln(2)
    pdf.heading("Sponsor release")
    if not data.releases:
        pdf.line_of([("", "Not released.")])
    for line in data.releases:
        pdf.line_of([("", _sponsor_statement(line.kind))])
        pdf.ln(1)
        _signature_rows(pdf, [line], zone, "")
        pdf.ln(2)
    if data.other_decisions:
        pdf.heading("Other decisions")
        _signature_rows(pdf, data.other_decisions, zone, "")
    pdf.heading("QA reviews before certification")
    _signature_rows(pdf, data.reviews, zone, "None.")
    return bytes(pdf.output())
