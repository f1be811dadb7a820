"""QC results in sets: the results of a lot entered at once (one transaction, each result still its
own audited record made by entry.enter_result), and a second person's review of a set of results
under ONE signature whose content covers every member (the entity type `qc_result_set`, checked
again by `cellbench verify`)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session, col

from .. import inputs, lots, signatures, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import InvalidInput, NotFound
from ..models import Lot, Meaning, QcResult, QcReviewSet, QcReviewSetMember, Signature, User, Visibility
from ..specifications import ReleaseTest
from .entry import enter_result, judge, sample_id_text
from .results import ANALYSTS, REVIEWERS, core_content, is_donor_stage, release_test, result_of_lot, spec_of
from .review import lock_result, mark_reviewed, review_refusal

# The entity type of a set review. Written as a literal where it signs and where its content rule is
# registered: the house tests read both from the source.
SET_ENTITY = "qc_result_set"


@dataclass(frozen=True)
class Row:
    """One row of the results grid as typed: an empty value leaves the test for later."""

    test_code: str
    value: object
    sample_id: str | None = None


class ResultSetInvalid(InvalidInput):
    """Bad input in some rows of a set: nothing is saved. `problems` maps each bad row's test code to
    a sentence that names the test; `field` is the first bad row's ("value:<test code>")."""

    def __init__(self, problems: dict[str, str]):
        first = next(iter(problems))
        plural = "s" if len(problems) > 1 else ""
        super().__init__(f"Nothing was saved: correct the row{plural} marked. " + " ".join(problems.values()),
                         field=f"value:{first}")
        self.problems = problems


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def donor_stage_refusal(test: ReleaseTest) -> str | None:
    """Why a test is not entered as a lot result: a donor-stage test belongs to the donation."""
    if is_donor_stage(test):
        return (f"{test.name} is a donor test: its record is the donation's eligibility, signed by QA, "
                "not a result of the lot.")
    return None


def _named(test: ReleaseTest, message: str) -> str:
    return message if test.name in message else f"{test.name}: {message[:1].lower()}{message[1:]}"


def _row_problem(test: ReleaseTest, row: Row) -> str | None:
    """The row checked by the single-result rules (judge, sample id), before anything is written."""
    if why := donor_stage_refusal(test):
        return why
    try:
        judge(test, row.value)
        sample_id_text(row.sample_id)
    except InvalidInput as bad:
        return _named(test, bad.message)
    return None


def enter_results(session: Session, actor: Actor, lot: Lot, rows: Sequence[Row], *,
                  seen_version: int | None = None) -> list[QcResult]:
    """A QC analyst enters the typed rows of the grid at once. Every row is checked first, and one bad
    row saves nothing (ResultSetInvalid names each); empty rows are left for later. Each result is
    then entered by enter_result, with its own audit event, OOS investigation and conflict rules."""
    users.require_role(actor, *ANALYSTS)
    spec = spec_of(session, lot)
    problems: dict[str, str] = {}
    typed: list[Row] = []
    for row in rows:
        code = (row.test_code or "").strip()
        test = release_test(spec, code)
        if test is None:
            problems[code or "?"] = f"This lot's specification has no release test '{code}'."
        elif code in (r.test_code for r in typed):
            problems[code] = f"{test.name} is in the set twice: enter one result per test."
        elif _blank(row.value):
            if not _blank(row.sample_id):
                problems[code] = f"{test.name}: enter the result, or clear its sample id."
        elif why := _row_problem(test, row):
            problems[code] = why
        else:
            typed.append(Row(code, row.value, row.sample_id))
    if problems:
        raise ResultSetInvalid(problems)
    if not typed:
        raise InvalidInput("Enter at least one result: every row of the grid is empty.", field="results")
    if seen_version is not None:
        lots.claim(session, lot, seen_version)  # a grid opened before someone else's entry is stale
    return [enter_result(session, actor, lot, row.test_code, row.value, sample_id=row.sample_id) for row in typed]


def _result_ids(result_ids: Iterable[int | str]) -> list[int]:
    ids: set[int] = set()
    for raw in result_ids:
        text = str(raw).strip().lstrip("#")
        if not text.isdigit() or len(text) > 18:
            raise InvalidInput(f"'{raw}' is not a QC result number.", field="results")
        ids.add(int(text))
    return sorted(ids)


def review_results(session: Session, reviewer: User, password: str, lot: Lot,
                   result_ids: Iterable[int | str]) -> Signature:
    """A second person reviews a set of the lot's results and signs once (meaning "reviewed").

    Each member passes the one review rule (review.review_refusal): not the reviewer's own, not
    invalidated, not yet reviewed, so a second review of the same set is a conflict. The signature's
    content lists every member (id, test, value, unit, verdict, who entered it, when); each member's
    review state and its audit event are written in the same transaction."""
    actor = users.actor(session, reviewer)
    users.require_role(actor, *REVIEWERS)
    ids = _result_ids(result_ids)
    if not ids:
        raise InvalidInput("Choose at least one result to review.", field="results")
    members = [lock_result(session, result_of_lot(session, lot, i)) for i in ids]
    for result in members:
        if refusal := review_refusal(session, reviewer.id, result):
            raise refusal
    if lot.id is None:
        raise InvalidInput("A set of results belongs to a stored lot.", field="lot")
    review_set = QcReviewSet(lot_id=lot.id, created_at=utcnow())
    session.add(review_set)
    session.flush()
    if review_set.id is None:
        raise InvalidInput("The set could not be stored.", field="results")
    session.add_all(QcReviewSetMember(set_id=review_set.id, result_id=r.id) for r in members if r.id is not None)
    session.flush()
    sig = signatures.sign(session, reviewer, password, Meaning.reviewed, "qc_result_set", str(review_set.id),
                          visibility=Visibility.unblinded)
    review_set.signature_id = sig.id
    for result in members:
        mark_reviewed(session, actor, result, sig, f" (set #{review_set.id} of {len(members)})")
    return sig


def set_members(session: Session, set_id: int) -> list[QcResult]:
    query = (select(QcResult).join(QcReviewSetMember, col(QcReviewSetMember.result_id) == col(QcResult.id))
             .where(col(QcReviewSetMember.set_id) == set_id).order_by(col(QcResult.id)))
    return list(session.scalars(query))


@signatures.content_rule("qc_result_set")  # a literal: tests read the registered types from the source
def _set_content(session: Session, set_id: str) -> dict[str, object]:
    review_set = session.get(QcReviewSet, inputs.db_id(set_id, "set", "set of QC results"))
    if review_set is None or review_set.id is None:
        raise NotFound("No such set of QC results.", field="set")
    lot_number = session.scalar(select(col(Lot.number)).where(col(Lot.id) == review_set.lot_id))
    results = []
    for result in set_members(session, review_set.id):
        content = core_content(session, result)
        content.pop("lot")
        results.append({"id": result.id, "entered_by": result.entered_by, **content})
    return {"lot": lot_number, "set": review_set.id, "results": results}
