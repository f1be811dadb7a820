"""Certificates of a lot: the certificate of analysis (each release test with its method, criterion,
result, verdict and reviewer) and the release certificate (the QP's certification or certifications
and the sponsor release). Both show every signature with printed name, time and meaning.

Data is gathered once inside the transaction into plain rows; rendering touches the database no more.
The PDF helpers (font, page footer, tables) are those of the batch-record printout, so every printed
record of a lot looks alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session

from .. import clock, lots, qc
from ..donors import decision_signature, tests_of
from ..models import Donation, Eligibility, Lot, LotState, Signature
from ..reports import OOS, RecordPDF, certificate_start, text
from ..specifications import ReleaseTest
from ..specifications import versions as spec_versions
from .decisions import decisions_with_signatures, owner_names, pending_tests
from .reviews import reviews_of

DECISION_TITLES = {
    "certify_initial": "QP initial certification",
    "certify_final": "QP final certification",
    "release": "Sponsor release",
    "release_for_shipment": "Sponsor release for shipment under quarantine",
    "certify_final_shipped": "QP final certification (releases the lot shipped under quarantine)",
    "reject": "Rejection",
    "abort": "Abort",
}


@dataclass
class SignatureLine:
    label: str
    name: str
    meaning: str
    at: datetime
    void: str = ""  # why it no longer stands; empty while it stands
    note: str = ""  # the reason given with it, e.g. the pending tests of an initial certification


@dataclass
class TestLine:
    code: str
    name: str
    method: str
    criterion: str
    result: str
    verdict: str
    reviewer: str
    reviewed_at: datetime | None = None
    failing: bool = False


@dataclass
class PendingLine:
    test: str
    owner: str
    due: date
    resolved: datetime | None


@dataclass
class CertificateData:
    lot: Lot
    product: str
    product_code: str
    spec_version: int
    kind: str  # asc | placebo
    donation: str | None
    manufacturer: str | None = None  # as the lot's specification names it (versions before issue 13 do not)
    tests: list[TestLine] = field(default_factory=list)
    pending: list[PendingLine] = field(default_factory=list)
    reviews: list[SignatureLine] = field(default_factory=list)  # QA's lot reviews
    decisions: list[SignatureLine] = field(default_factory=list)  # QP, sponsor, rejection

    @property
    def conforms(self) -> bool:
        return bool(self.tests) and all(t.verdict == "pass" for t in self.tests)


def _sig_line(label: str, sig: Signature | None, note: str = "") -> SignatureLine | None:
    if sig is None:
        return None
    void = (f"invalidated {sig.invalidated_at:%Y-%m-%d %H:%M} UTC: {sig.invalidated_reason}"
            if sig.invalidated_at else "")
    return SignatureLine(label, sig.signer_name, text(sig.meaning), sig.at, void, note)


def gather(session: Session, number: str) -> CertificateData:
    lot = lots.by_number(session, number)
    row = lots.spec_of(session, lot)
    spec = spec_versions.parsed(row)
    donation = session.get(Donation, lot.donation_id) if lot.donation_id else None
    data = CertificateData(lot, spec.product.name, row.product_code, row.version, row.kind,
                           donation.identifier if donation else None, spec.product.manufacturer)
    statuses = qc.test_status(session, lot)
    sigs = qc.signatures_of(session, [s.result for s in statuses if s.result is not None])
    eligibility = decision_signature(session, donation) if donation else None
    donor_tests = tests_of(session, donation) if donation else {}
    for status in statuses:
        test = status.test
        if not test.required_for_release and status.result is None:
            continue  # e.g. a check made at kit labelling, after release
        if test.stage == "donor" and status.result is None:
            data.tests.append(_donor_line(test, donation, donor_tests, eligibility))
            continue
        result, shown = status.result, "no result"
        if status.state == qc.OOS:
            shown = "; ".join(f"{r.value} {r.unit or ''}".strip() + f" (#{r.id})" for r in status.standing_oos)
        elif result is not None:
            shown = f"{result.value} {result.unit or ''}".strip() + (f" (retest of #{result.retest_of})"
                                                                   if result.retest_of else "")
        review = sigs.get(result.review_signature_id) if result is not None and result.review_signature_id else None
        reviewer = f"{review.signer_name}, {text(review.meaning)}" if review else ""
        verdict = {qc.PASS: "pass", qc.OOS: "OUT OF SPECIFICATION", qc.UNREVIEWED: "not yet reviewed",
                   qc.MISSING: "no result", qc.INVALIDATED_ONLY: "no valid result"}[status.state]
        data.tests.append(TestLine(test.code, test.name + ("" if test.required_for_release else
                                                           " (not required for release)"),
                                   test.method, test.acceptance.describe(test.unit), shown, verdict, reviewer,
                                   review.at if review else None, status.state == qc.OOS))
    pending = pending_tests(session, lot)
    owners = owner_names(session, pending)
    names = {t.code: t.name for t in spec.tests}
    data.pending = [PendingLine(names.get(p.test_code, p.test_code), owners.get(p.owner_id, ""), p.due_date,
                                p.resolved_at) for p in pending]
    for lot_review, sig in reviews_of(session, lot):
        what = ("Batch record reviewed by exception" if lot_review.kind == "batch_record"
                else "Audit trail of the lot reviewed")
        if line := _sig_line(f"{what} (up to audit event {lot_review.up_to_seq})", sig):
            data.reviews.append(line)
    for decision, sig in decisions_with_signatures(session, lot):
        if line := _sig_line(DECISION_TITLES.get(decision.decision, decision.decision), sig, decision.reason or ""):
            data.decisions.append(line)
    return data


def _donor_line(test: ReleaseTest, donation: Donation | None, donor_tests: dict,
                eligibility: Signature | None) -> TestLine:
    """A donor-stage test is evidenced by the donation's record and QA's signed eligibility decision."""
    recorded = donor_tests.get(test.code.removeprefix("donor_"))
    if recorded is not None:
        shown = f"{recorded.result} (donor sample {recorded.sample_date.isoformat()}, {recorded.laboratory})"
    else:
        shown = "per the donation's eligibility record"
    stands = (donation is not None and Eligibility(donation.eligibility) is Eligibility.eligible
              and eligibility is not None and eligibility.invalidated_at is None)
    reviewer = f"{eligibility.signer_name}, {text(eligibility.meaning)} (donor eligibility)" if eligibility else ""
    return TestLine(test.code, test.name, test.method, test.acceptance.describe(test.unit), shown,
                    "pass" if stands else "no result", reviewer, eligibility.at if eligibility else None)


# --- rendering --------------------------------------------------------------------------------


def manufacturer_line(manufacturer: str | None, authorisation: str) -> str:
    """Who made the lot and under which authorisation, as every certificate prints it."""
    made = manufacturer or "not named in this specification version"
    return f"{made}; manufacturing authorisation {authorisation or 'not set (CELLBENCH_MANUFACTURING_AUTHORISATION)'}"


def _facts(pdf: RecordPDF, data: CertificateData, zone: ZoneInfo, authorisation: str) -> None:
    lot = data.lot
    rows = [("Product", f"{data.product} ({data.product_code})"),
            ("Manufacturer", manufacturer_line(data.manufacturer, authorisation)),
            ("Lot number", lot.number),
            ("Specification", f"{data.product_code} version {data.spec_version}"),
            ("Expiry", lot.expiry.isoformat() if lot.expiry else "not set"),
            ("Lot state", text(lot.state))]
    if data.donation:
        rows.append(("Donation", data.donation))
    pdf.pairs(rows)
    pdf.ln(2)


def _signature_rows(pdf: RecordPDF, lines: list[SignatureLine], zone: ZoneInfo, empty: str) -> None:
    if not lines:
        pdf.line_of([("", empty)])
        return
    pdf.grid(("Signature", "Printed name", "Meaning", "Time", "Note"), (48, 32, 20, 34, 52),
             [[line.label + (f"\nINVALIDATED: {line.void}" if line.void else ""), line.name, line.meaning,
               clock.local_text(line.at, zone, clock.SECONDS), line.note] for line in lines])


def _pending_rows(pending: list[PendingLine], zone: ZoneInfo) -> list[list]:
    return [[p.test, p.owner, p.due.isoformat(), clock.local_text(p.resolved, zone, clock.MINUTES) if p.resolved
             else "open"] for p in pending]


def _new_pdf(title: str, data: CertificateData, zone: ZoneInfo, printed_by: str, printed_at: datetime) -> RecordPDF:
    return certificate_start(f"{title} — lot {data.lot.number}", f"Lot {data.lot.number} · {title.lower()}", "",
                             zone=zone, printed_by=printed_by, printed_at=printed_at)


def coa_pdf(data: CertificateData, *, zone: ZoneInfo, printed_by: str, printed_at: datetime,
            authorisation: str = "") -> bytes:
    """Certificate of analysis: every release test of the lot's specification version."""
    pdf = _new_pdf("Certificate of analysis", data, zone, printed_by, printed_at)
    _facts(pdf, data, zone, authorisation)
    pdf.heading("Release tests")
    rows = []
    for t in data.tests:
        verdict: object = {"text": t.verdict, "style": OOS} if t.failing else t.verdict
        reviewer = f"{t.reviewer}, {clock.local_text(t.reviewed_at, zone, clock.MINUTES)}" if t.reviewer else "—"
        rows.append([t.name, t.method, t.criterion, t.result, verdict, reviewer])
    pdf.grid(("Test", "Method", "Acceptance criterion", "Result", "Verdict", "Reviewed by"), (32, 36, 34, 26, 24, 34),
             rows)
    pdf.ln(1)
    conclusion = ("All release tests meet the specification." if data.conforms else
                  "Not every release test has a reviewed result within specification (see the verdicts above).")
    pdf.line_of([("B", "Conclusion: "), ("", conclusion)])
    if data.pending:
        pdf.heading("Tests pending at initial certification")
        pdf.grid(("Test", "Owner", "Due", "Resolved"), (60, 50, 30, 46),
                 _pending_rows(data.pending, zone))
    pdf.heading("Signatures")
    _signature_rows(pdf, data.reviews + data.decisions, zone, "No review or certification signed yet.")
    return bytes(pdf.output())


def release_certificate_pdf(data: CertificateData, *, zone: ZoneInfo, printed_by: str,
                            printed_at: datetime, authorisation: str = "") -> bytes:
    """Release certificate: the QP's certification(s) and the sponsor release, with their signatures."""
    pdf = _new_pdf("Release certificate", data, zone, printed_by, printed_at)
    _facts(pdf, data, zone, authorisation)
    state = LotState(data.lot.state)
    if state is LotState.released:
        status = "RELEASED: certified by the QP and released by the sponsor; the lot may be used for kits."
    elif state is LotState.rejected:
        status = "REJECTED: the lot must not be used."
    else:
        status = f"NOT RELEASED: the lot is {text(state)}; it must not be used for kits."
    pdf.line_of([("B", "Status: "), ("", status)])
    pdf.heading("QP certification")
    _signature_rows(pdf, [d for d in data.decisions if d.label.startswith("QP")], zone, "Not certified.")
    if data.pending:
        pdf.ln(1)
        pdf.grid(("Pending test", "Owner", "Due", "Resolved"), (60, 50, 30, 46),
                 _pending_rows(data.pending, zone))
    pdf.heading("Sponsor release")
    _signature_rows(pdf, [d for d in data.decisions if d.label == "Sponsor release"], zone, "Not released.")
    others = [d for d in data.decisions if not d.label.startswith("QP") and d.label != "Sponsor release"]
    if others:
        pdf.heading("Other decisions")
        _signature_rows(pdf, others, zone, "")
    pdf.heading("QA reviews before certification")
    _signature_rows(pdf, data.reviews, zone, "None.")
    return bytes(pdf.output())

