"""Second-person review of a result and QA's signed invalidation, and the QC work queues."""
from __future__ import annotations

from sqlalchemy import Select, and_, distinct, false, func, or_, select
from sqlmodel import Session, col

from .. import audit, lots, pagination, signatures, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, DomainError, Forbidden
from ..models import Lot, LotState, Meaning, QcResult, Signature, SpecVersion, User, Visibility
from ..specifications import versions as spec_versions
from .results import INVALIDATORS, REVIEWERS, needs_lot_result


def lock_result(session: Session, result: QcResult) -> QcResult:
    query = (select(QcResult).where(col(QcResult.id) == result.id).with_for_update()
             .execution_options(populate_existing=True))
    return session.scalars(query).one()


def review_refusal(session: Session, reviewer_id: int | None, result: QcResult) -> DomainError | None:
    """Why this person cannot review this result, or None: the one rule of second-person review,
    for a single result and for each member of a set."""
    if result.entered_by == reviewer_id:
        return Forbidden(f"Nobody reviews their own result: result #{result.id} ({result.test_code}) was entered by "
                         "you, so a second person must review it.", field="result")
    if result.invalidated_at is not None:
        return Conflict(f"Result #{result.id} was invalidated: there is nothing to review.", field="result")
    if result.review_signature_id is not None:
        done = session.get(Signature, result.review_signature_id)
        by = f" by {done.signer_name}" if done is not None else ""
        return Conflict(f"Result #{result.id} was already reviewed{by}.", field="result")
    return None


def mark_reviewed(session: Session, actor: Actor, result: QcResult, sig: Signature, note: str = "") -> None:
    """The result's review state and its audit event, in the signing transaction."""
    result.review_signature_id = sig.id
    session.flush()
    audit.record(session, actor, "qc result reviewed", "qc_result", result.id, field="review_signature",
                 new=f"#{sig.id}{note}", visibility=Visibility.unblinded)


def review_result(session: Session, reviewer: User, password: str, result: QcResult) -> Signature:
    """A second person (QC analyst or QA, never the one who entered it) reviews and signs a result."""
    actor = users.actor(session, reviewer)
    users.require_role(actor, *REVIEWERS)
    result = lock_result(session, result)
    if refusal := review_refusal(session, reviewer.id, result):
        raise refusal
    sig = signatures.sign(session, reviewer, password, Meaning.reviewed, "qc_result", str(result.id))
    mark_reviewed(session, actor, result, sig)
    return sig


def invalidate_result(session: Session, qa: User, password: str, result: QcResult, reason: str | None) -> Signature:
    """QA invalidates a result with a reason and a signature (meaning "rejected"). The row stays,
    with its reason; an invalidated OOS result no longer keeps its test out of specification."""
    actor = users.actor(session, qa)
    users.require_role(actor, *INVALIDATORS)
    reason = audit.require_reason(reason)
    result = lock_result(session, result)
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

AWAITING_RESULTS = (LotState.qc_pending, LotState.initial_certified, LotState.released_for_shipment)


# By lot id: the order lots were started in, the same for every reader.
AWAITING_ORDER = pagination.Order("lots awaiting results", (col(Lot.id),))


def awaiting_results_query(session: Session) -> Select:
    """Lots that still need results, as a query of lots (unordered: AWAITING_ORDER): a lot waits while one of its
    specification's lot-stage tests has no valid result (one that is not invalidated; test_status
    calls the rest MISSING or INVALIDATED_ONLY).

    Left in the database so that the QC analyst's home line reads two lots and a count, and /qc a
    page: one statement for the specification versions of the waiting lots and one read of each,
    then each waiting lot's valid tests counted along (lot_id, invalidated_at, test_code)
    (0037_homes), instead of every waiting lot and its results read into Python (96 lots and
    1,120 results at ten years)."""
    states = [s.value for s in AWAITING_RESULTS]
    waiting = select(Lot).where(col(Lot.state).in_(states))
    versions = sorted(session.scalars(select(col(Lot.spec_version_id)).where(col(Lot.state).in_(states)).distinct()))
    owed = []
    for version_id in versions:
        required = _required(session.get(SpecVersion, version_id))
        if required:
            valid = (select(func.count(distinct(col(QcResult.test_code))))
                     .where(col(QcResult.lot_id) == col(Lot.id), col(QcResult.invalidated_at).is_(None),
                            col(QcResult.test_code).in_(required)).scalar_subquery())
            owed.append(and_(col(Lot.spec_version_id) == version_id, valid < len(required)))
    return waiting.where(or_(*owed) if owed else false())


def _required(row: SpecVersion | None) -> list[str]:
    """The lot-stage release tests of a specification version, by code."""
    if row is None:
        return []
    return sorted({test.code for test in spec_versions.parsed(row).tests if needs_lot_result(test)})


def missing_of(session: Session, waiting_lots: list[Lot]) -> list[tuple[Lot, int]]:
    """(lot, how many of its lot-stage tests have no valid result) for these lots, in one read of
    their valid results' codes."""
    if not waiting_lots:
        return []
    covered: dict[int, set[str]] = {}
    for lot_id, code in session.execute(
            select(col(QcResult.lot_id), col(QcResult.test_code)).distinct()
            .where(col(QcResult.lot_id).in_([lot.id for lot in waiting_lots]), col(QcResult.invalidated_at).is_(None))):
        covered.setdefault(lot_id, set()).add(code)
    return [(lot, sum(1 for code in _required(lots.spec_of(session, lot)) if code not in covered.get(lot.id or 0, ())))
            for lot in waiting_lots]


def lots_awaiting_results(session: Session) -> list[tuple[Lot, int]]:
    """Every lot that still needs results, with how many tests (awaiting_results_query): for the
    tests and exports; pages read a page of the query."""
    return missing_of(session, list(session.scalars(awaiting_results_query(session).order_by(*AWAITING_ORDER.columns))))


def results_awaiting_review(session: Session, reviewer_id: int | None = None) -> list[tuple[Lot, list[QcResult]]]:
    """Valid results nobody has reviewed yet, per lot; without those the reviewer entered."""
    query = select(QcResult).where(col(QcResult.review_signature_id).is_(None),
                                   col(QcResult.invalidated_at).is_(None))
    if reviewer_id is not None:
        query = query.where(col(QcResult.entered_by) != reviewer_id)
    by_lot: dict[int, list[QcResult]] = {}
    for result in session.scalars(query.order_by(col(QcResult.id))):
        by_lot.setdefault(result.lot_id, []).append(result)
    lots = {lot.id: lot for lot in session.scalars(select(Lot).where(col(Lot.id).in_(list(by_lot))))} if by_lot else {}
    return [(lots[lot_id], rows) for lot_id, rows in by_lot.items() if lot_id in lots]
