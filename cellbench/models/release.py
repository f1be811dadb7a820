"""QC results and what release stands on: signed lot decisions, pending tests, reviews, excursions."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import timestamp


class QcResult(SQLModel, table=True):
    """One result of one release test. Never overwritten: a retest is a new row linked to the
    original, and an invalidated original stays, with its reason and QA's signature."""

    __tablename__ = "qc_result"
    # a waiting lot's valid tests, counted from the index alone (qc.awaiting_results_query), and the
    # results nobody has reviewed yet, found without reading the reviewed ones (migration 0037_homes)
    __table_args__ = (Index("ix_qc_result_lot_valid", "lot_id", "invalidated_at", "test_code"),
                      Index("ix_qc_result_unreviewed", "review_signature_id", "invalidated_at"))

    id: int | None = Field(default=None, primary_key=True)
    lot_id: int = Field(foreign_key="lot.id", index=True)
    test_code: str = Field(max_length=64)
    sample_id: str | None = Field(default=None, max_length=64)  # the sample label as pulled in the batch record
    value: str  # as entered: a number in the test's unit, or the qualitative word
    unit: str | None = Field(default=None, max_length=32)
    verdict: str = Field(max_length=8)  # pass | oos, from specifications.evaluate
    entered_by: int = Field(foreign_key="app_user.id")
    entered_by_name: str = Field(max_length=200)
    entered_at: datetime = timestamp()
    retest_of: int | None = Field(default=None, foreign_key="qc_result.id")
    review_signature_id: int | None = Field(default=None, foreign_key="signature.id")  # second person
    invalidated_at: datetime | None = timestamp(nullable=True)
    invalidation_reason: str | None = None
    invalidation_signature_id: int | None = Field(default=None, foreign_key="signature.id")
    deviation_id: int | None = Field(default=None, foreign_key="deviation.id")  # the OOS investigation


class QcReviewSet(SQLModel, table=True):
    """A second person's review of a set of QC results under one signature (meaning "reviewed").
    The signature covers every member's content (qc.sets); its members are the rows below."""

    __tablename__ = "qc_review_set"

    id: int | None = Field(default=None, primary_key=True)
    lot_id: int = Field(foreign_key="lot.id", index=True)
    signature_id: int | None = Field(default=None, foreign_key="signature.id")  # set once signed
    created_at: datetime = timestamp()


class QcReviewSetMember(SQLModel, table=True):
    """One result of a reviewed set. A result is reviewed once: the unique result_id makes a second,
    concurrent review of it fail in the database as well as in the rule."""

    __tablename__ = "qc_review_set_member"

    id: int | None = Field(default=None, primary_key=True)
    set_id: int = Field(foreign_key="qc_review_set.id", index=True)
    result_id: int = Field(foreign_key="qc_result.id", unique=True)


class LotDecision(SQLModel, table=True):
    """A signed move of a lot (initial or final certification, sponsor release, rejection, abort).
    Its own immutable row, so the signature covers the decision as taken, whatever the lot does next."""

    __tablename__ = "lot_decision"

    id: int | None = Field(default=None, primary_key=True)
    lot_id: int = Field(foreign_key="lot.id", index=True)
    decision: str = Field(max_length=32)  # the move's name in lots.MOVES
    from_state: str = Field(max_length=24)
    to_state: str = Field(max_length=24)
    reason: str | None = None
    qc_results_up_to: int | None = None  # the newest QC result id when decided: the results it stood on
    signature_id: int | None = Field(default=None, foreign_key="signature.id")
    created_at: datetime = timestamp()


class PendingTest(SQLModel, table=True):
    """A release test still outstanding at an initial certification: who owns it, by when."""

    __tablename__ = "pending_test"
    __table_args__ = (UniqueConstraint("decision_id", "test_code"),)

    id: int | None = Field(default=None, primary_key=True)
    decision_id: int = Field(foreign_key="lot_decision.id", index=True)
    lot_id: int = Field(foreign_key="lot.id", index=True)
    test_code: str = Field(max_length=64)
    owner_id: int = Field(foreign_key="app_user.id")
    due_date: date
    resolved_at: datetime | None = timestamp(nullable=True)


class LotReview(SQLModel, table=True):
    """QA's signed review of a lot: its batch record by exception, or its audit trail."""

    __tablename__ = "lot_review"

    id: int | None = Field(default=None, primary_key=True)
    lot_id: int = Field(foreign_key="lot.id", index=True)
    kind: str = Field(max_length=16)  # batch_record | audit_trail
    up_to_seq: int  # the last audit event of the lot the review covered
    signature_id: int = Field(foreign_key="signature.id")
    created_at: datetime = timestamp()


class StorageExcursion(SQLModel, table=True):
    """A temperature excursion in a lot's storage; it blocks release until QA assesses it."""

    __tablename__ = "storage_excursion"

    id: int | None = Field(default=None, primary_key=True)
    lot_id: int = Field(foreign_key="lot.id", index=True)
    observed_at: datetime = timestamp()
    highest_temperature: float
    description: str
    recorded_by: int = Field(foreign_key="app_user.id")
    assessment: str | None = None
    acceptable: bool | None = None
    assessed_by: int | None = Field(default=None, foreign_key="app_user.id")
    assessed_at: datetime | None = timestamp(nullable=True)
