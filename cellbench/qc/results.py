"""QC results as they stand: each release test's current result and state, the sentences that say
why a test does not yet count, and what the review and invalidation signatures cover."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session, col

from .. import inputs, lots, signatures
from ..errors import NotFound
from ..models import Lot, LotState, QcResult, Role, Signature
from ..specifications import ReleaseTest, Specification, Verdict, unit_text
from ..specifications import versions as spec_versions

ANALYSTS = (Role.qc_analyst,)
REVIEWERS = (Role.qc_analyst, Role.qa)
INVALIDATORS = (Role.qa,)
# The states in which results may still arrive. A lot on hold counts as the state it was held from.
ENTRY_STATES = frozenset({LotState.qc_pending, LotState.initial_certified, LotState.released_for_shipment,
                          LotState.qp_certified, LotState.released})
POST_CERTIFICATION = frozenset({LotState.initial_certified, LotState.released_for_shipment, LotState.qp_certified,
                                LotState.released})

# Test states, worst first.
MISSING, INVALIDATED_ONLY, OOS, UNREVIEWED, PASS = "missing", "invalidated_only", "oos", "unreviewed", "pass"
STATES = (MISSING, INVALIDATED_ONLY, OOS, UNREVIEWED, PASS)


# --- what signatures cover --------------------------------------------------------------------


def core_content(session: Session, result: QcResult) -> dict[str, object]:
    """The immutable fields of a result: what its reviewer signs and what decisions stand on."""
    lot_number = session.scalar(select(col(Lot.number)).where(col(Lot.id) == result.lot_id))
    return {"lot": lot_number, "test": result.test_code,
            "value": result.value, "unit": result.unit, "verdict": result.verdict, "retest_of": result.retest_of,
            "sample_id": result.sample_id, "entered_by_name": result.entered_by_name,
            "entered_at": result.entered_at}


def _result_for_rule(session: Session, result_id: str) -> QcResult:
    result = session.get(QcResult, inputs.db_id(result_id, "result", "QC result"))
    if result is None:
        raise NotFound("No such QC result.", field="result")
    return result


@signatures.content_rule("qc_result")
def _result_content(session: Session, result_id: str) -> dict[str, object]:
    return core_content(session, _result_for_rule(session, result_id))


@signatures.content_rule("qc_result_invalidation")
def _invalidation_content(session: Session, result_id: str) -> dict[str, object]:
    # Its own entity type, so that QA's signature covers the reason as well as the result.
    result = _result_for_rule(session, result_id)
    return {**core_content(session, result), "invalidated_at": result.invalidated_at,
            "invalidation_reason": result.invalidation_reason}



# --- reading ----------------------------------------------------------------------------------


def spec_of(session: Session, lot: Lot) -> Specification:
    return spec_versions.parsed(lots.spec_of(session, lot))


def release_test(spec: Specification, test_code: str | None) -> ReleaseTest | None:
    code = (test_code or "").strip()
    return next((t for t in spec.tests if t.code == code), None)


def effective_state(lot: Lot) -> LotState:
    """The lot's state for QC purposes: a held lot is still where it was held from."""
    state = LotState(lot.state)
    if state is LotState.on_hold and lot.state_before_hold:
        return LotState(lot.state_before_hold)
    return state


def results_of(session: Session, lot: Lot, test_code: str | None = None) -> list[QcResult]:
    """Every result of the lot (or of one test), invalidated and retested ones too, oldest first."""
    query = select(QcResult).where(col(QcResult.lot_id) == lot.id)
    if test_code is not None:
        query = query.where(col(QcResult.test_code) == test_code)
    return list(session.scalars(query.order_by(col(QcResult.id))))


def result_of_lot(session: Session, lot: Lot, result_id: int | str | None) -> QcResult:
    """One result of this lot by its id; any other id is not found, whatever lot it belongs to."""
    text = str(result_id if result_id is not None else "").strip()
    try:
        result = session.get(QcResult, inputs.db_id(text, "result", "QC result"))
    except NotFound:
        result = None
    if result is None or result.lot_id != lot.id:
        raise NotFound(f"Lot {lot.number} has no QC result '{text}'.", field="result")
    return result


def current_of(results: list[QcResult]) -> QcResult | None:
    # A result is entered only when its test has no current result, or as a retest of the current
    # one, so the newest result not invalidated is the one no valid retest has superseded.
    valid = [r for r in results if r.invalidated_at is None]
    return valid[-1] if valid else None


def current_results(session: Session, lot: Lot) -> dict[str, QcResult]:
    """The latest valid result per test: not invalidated, not superseded by a valid retest.

    Mind that a current passing retest does not make its test pass: test_status() says whether an
    earlier OOS still stands."""
    by_test: dict[str, list[QcResult]] = {}
    for result in results_of(session, lot):
        by_test.setdefault(result.test_code, []).append(result)
    return {code: current for code, rows in by_test.items() if (current := current_of(rows)) is not None}


@dataclass(frozen=True)
class TestStatus:
    """Where one release test of a lot stands.

    state: missing (no result at all), invalidated_only (every result invalidated), oos (a result
    not invalidated is out of specification, whatever came after it), unreviewed (the current
    result passes but no second person has reviewed it), pass (current result passes, reviewed)."""

    __test__ = False  # not a pytest test class, whatever its name says

    test: ReleaseTest
    result: QcResult | None  # the current result
    state: str
    results: tuple[QcResult, ...] = ()  # every result of the test, oldest first
    standing_oos: tuple[QcResult, ...] = ()  # OOS results not invalidated: each keeps the test OOS


def _status(test: ReleaseTest, rows: list[QcResult]) -> TestStatus:
    current = current_of(rows)
    standing = tuple(r for r in rows if r.invalidated_at is None and r.verdict == Verdict.OOS.value)
    if not rows:
        state = MISSING
    elif standing:
        state = OOS
    elif current is None:
        state = INVALIDATED_ONLY
    elif current.review_signature_id is None:
        state = UNREVIEWED
    else:
        state = PASS
    return TestStatus(test, current, state, tuple(rows), standing)


def test_status(session: Session, lot: Lot) -> list[TestStatus]:
    """Every release test of the lot's specification version, in the specification's order."""
    by_test: dict[str, list[QcResult]] = {}
    for result in results_of(session, lot):
        by_test.setdefault(result.test_code, []).append(result)
    return [_status(test, by_test.get(test.code, [])) for test in spec_of(session, lot).tests]


test_status.__test__ = False  # type: ignore[attr-defined]  # imported into test modules by name


def is_donor_stage(test: ReleaseTest) -> bool:
    """A donor-stage test (the donation's eligibility panel): its record is the donation's QA-signed
    eligibility decision, so it is shown on the lot's QC page but never entered there."""
    return test.stage == "donor"


def needs_lot_result(test: ReleaseTest) -> bool:
    """A test the lot's own reviewed results must cover before release."""
    return test.required_for_release and not is_donor_stage(test)


def _ids(results: tuple[QcResult, ...]) -> str:
    return ", ".join(f"#{r.id}" for r in results)


def problem(status: TestStatus) -> str | None:
    """One sentence on why this test does not yet count toward release, or None."""
    name = status.test.name
    if status.state == MISSING:
        return f"{name} has no result yet."
    if status.state == INVALIDATED_ONLY:
        return f"{name} has no valid result: every result was invalidated."
    if status.state == OOS:
        plural = "s" if len(status.standing_oos) > 1 else ""
        return (f"{name} is out of specification (result{plural} {_ids(status.standing_oos)}); a retest cannot "
                "clear that, only QA's signed invalidation.")
    if status.state == UNREVIEWED and status.result is not None:
        return f"{name}: result #{status.result.id} awaits review by a second person."
    return None


def release_test_problems(session: Session, lot: Lot) -> list[str]:
    """One sentence per required-for-release test that is missing, unreviewed or out of specification.

    Donor-stage tests are left out: the donation's QA-signed eligibility decision (donors.py) is their
    record, and the release gate `donor_eligible` checks it; entering them again as lot results would
    keep the same facts twice."""
    return [why for status in test_status(session, lot)
            if needs_lot_result(status.test) and (why := problem(status))]



def signatures_of(session: Session, results: list[QcResult]) -> dict[int, Signature]:
    """Review and invalidation signatures of these results, by signature id."""
    ids = {i for r in results for i in (r.review_signature_id, r.invalidation_signature_id) if i}
    if not ids:
        return {}
    return {s.id: s for s in session.scalars(select(Signature).where(col(Signature.id).in_(ids))) if s.id is not None}


def describe(test: ReleaseTest, result: QcResult) -> str:
    """A result's value as people read it, with its unit."""
    return f"{result.value}{f' {unit_text(result.unit)}' if result.unit else ''}"
