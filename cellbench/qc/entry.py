"""Entering a QC result: the value read and judged against the lot's own specification version,
retests linked to the result they retest, never an overwrite."""
from __future__ import annotations

import math
import re

from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit, inputs, lots, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..models import Lot, LotState, QcResult, Visibility
from ..specifications import ReleaseTest, Verdict, evaluate
from ..specifications import versions as spec_versions
from .investigations import on_post_certification_oos, open_investigation
from .results import (
    ANALYSTS,
    ENTRY_STATES,
    POST_CERTIFICATION,
    current_of,
    describe,
    effective_state,
    release_test,
    result_of_lot,
    results_of,
    spec_of,
)

SAMPLE_ID_MAX = 64
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # ASCII digits only


def _value_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        raise InvalidInput("The result must be a number or the result word, not true or false.", field="value")
    if isinstance(value, int | float):
        if inputs.huge(value):  # math.isfinite() itself overflows on a 401-digit integer
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


def sample_id_text(sample_id: str | None) -> str | None:
    text = (sample_id or "").strip() or None
    if text is not None and len(text) > SAMPLE_ID_MAX:
        raise InvalidInput(f"The sample id is at most {SAMPLE_ID_MAX} characters.", field="sample_id")
    return text


def _lock_lot(session: Session, lot: Lot) -> Lot:
    """The lot row, locked and read fresh: results and lot decisions on one lot happen one at a time
    (on PostgreSQL a concurrent entry waits here, then sees what the first one did)."""
    query = select(Lot).where(col(Lot.id) == lot.id).with_for_update().execution_options(populate_existing=True)
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


def enter_result(session: Session, actor: Actor, lot: Lot, test_code: str, value: object, *,
                 sample_id: str | None = None, retest_of: int | str | None = None,
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
    sample = sample_id_text(sample_id)
    current = current_of(results_of(session, lot, test.code))
    original = None
    if retest_of is not None and str(retest_of).strip() != "":
        original = _retest_target(session, lot, test, retest_of, current)
    elif current is not None:
        raise Conflict(f"{test.name} already has result #{current.id} ({describe(test, current)}). A result is "
                       "never overwritten: enter a retest of it instead.", field="retest_of")
    lots.claim(session, lot, seen_version)  # a page showing the lot before this result is now stale
    if lot.id is None or actor.user_id is None:
        raise InvalidInput("A QC result is entered by a person on a stored lot.", field="lot")
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
        open_investigation(session, actor, lot, test, result, state)
        if state in POST_CERTIFICATION:
            on_post_certification_oos(session, actor, lot, result)
    session.flush()
    return result

