"""What the certificates of a lot print, gathered once inside the transaction into plain rows:
each release test with its method as recorded, its result, verdict and reviewer; who approved the
results; the lot's particulars (manufacturer, batch size, trials); QA's reviews and every signed
decision. Rendering (certificates) touches the database no more.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import func, select
from sqlmodel import Session, col

from .. import lots, qc, studies
from ..donors import decision_signature, tests_of
from ..models import Donation, Eligibility, Equipment, EquipmentUse, Lot, Signature, StepEntry, Vial
from ..reports import DECISION_TITLES, text
from ..specifications import ReleaseTest, Specification, unit_text
from ..specifications import versions as spec_versions
from .decisions import decisions_with_signatures, owner_names, pending_tests
from .reviews import reviews_of

QP_DECISIONS = ("certify_initial", "certify_final", "certify_final_shipped")
RELEASES = ("release", "release_for_shipment")


@dataclass
class SignatureLine:
    label: str
    name: str
    meaning: str
    at: datetime
    void: str = ""  # why it no longer stands; empty while it stands
    note: str = ""  # the reason given with it, e.g. the pending tests of an initial certification
    kind: str = ""  # the decision's move (certify_initial, release, ...); empty for a review or an approval


@dataclass
class TestLine:
    code: str
    name: str
    method: str  # as the specification words it, with the instrument the lot's record shows
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
    batch_size: str = ""  # the units filled, e.g. "10 vials of 1 mL"
    trials: list[str] = field(default_factory=list)  # "NCT07290946 (EU CT 2025-522559-25-00)"
    tests: list[TestLine] = field(default_factory=list)
    pending: list[PendingLine] = field(default_factory=list)
    approvals: list[SignatureLine] = field(default_factory=list)  # who approved the results (see _approvals)
    unreviewed: int = 0  # results on the certificate that no second person has reviewed yet
    reviews: list[SignatureLine] = field(default_factory=list)  # QA's lot reviews
    decisions: list[SignatureLine] = field(default_factory=list)  # QP, sponsor, rejection

    @property
    def conforms(self) -> bool:
        return bool(self.tests) and all(t.verdict == "pass" for t in self.tests)

    @property
    def certifications(self) -> list[SignatureLine]:
        return [d for d in self.decisions if d.kind in QP_DECISIONS]

    @property
    def releases(self) -> list[SignatureLine]:
        return [d for d in self.decisions if d.kind in RELEASES]

    @property
    def other_decisions(self) -> list[SignatureLine]:
        return [d for d in self.decisions if d.kind not in QP_DECISIONS + RELEASES]


def _sig_line(label: str, sig: Signature | None, note: str = "", kind: str = "") -> SignatureLine | None:
    if sig is None:
        return None
    void = (f"invalidated {sig.invalidated_at:%Y-%m-%d %H:%M} UTC: {sig.invalidated_reason}"
            if sig.invalidated_at else "")
    return SignatureLine(label, sig.signer_name, text(sig.meaning), sig.at, void, note, kind)


# --- methods as recorded ------------------------------------------------------------------------


def instruments_used(session: Session, lot: Lot) -> dict[str, list[str]]:
    """The instruments the lot's batch record shows were used, by kind: {"nucleocounter":
    ["NucleoCounter NC-200, asset NC-200"]}."""
    rows = session.execute(select(col(Equipment.equipment_code), col(Equipment.name), col(Equipment.asset_id))
                           .join(EquipmentUse, col(EquipmentUse.equipment_id) == Equipment.id)
                           .join(StepEntry, col(StepEntry.id) == EquipmentUse.entry_id)
                           .where(col(StepEntry.lot_id) == lot.id)
                           .order_by(col(EquipmentUse.id)))
    used: dict[str, list[str]] = {}
    for code, name, asset in rows:
        shown = f"{name}, asset {asset}"
        if shown not in used.setdefault(code, []):
            used[code].append(shown)
    return used


def recorded_method(method: str, spec: Specification, used: dict[str, list[str]]) -> str:
    """The test's method with the instrument the lot's record shows in place of the one the
    specification names by default: the specification says "NucleoCounter NC-100" for its kind of
    counter, the bench recorded the NC-200 it has, and the certificate states what was used.

    QC results do not record their own instrument; the counter, like every instrument of the
    bench, is recorded on the batch-record step that used it, and a QC vial is counted on it."""
    defaults = {item.name: item.code for step in spec.steps for item in step.equipment}
    for default, code in sorted(defaults.items(), key=lambda d: -len(d[0])):
        if default not in method:
            continue
        if used.get(code):
            return method.replace(default, " or ".join(used[code]))
        return f"{method} — no {default} recorded on this lot's batch record"
    return method


# --- gathering ----------------------------------------------------------------------------------


def batch_size(session: Session, lot: Lot, spec: Specification) -> str:
    """The units the lot was filled into (one vial row each, created at fill or receipt)."""
    filled = session.scalar(select(func.count()).select_from(Vial).where(col(Vial.lot_id) == lot.id)) or 0
    dose = spec.product.dose
    unit = dose.unit if filled == 1 else f"{dose.unit}s"
    return f"{filled} {unit} of {dose.fill_volume_ml:g} mL ({filled * dose.fill_volume_ml:g} mL)" if filled else \
        "no units filled yet"


def trials_of(session: Session, product_code: str) -> list[str]:
    """The trials whose arms are filled from this product: their authorisations are the ones the
    QP certifies against."""
    return [f"{s.code} (EU CT {s.eu_ct_number})" for s in studies.all_studies(session)
            if any(arm.product == product_code for arm in studies.definition(s).arms)]


def gather(session: Session, number: str) -> CertificateData:
    lot = lots.by_number(session, number)
    row = lots.spec_of(session, lot)
    spec = spec_versions.parsed(row)
    donation = session.get(Donation, lot.donation_id) if lot.donation_id else None
    data = CertificateData(lot, spec.product.name, row.product_code, row.version, row.kind,
                           donation.identifier if donation else None, spec.product.manufacturer,
                           batch_size(session, lot, spec), trials_of(session, row.product_code))
    statuses = qc.test_status(session, lot)
    sigs = qc.signatures_of(session, [s.result for s in statuses if s.result is not None])
    eligibility = decision_signature(session, donation) if donation else None
    donor_tests = tests_of(session, donation) if donation else {}
    used = instruments_used(session, lot)
    reviewed: list[Signature] = []
    for status in statuses:
        test = status.test
        if not test.required_for_release and status.result is None:
            continue  # e.g. a check made at kit labelling, after release
        if test.stage == "donor" and status.result is None:
            data.tests.append(_donor_line(test, donation, donor_tests, eligibility))
            continue
        result, shown = status.result, "no result"
        if status.state == qc.OOS:
            shown = "; ".join(f"{r.value} {unit_text(r.unit)}".strip() + f" (#{r.id})" for r in status.standing_oos)
        elif result is not None:
            shown = f"{result.value} {unit_text(result.unit)}".strip() + (f" (retest of #{result.retest_of})"
                                                                         if result.retest_of else "")
        review = sigs.get(result.review_signature_id) if result is not None and result.review_signature_id else None
        if review is not None and review.invalidated_at is None:
            reviewed.append(review)
        data.unreviewed += status.state == qc.UNREVIEWED
        reviewer = f"{review.signer_name}, {text(review.meaning)}" if review else ""
        verdict = {qc.PASS: "pass", qc.OOS: "OUT OF SPECIFICATION", qc.UNREVIEWED: "not yet reviewed",
                   qc.MISSING: "no result", qc.INVALIDATED_ONLY: "no valid result"}[status.state]
        data.tests.append(TestLine(test.code, test.name + ("" if test.required_for_release else
                                                           " (not required for release)"),
                                   recorded_method(test.method, spec, used), test.acceptance.describe(
                                       unit_text(test.unit) or None), shown, verdict, reviewer,
                                   review.at if review else None, status.state == qc.OOS))
    data.approvals = _approvals(reviewed, eligibility if any(t.code.startswith("donor_") for t in data.tests)
                                else None)
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
        title = DECISION_TITLES.get(decision.decision, decision.decision)
        if line := _sig_line(title, sig, decision.reason or "", decision.decision):
            data.decisions.append(line)
    return data


def _approvals(reviewed: list[Signature], eligibility: Signature | None) -> list[SignatureLine]:
    """Who approved the results the certificate reports.

    A certificate of analysis is approved here by the second-person review of its results: that
    signature is made over each result's content by a QC analyst or QA who did not enter it
    (qc.review_result), which is what approving an analytical result means (EU GMP Part I chapter 6:
    the record of a test carries the signature of the person who checked it). QA's batch-record review and the QP's
    certification are decisions that rest on the certificate, not approvals of it, and are
    printed as such. The donor tests are approved by QA's signed eligibility decision.
    One line per reviewer: their latest signature, and how many results they signed for."""
    lines = []
    by_signer: dict[str, list[Signature]] = {}
    for sig in reviewed:
        by_signer.setdefault(sig.signer_name, []).append(sig)
    for name, signed in by_signer.items():
        last = max(signed, key=lambda s: s.at)
        count = len({s.entity_id for s in signed})
        note = (f"{count} result{'s' if count != 1 else ''}"
                + (f", {len(signed)} signatures (each in its row above); the latest shown" if len(signed) > 1 else ""))
        lines.append(SignatureLine("Release test results approved by second-person review", name,
                                   text(last.meaning), last.at, note=note))
    if eligibility is not None:
        line = _sig_line("Donor tests approved by QA's donor eligibility decision", eligibility)
        if line is not None:
            lines.append(line)
    return lines


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
    return TestLine(test.code, test.name, test.method, test.acceptance.describe(unit_text(test.unit) or None), shown,
                    "pass" if stands else "no result", reviewer, eligibility.at if eligibility else None)
