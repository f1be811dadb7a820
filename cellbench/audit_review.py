"""QA's periodic, signed review of the audit trail (PIC/S PI 041-1 §9).

QA reads the events since the last review and signs with meaning "reviewed". The signature
covers the range and the hash of its last event, so the review pins the chain as it was read.
"""
from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlmodel import Session, col

from . import limits, signatures, users
from .errors import InvalidInput, NotFound
from .models import AuditEvent, AuditHead, AuditReview, Meaning, Role, Signature, User

REVIEWERS = (Role.qa,)  # who reads the pending trail and signs its review


@signatures.content_rule("audit_review")
def _content(session: Session, review_id: str) -> dict[str, Any]:
    review = session.get(AuditReview, int(review_id))
    if review is None:
        raise NotFound("No such audit-trail review.")
    last = session.get(AuditEvent, review.to_seq)
    return {"from_seq": review.from_seq, "to_seq": review.to_seq, "head_hash": review.head_hash,
            "chain_hash_now": last.hash if last else None, "comment": review.comment}


def last_review(session: Session) -> AuditReview | None:
    return session.scalars(select(AuditReview).order_by(col(AuditReview.id).desc())).first()


def pending_range(session: Session) -> tuple[int, int]:
    """The events not yet covered by a review: (first, last); first > last when there are none."""
    last = last_review(session)
    start = (last.to_seq + 1) if last else 1
    end = session.scalar(select(func.max(AuditEvent.seq))) or 0
    return start, end


# What a review does not wait for: people signing in and out (the reviewer's own visit among them) and
# the review's own signature. Failed sign-ins and lock-outs still count.
ROUTINE_ACTIONS = ("signed in", "signed out")


def pending_days(session: Session, zone: ZoneInfo) -> tuple[date, date] | None:
    """The first and last calendar day (in `zone`) of the events awaiting review, or None when only
    routine events (ROUTINE_ACTIONS, sessions ending, the last review's signature) wait: the period
    the next periodic review covers. Look-ups by sequence number, however long the trail."""
    start, end = pending_range(session)
    if end < start:
        return None
    first = session.scalars(select(AuditEvent).where(
        col(AuditEvent.seq) >= start, col(AuditEvent.entity_type) != "audit_review",
        col(AuditEvent.action).not_in(ROUTINE_ACTIONS), col(AuditEvent.action).not_like("session ended%"))
        .order_by(col(AuditEvent.seq)).limit(1)).first()
    last = session.get(AuditEvent, end)
    if first is None or last is None:
        return None
    return first.at.astimezone(zone).date(), last.at.astimezone(zone).date()


def sign_review(session: Session, reviewer: User, password: str, to_seq: int, comment: str | None) -> AuditReview:
    audit_actor = users.actor(session, reviewer)
    users.require_role(audit_actor, *REVIEWERS)
    # The chain head, the one row every audited transaction takes, before the last review is read:
    # two reviews at once, the second waits and then finds its range reviewed (one signature).
    session.execute(select(col(AuditHead.id)).where(col(AuditHead.id) == 1).with_for_update())
    start, end = pending_range(session)
    if to_seq < start or to_seq > end:
        raise InvalidInput(f"The review must end between event {start} and event {end}.", field="to_seq")
    last = session.get(AuditEvent, to_seq)
    if last is None:  # inside the pending range, so only a damaged chain gets here
        raise NotFound(f"Audit event {to_seq} is missing.", field="to_seq")
    review = AuditReview(from_seq=start, to_seq=to_seq, head_hash=last.hash,
                         comment=limits.text(comment, "comment", "comment", "comment"))
    session.add(review)
    session.flush()
    sig = signatures.sign(session, reviewer, password, Meaning.reviewed, "audit_review", str(review.id))
    review.signature_id = sig.id
    session.flush()
    return review


def reviews(session: Session, limit: int = 20) -> list[tuple[AuditReview, Signature | None]]:
    rows = session.execute(
        select(AuditReview, Signature).join(Signature, col(Signature.id) == col(AuditReview.signature_id), isouter=True)
        .order_by(col(AuditReview.id).desc()).limit(limit)
    )
    return [(r, s) for r, s in rows]
