"""What the lot's QC page shows: the results grid (every lot-stage release test, offered for entry
only while it has no current result), the donor-stage tests with the donation's eligibility, the
results a reviewer may review as one set, and acceptance criteria in plain words."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session, col

from .. import donors
from ..models import Donation, DonorTest, Eligibility, Lot, QcResult, Signature
from ..specifications import ReleaseTest, unit_text
from ..specifications.model import QUALITATIVE
from .results import ENTRY_STATES, TestStatus, effective_state, is_donor_stage, test_status
from .review import review_refusal


def criterion_words(test: ReleaseTest) -> str:
    """The acceptance criterion as a person says it: 'more than 80 %', '20 to 30 × 10⁶ viable
    cells/vial', 'no growth', 'conforms: homogeneous suspension …'."""
    c = test.acceptance
    if c.kind != "range":
        word = QUALITATIVE[c.kind][0]
        return f"{word}: {c.text[:1].lower()}{c.text[1:]}" if c.text else word
    unit = f" {unit_text(test.unit)}" if test.unit else ""
    if c.min is not None and c.max is not None and c.min_inclusive and c.max_inclusive:
        return f"{c.min:g} to {c.max:g}{unit}"
    low = None if c.min is None else f"{'at least' if c.min_inclusive else 'more than'} {c.min:g}"
    high = None if c.max is None else f"{'at most' if c.max_inclusive else 'less than'} {c.max:g}"
    return " and ".join(p for p in (low, high) if p) + unit


def choices(test: ReleaseTest) -> tuple[str, str] | None:
    """The two result words of a qualitative test (the passing one first); None for a number."""
    return None if test.acceptance.kind == "range" else QUALITATIVE[test.acceptance.kind]


def result_text(result: QcResult) -> str:
    """A stored result with its unit as a person writes it: '25.4 × 10⁶ viable cells/vial'."""
    return f"{result.value} {unit_text(result.unit)}".strip()


def grid(session: Session, lot: Lot) -> list[TestStatus]:
    """The lot-stage release tests (donor-stage ones are the donation's), in the specification's order."""
    return [s for s in test_status(session, lot) if not is_donor_stage(s.test)]


def offered(status: TestStatus, lot: Lot) -> bool:
    """Whether the grid offers this test for entry: the lot takes results and the test has no current
    result. A current result is corrected by a retest or QA's invalidation, never in the grid."""
    return effective_state(lot) in ENTRY_STATES and status.result is None


@dataclass(frozen=True)
class DonorStage:
    """The donor-stage tests of a lot's specification, as the donation's record answers them."""

    tests: list[tuple[ReleaseTest, DonorTest | None]]
    donation: Donation | None
    eligibility: Eligibility | None
    decision: Signature | None


def donor_stage(session: Session, lot: Lot) -> DonorStage:
    tests = [s.test for s in test_status(session, lot) if is_donor_stage(s.test)]
    donation = session.get(Donation, lot.donation_id) if lot.donation_id else None
    if donation is None:
        return DonorStage([(t, None) for t in tests], None, None, None)
    recorded = donors.tests_of(session, donation)
    return DonorStage([(t, recorded.get(t.code.removeprefix("donor_"))) for t in tests], donation,
                      Eligibility(donation.eligibility), donors.decision_signature(session, donation))


def awaiting_review(session: Session, lot: Lot) -> list[QcResult]:
    """The lot's valid results nobody has reviewed yet, oldest first."""
    query = select(QcResult).where(col(QcResult.lot_id) == lot.id, col(QcResult.review_signature_id).is_(None),
                                   col(QcResult.invalidated_at).is_(None))
    return list(session.scalars(query.order_by(col(QcResult.id))))


def reviewable_by(session: Session, lot: Lot, reviewer_id: int | None) -> list[QcResult]:
    """The results this person may review as a set: the one review rule, applied to each."""
    return [r for r in awaiting_review(session, lot) if review_refusal(session, reviewer_id, r) is None]
