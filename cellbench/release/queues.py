"""The release work queues: lots awaiting QA's review, awaiting the QP's certification, awaiting
the sponsor's release; and who reads a lot's release record at all.

A queue is a query: which lots wait for whom is read from the lot's state and what is recorded on
it (QA's signed reviews and whether the lot changed since, open deviations, unassessed excursions,
who signed its steps), in one statement however many lots wait. No queue evaluates a gate. A queue
only decides where a lot is LISTED: the gates are evaluated in full on the lot's release page and
again by `lots.move` when anyone signs, so a lot listed for certification whose QC results or
vials do not hold is shown blocked there and cannot be certified (invariant 3)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, cast, exists, false, func, or_, select
from sqlmodel import Session, col

from .. import pagination
from ..audit import Actor
from ..deviations import NOT_CLOSED
from ..models import (
    AuditEvent,
    Deviation,
    Lot,
    LotReview,
    LotState,
    Meaning,
    PendingTest,
    QcResult,
    Role,
    Signature,
    StepEntry,
    StorageExcursion,
)
from .reviews import REVIEW_KINDS, REVIEWABLE

# Unblinded roles only: a lot's release record names what it is. The pages and the API both
# admit these (the API reads it here, never from the web layer).
READERS = (Role.qa, Role.qp, Role.qc_analyst, Role.supply_manager)


def lots_in(session: Session, *states: LotState) -> list[Lot]:
    return list(session.scalars(select(Lot).where(col(Lot.state).in_([s.value for s in states]))
                                .order_by(col(Lot.number))))


# By lot number (unique); migration 0028 indexes (state, number).
LOT_NUMBER_ORDER = pagination.Order("release lots", (col(Lot.number),))


def lot_page_in(session: Session, ask: pagination.Ask, *states: LotState) -> pagination.Page[Lot]:
    """A page of lots_in."""
    return pagination.page(session, _in(*states), LOT_NUMBER_ORDER, ask)


def _in(*states: LotState) -> Select:
    return select(Lot).where(col(Lot.state).in_([s.value for s in states]))


# --- QA's reviews, as recorded --------------------------------------------------------------------


def _changed_after(up_to: ColumnElement[int]) -> ColumnElement[bool]:
    """The lot has an audit event after `up_to` that changes what QA reviewed: the same scope as
    reviews.latest_change_seq (the lot's own events but its state, its step entries', deviations'
    and QC results'; never its decisions), each probe along ix_audit_entity (type, id, seq)."""
    def after(entity_type: str, entity_id: Any) -> ColumnElement[bool]:  # a column or CAST
        return and_(col(AuditEvent.entity_type) == entity_type, col(AuditEvent.entity_id) == entity_id,
                    col(AuditEvent.seq) > up_to)

    def of_lot(model: type, id_column: Any, entity_type: str) -> ColumnElement[bool]:
        return exists(select(1).select_from(model).join(AuditEvent, after(entity_type, id_column))
                      .where(model.lot_id == Lot.id).correlate_except(model, AuditEvent))  # type: ignore[attr-defined]

    # correlate_except: the lot is two selects out (the review's subquery is between)
    return or_(exists(select(1).where(after("lot", col(Lot.number)), col(AuditEvent.field) != "state")
                      .correlate_except(AuditEvent)),
               of_lot(StepEntry, cast(col(StepEntry.id), String), "step_entry"),
               of_lot(Deviation, col(Deviation.number), "deviation"),
               of_lot(QcResult, cast(col(QcResult.id), String), "qc_result"))


def _reviewed(kind: str) -> ColumnElement[bool]:
    """The lot's latest review of this kind is signed, its signature stands, and the lot has not
    changed since the event it covers: the review gate of gates.py, read from the records."""
    review, later = (LotReview.__table__.alias(name) for name in ("review", "later"))  # type: ignore[attr-defined]
    latest = ~exists().where(later.c.lot_id == review.c.lot_id, later.c.kind == kind, later.c.id > review.c.id)
    return exists(select(1).select_from(review).join(Signature, col(Signature.id) == review.c.signature_id)
                  .where(review.c.lot_id == Lot.id, review.c.kind == kind, latest,
                         col(Signature.invalidated_at).is_(None), ~_changed_after(review.c.up_to_seq)))


def _reviews_current() -> ColumnElement[bool]:
    return and_(*(_reviewed(kind) for kind in REVIEW_KINDS))


# --- what else is recorded against a certification ----------------------------------------------


def _nothing_recorded_blocks() -> ColumnElement[bool]:
    """No deviation QA has not closed and no excursion not assessed acceptable (the deviation and
    excursion gates, read from their rows)."""
    deviation = exists().where(col(Deviation.lot_id) == Lot.id,
                               col(Deviation.state).in_([s.value for s in NOT_CLOSED]))
    acceptable = col(StorageExcursion.acceptable)
    excursion = exists().where(col(StorageExcursion.lot_id) == Lot.id,
                               or_(acceptable.is_(None), acceptable.is_(false())))
    return and_(~deviation, ~excursion)


def _did_not_work_on(user_id: int) -> ColumnElement[bool]:
    """The QP neither performed nor verified a step of the lot (the qp_independent gate)."""
    performed = exists().where(col(StepEntry.lot_id) == Lot.id, col(StepEntry.performed_by) == user_id)
    signed = exists(select(1).select_from(StepEntry).join(Signature, and_(
        col(Signature.entity_type) == "step_entry", col(Signature.entity_id) == cast(col(StepEntry.id), String)))
        .where(col(StepEntry.lot_id) == Lot.id, col(Signature.signer_id) == user_id,
               col(Signature.meaning).in_([Meaning.performed.value, Meaning.verified.value])))
    return and_(~performed, ~signed)


# --- the queues, each a query of lots by number -------------------------------------------------


def awaiting_review() -> Select:
    """Lots awaiting certification whose batch-record or audit-trail review is missing or stale."""
    return _in(*REVIEWABLE).where(~_reviews_current()).order_by(col(Lot.number))


def awaiting_certification(actor: Actor | None = None) -> Select:
    """Lots awaiting certification that QA has reviewed, against which no open deviation or
    unassessed excursion is recorded, and (for this QP, when given) whose steps the QP did not
    sign. Their remaining gates (batch record, QC results, vials, donor) show on the lot's page."""
    query = _in(*REVIEWABLE).where(_reviews_current(), _nothing_recorded_blocks())
    if actor is not None and Role.qp in actor.roles and actor.user_id is not None:
        query = query.where(_did_not_work_on(actor.user_id))
    return query.order_by(col(Lot.number))


def awaiting_sponsor_release() -> Select:
    return _in(LotState.qp_certified).order_by(col(Lot.number))


def _owned_open(user_id: int | None) -> ColumnElement[bool]:
    return and_(col(PendingTest.owner_id) == user_id, col(PendingTest.resolved_at).is_(None))


def pending_owned_by(session: Session, user_id: int | None) -> list[PendingTest]:
    """The open pending tests a QC analyst owns: their results complete an initial certification."""
    return list(session.scalars(select(PendingTest).where(_owned_open(user_id))))


def pending_count(session: Session, user_id: int | None) -> int:
    return session.scalar(select(func.count()).select_from(PendingTest).where(_owned_open(user_id))) or 0


def lots_pending_for(user_id: int | None) -> Select:
    """Lots awaiting final certification with a pending test this QC analyst owns."""
    return _in(*REVIEWABLE).where(exists().where(col(PendingTest.lot_id) == Lot.id, _owned_open(user_id))) \
        .order_by(col(Lot.number))


def page_of(session: Session, query: Select, ask: pagination.Ask) -> pagination.Page[Lot]:
    """A page of one queue, by lot number."""
    return pagination.page(session, query.order_by(None), LOT_NUMBER_ORDER, ask)
