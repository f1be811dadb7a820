"""The release work queues: lots awaiting QA's review, ready for the QP's certification, awaiting
the sponsor's release; and who reads a lot's release record at all."""
from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session, col

from .. import pagination
from ..audit import Actor
from ..models import Lot, LotState, PendingTest, Role
from .gates import audit_trail_reviewed, batch_record_reviewed, readiness
from .reviews import REVIEWABLE

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
    return pagination.page(session, select(Lot).where(col(Lot.state).in_([s.value for s in states])),
                           LOT_NUMBER_ORDER, ask)


def awaiting_review(session: Session) -> list[Lot]:
    """Lots awaiting certification whose batch-record or audit-trail review is missing or stale."""
    return [lot for lot in lots_in(session, *REVIEWABLE)
            if batch_record_reviewed(session, lot, None) or audit_trail_reviewed(session, lot, None)]


def ready_for_certification(session: Session, actor: Actor | None = None) -> list[Lot]:
    """Lots where every gate of the final certification holds (for this QP, when given)."""
    return [lot for lot in lots_in(session, *REVIEWABLE)
            if all(g.passed for g in readiness(session, lot, actor, "final_certification"))]


def awaiting_sponsor_release(session: Session) -> list[Lot]:
    return lots_in(session, LotState.qp_certified)


def pending_owned_by(session: Session, user_id: int | None) -> list[PendingTest]:
    """The open pending tests a QC analyst owns: their results complete an initial certification."""
    return list(session.scalars(select(PendingTest).where(col(PendingTest.owner_id) == user_id,
                                                          col(PendingTest.resolved_at).is_(None))))


def lots_pending_for(session: Session, user_id: int | None) -> list[Lot]:
    """Lots awaiting final certification with a pending test this QC analyst owns."""
    ids = {p.lot_id for p in pending_owned_by(session, user_id)}
    return [lot for lot in lots_in(session, *REVIEWABLE) if lot.id in ids]

