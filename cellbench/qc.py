"""QC results: entered per release test of the lot's own specification version, judged by
specifications.evaluate (the one pure function that says pass or out of specification), reviewed
by a second person before they count.

A result is never overwritten. A retest is a new row linked to the result it retests, and the
original stays. An invalidated result stays too, with QA's reason and signature.

Retesting into compliance is not allowed: a passing retest does not clear an out-of-specification
result. The OOS stands until QA invalidates that result, with a reason and a signature (normally
after the OOS investigation found a laboratory error). Only then does the retest count.

Every OOS result opens an investigation deviation at once. An OOS arriving after the lot was
certified (initial or final) or released also marks the lot (an audited "post-certification OOS")
and calls every function in POST_CERTIFICATION_OOS_HOOKS; the kits work registers its
blind-preserving quarantine there. The lot's state does not change here: QA and the QP decide.

The audit events of this module are unblinded: what a QC result says about a lot, and when, could
be set beside a kit quarantine that a blinded user sees.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session, col

from . import audit, deviations, lots, signatures, users
from .audit import Actor
from .clock import utcnow
from .errors import Conflict, Forbidden, InvalidInput, NotFound
from .models import AuditEvent, Lot, LotState, Meaning, QcResult, Role, Signature, User, Visibility
from .specifications import ReleaseTest, Specification, Verdict, evaluate
from .specifications import versions as spec_versions

ANALYSTS = (Role.qc_analyst,)
REVIEWERS = (Role.qc_analyst, Role.qa)
INVALIDATORS = (Role.qa,)
# The states in which results may still arrive. A lot on hold counts as the state it was held from.
ENTRY_STATES = frozenset({LotState.qc_pending, LotState.initial_certified, LotState.qp_certified, LotState.released})
POST_CERTIFICATION = frozenset({LotState.initial_certified, LotState.qp_certified, LotState.released})
POST_CERTIFICATION_OOS = "post-certification OOS"
SAMPLE_ID_MAX = 64

# Called as hook(session, actor, lot, result) in the transaction that records a post-certification
# OOS. A hook that raises rolls the whole entry back: the result is saved with its consequences or
# not at all.
PostCertificationHook = Callable[[Session, Actor, Lot, QcResult], None]
POST_CERTIFICATION_OOS_HOOKS: list[PostCertificationHook] = []

# Test states, worst first.
MISSING, INVALIDATED_ONLY, OOS, UNREVIEWED, PASS = "missing", "invalidated_only", "oos", "unreviewed", "pass"
STATES = (MISSING, INVALIDATED_ONLY, OOS, UNREVIEWED, PASS)

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


# --- what signatures cover --------------------------------------------------------------------


def _core(session: Session, result: QcResult) -> dict:
    """The immutable fields of a result: what its reviewer signs and what decisions stand on."""
    return {"lot": session.scalar(select(col(Lot.number)).where(col(Lot.id) == result.lot_id)), "test": result.test_code,
            "value": result.value, "unit": result.unit, "verdict": result.verdict, "retest_of": result.retest_of,
            "sample_id": result.sample_id, "entered_by_name": result.entered_by_name,
            "entered_at": result.entered_at}


def _result_for_rule(session: Session, result_id: str) -> QcResult:
    result = session.get(QcResult, int(result_id)) if str(result_id).isdigit() else None
    if result is None:
        raise NotFound("No such QC result.", field="result")
    return result


@signatures.content_rule("qc_result")
def _result_content(session: Session, result_id: str) -> dict:
    return _core(session, _result_for_rule(session, result_id))


@signatures.content_rule("qc_result_invalidation")
def _invalidation_content(session: Session, result_id: str) -> dict:
    # Its own entity type, so that QA's signature covers the reason as well as the result.
    result = _result_for_rule(session, result_id)
    return {**_core(session, result), "invalidated_at": result.invalidated_at,
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
    result = session.get(QcResult, int(text)) if text.isdigit() and len(text) < 19 else None
    if result is None or result.lot_id != lot.id:
        raise NotFound(f"Lot {lot.number} has no QC result '{text}'.", field="result")
    return result


def _current(results: list[QcResult]) -> QcResult | None:
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
    return {code: current for code, rows in by_test.items() if (current := _current(rows)) is not None}


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
    current = _current(rows)
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
    if status.state == UNREVIEWED:
        return f"{name}: result #{status.result.id} awaits review by a second person."
    return None


def release_test_problems(session: Session, lot: Lot) -> list[str]:
    """One sentence per required-for-release test that is missing, unreviewed or out of specification.

    Donor-stage tests are left out: the donation's QA-signed eligibility decision (donors.py) is their
    record, and the release gate `donor_eligible` checks it; entering them again as lot results would
    keep the same facts twice."""
    return [why for status in test_status(session, lot)
            if status.test.required_for_release and status.test.stage != "donor" and (why := problem(status))]


def post_certification_oos(session: Session, lot: Lot) -> list[QcResult]:
    """The OOS results that arrived after the lot was certified or released, oldest first."""
    query = select(col(AuditEvent.field), col(AuditEvent.new_value)).where(
        col(AuditEvent.entity_type) == "lot", col(AuditEvent.entity_id) == lot.number,
        col(AuditEvent.action) == POST_CERTIFICATION_OOS).order_by(col(AuditEvent.seq))
    ids = [int(new) for field, new in session.execute(query) if field == "qc_result" and (new or "").isdigit()]
    return [r for r in (session.get(QcResult, i) for i in ids) if r is not None]


def signatures_of(session: Session, results: list[QcResult]) -> dict[int, Signature]:
    """Review and invalidation signatures of these results, by signature id."""
    ids = {i for r in results for i in (r.review_signature_id, r.invalidation_signature_id) if i}
    if not ids:
        return {}
    return {s.id: s for s in session.scalars(select(Signature).where(col(Signature.id).in_(ids)))}


# --- entering ---------------------------------------------------------------------------------


def _value_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        raise InvalidInput("The result must be a number or the result word, not true or false.", field="value")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidInput("The result must be a finite number.", field="value")
        return repr(value)
    if not isinstance(value, str):
        raise InvalidInput("The result must be text or a number.", field="value")
    return value.strip()


def judge(test: ReleaseTest, value: object) -> tuple[str, Verdict]:
    """The value as it is stored and its verdict; InvalidInput naming `value` when it cannot be read."""
    text = _value_text(value)
    criterion = test.acceptance
    if not text:
        raise InvalidInput(f"Enter the result of {test.name}.", field="value")
    if len(text) > 200:
        raise InvalidInput("The result is at most 200 characters.", field="value")
    if criterion.kind == "range":
        unit = f" in {test.unit}" if test.unit else ""
        if "," in text:  # "1,5" is 1.5 in Danish and 15 elsewhere: refuse to guess
            raise InvalidInput(f"Use a decimal point, not a comma (got '{text}').", field="value")
        if not _NUMBER.fullmatch(text):
            if text[:1] in "<>≤≥":
                raise InvalidInput(f"Enter a number{unit}, not a comparison (got '{text}'). For a result below the "
                                   "quantitation limit, enter the limit and record it in the sample's raw data.",
                                   field="value")
            if _NUMBER.match(text):
                raise InvalidInput(f"Type the number only: the unit{f' ({test.unit})' if test.unit else ''} is set by "
                                   f"the specification (got '{text}').", field="value")
            raise InvalidInput(f"{test.name} needs a number{unit} (got '{text}').", field="value")
        number = float(text)
        if not math.isfinite(number):
            raise InvalidInput(f"'{text}' is too large to be a result.", field="value")
        subject: object = number
    else:
        subject = text
    try:
        return text, evaluate(criterion, subject)
    except ValueError as error:
        message = str(error).removeprefix("result: ")
        raise InvalidInput(f"{test.name}: {message}.", field="value") from None


def _sample_id(sample_id: str | None) -> str | None:
    text = (sample_id or "").strip() or None
    if text is not None and len(text) > SAMPLE_ID_MAX:
        raise InvalidInput(f"The sample id is at most {SAMPLE_ID_MAX} characters.", field="sample_id")
    return text


def _lock_lot(session: Session, lot: Lot) -> Lot:
    """The lot row, locked and read fresh: results and lot decisions on one lot happen one at a time
    (on PostgreSQL a concurrent entry waits here, then sees what the first one did)."""
    query = select(Lot).where(col(Lot.id) == lot.id).with_for_update().execution_options(populate_existing=True)
    return session.scalars(query).one()


def _lock_result(session: Session, result: QcResult) -> QcResult:
    query = (select(QcResult).where(col(QcResult.id) == result.id).with_for_update()
             .execution_options(populate_existing=True))
    return session.scalars(query).one()


def _retest_target(session: Session, lot: Lot, test: ReleaseTest, retest_of: int | str,
                   current: QcResult | None) -> QcResult:
    try:
        original = result_of_lot(session, lot, retest_of)
    except NotFound as missing:
        raise NotFound(missing.message, field="retest_of") from None
    if original.test_code != test.code:
        raise InvalidInput(f"Result #{original.id} is a result of {original.test_code}, not of {test.code}.",
                           field="retest_of")
    if original.invalidated_at is not None:
        raise InvalidInput(f"Result #{original.id} was invalidated: enter a new result, not a retest of it.",
                           field="retest_of")
    if current is not None and original.id != current.id:
        raise InvalidInput(f"Result #{original.id} has already been retested: retest the latest result "
                           f"#{current.id}.", field="retest_of")
    return original


def _describe(test: ReleaseTest, result: QcResult) -> str:
    return f"{result.value}{f' {result.unit}' if result.unit else ''}"


def enter_result(session: Session, actor: Actor, lot: Lot, test_code: str, value: object, *,
                 sample_id: str | None = None, retest_of: int | None = None,
                 seen_version: int | None = None) -> QcResult:
    """A QC analyst enters one result of one release test of the lot's specification version.

    A test that already has a current result takes only a retest of it (retest_of); the original
    stays. Retesting into compliance is not allowed: a passing retest does not clear an OOS result,
    which stands until QA invalidates it with a reason and a signature (invalidate_result).
    An OOS verdict opens an investigation deviation at once; after certification it also marks the
    lot and calls POST_CERTIFICATION_OOS_HOOKS."""
    users.require_role(actor, *ANALYSTS)
    lot = _lock_lot(session, lot)
    state = effective_state(lot)
    if state not in ENTRY_STATES:
        raise InvalidInput(f"Lot {lot.number} is {LotState(lot.state).value.replace('_', ' ')}: QC results are "
                           "entered once its batch record is complete, and not after it is rejected.", field="lot")
    spec = spec_of(session, lot)
    test = release_test(spec, test_code)
    if test is None:
        row = lots.spec_of(session, lot)
        raise InvalidInput(f"Lot {lot.number} ({spec_versions.label(row)}) has no release test "
                           f"'{(test_code or '').strip()}'.", field="test_code")
    text, verdict = judge(test, value)
    sample = _sample_id(sample_id)
    current = _current(results_of(session, lot, test.code))
    original = None
    if retest_of is not None and str(retest_of).strip() != "":
        original = _retest_target(session, lot, test, retest_of, current)
    elif current is not None:
        raise Conflict(f"{test.name} already has result #{current.id} ({_describe(test, current)}). A result is never "
                       "overwritten: enter a retest of it instead.", field="retest_of")
    lots.claim(session, lot, seen_version)  # a page showing the lot before this result is now stale
    result = QcResult(lot_id=lot.id, test_code=test.code, sample_id=sample, value=text, unit=test.unit,
                      verdict=verdict.value, entered_by=actor.user_id, entered_by_name=actor.name,
                      entered_at=utcnow(), retest_of=original.id if original else None)
    session.add(result)
    session.flush()
    audit.record(session, actor, "qc retest entered" if original else "qc result entered", "qc_result", result.id,
                 field=test.code, new={"lot": lot.number, "value": text, "unit": test.unit, "verdict": verdict,
                                       "sample_id": sample, "retest_of": result.retest_of},
                 visibility=Visibility.unblinded)
    if verdict is Verdict.OOS:
        _open_investigation(session, actor, lot, test, result, state)
        if state in POST_CERTIFICATION:
            on_post_certification_oos(session, actor, lot, result)
    session.flush()
    return result


def _open_investigation(session: Session, actor: Actor, lot: Lot, test: ReleaseTest, result: QcResult,
                        state: LotState) -> None:
    description = (f"Out-of-specification QC result on lot {lot.number}: {test.name} ({test.code}) = "
                   f"{_describe(test, result)}; acceptance criterion {test.acceptance.describe(test.unit)}. "
                   f"Result #{result.id}, entered by {result.entered_by_name}"
                   + (f", retest of result #{result.retest_of}" if result.retest_of else "") + ". "
                   "Investigate before any retest; a passing retest does not clear this result.")
    if state in POST_CERTIFICATION:
        description += (f" The lot was already {state.value.replace('_', ' ')}: its kits are to be quarantined "
                        "without breaking the blind, and the sites' investigators informed.")
    deviation = deviations.raise_deviation(session, actor, lot_id=lot.id, origin="oos", severity="major",
                                           description=description)
    result.deviation_id = deviation.id
    session.flush()
    audit.record(session, actor, "oos investigation opened", "qc_result", result.id, field="deviation",
                 new=deviation.number, visibility=Visibility.unblinded)


def on_post_certification_oos(session: Session, actor: Actor, lot: Lot, result: QcResult) -> None:
    """Mark the lot (an audited event post_certification_oos() finds) and call every registered
    hook. The lot's state is left as it is: QA and the QP decide what happens to it."""
    audit.record(session, actor, POST_CERTIFICATION_OOS, "lot", lot.number, field="qc_result", new=result.id,
                 reason=f"{result.test_code} out of specification while the lot is "
                        f"{LotState(lot.state).value.replace('_', ' ')}",
                 visibility=Visibility.unblinded)
    for hook in POST_CERTIFICATION_OOS_HOOKS:
        hook(session, actor, lot, result)


# --- review and invalidation ------------------------------------------------------------------


def review_result(session: Session, reviewer: User, password: str, result: QcResult) -> Signature:
    """A second person (QC analyst or QA, never the one who entered it) reviews and signs a result."""
    actor = users.actor(session, reviewer)
    users.require_role(actor, *REVIEWERS)
    result = _lock_result(session, result)
    if result.entered_by == reviewer.id:
        raise Forbidden("Nobody reviews their own result: a second person must review it.")
    if result.invalidated_at is not None:
        raise Conflict(f"Result #{result.id} was invalidated: there is nothing to review.", field="result")
    if result.review_signature_id is not None:
        done = session.get(Signature, result.review_signature_id)
        raise Conflict(f"Result #{result.id} was already reviewed by {done.signer_name}.", field="result")
    sig = signatures.sign(session, reviewer, password, Meaning.reviewed, "qc_result", str(result.id))
    result.review_signature_id = sig.id
    session.flush()
    audit.record(session, actor, "qc result reviewed", "qc_result", result.id, field="review_signature",
                 new=f"#{sig.id}", visibility=Visibility.unblinded)
    return sig


def invalidate_result(session: Session, qa: User, password: str, result: QcResult, reason: str | None) -> Signature:
    """QA invalidates a result with a reason and a signature (meaning "rejected"). The row stays,
    with its reason; an invalidated OOS result no longer keeps its test out of specification."""
    actor = users.actor(session, qa)
    users.require_role(actor, *INVALIDATORS)
    reason = audit.require_reason(reason)
    result = _lock_result(session, result)
    if result.entered_by == qa.id:
        raise Forbidden("Nobody invalidates their own result.")
    if result.invalidated_at is not None:
        raise Conflict(f"Result #{result.id} is already invalidated.", field="result")
    result.invalidated_at, result.invalidation_reason = utcnow(), reason
    session.flush()  # QA's signature covers the reason
    sig = signatures.sign(session, qa, password, Meaning.rejected, "qc_result_invalidation", str(result.id),
                          reason=reason)
    result.invalidation_signature_id = sig.id
    session.flush()
    audit.record(session, actor, "qc result invalidated", "qc_result", result.id, field="invalidated",
                 old="valid", new=f"invalidated, signature #{sig.id}", reason=reason, visibility=Visibility.unblinded)
    return sig


# --- work queues ------------------------------------------------------------------------------

AWAITING_RESULTS = (LotState.qc_pending, LotState.initial_certified)


def lots_awaiting_results(session: Session) -> list[tuple[Lot, int]]:
    """Lots that still need results: (lot, how many required tests have no valid result)."""
    waiting = []
    for lot in session.scalars(select(Lot).where(col(Lot.state).in_([s.value for s in AWAITING_RESULTS]))
                               .order_by(col(Lot.id))):
        missing = sum(1 for s in test_status(session, lot)
                      if s.test.required_for_release and s.state in (MISSING, INVALIDATED_ONLY))
        if missing:
            waiting.append((lot, missing))
    return waiting


def results_awaiting_review(session: Session, reviewer_id: int | None = None) -> list[tuple[Lot, list[QcResult]]]:
    """Valid results nobody has reviewed yet, per lot; without those the reviewer entered."""
    query = select(QcResult).where(col(QcResult.review_signature_id).is_(None), col(QcResult.invalidated_at).is_(None))
    if reviewer_id is not None:
        query = query.where(col(QcResult.entered_by) != reviewer_id)
    by_lot: dict[int, list[QcResult]] = {}
    for result in session.scalars(query.order_by(col(QcResult.id))):
        by_lot.setdefault(result.lot_id, []).append(result)
    return [(session.get(Lot, lot_id), rows) for lot_id, rows in by_lot.items()]
