"""The audit trail and electronic signatures: append-only, hash-chained records."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, text
from sqlmodel import Field, SQLModel

from .base import Meaning, Visibility, timestamp

STANDING = "invalidated_at IS NULL"  # a signature not voided by a correction


class AuditEvent(SQLModel, table=True):
    """Append-only. Nothing updates or deletes these rows; `cellbench verify` proves it."""

    __tablename__ = "audit_event"
    # ix_audit_type_seq: the trail filtered by record type, newest first (migration 0027);
    # ix_audit_user_seq: one user's newest events, "what I did lately" on every home (0029)
    __table_args__ = (Index("ix_audit_entity", "entity_type", "entity_id", "seq"),
                      Index("ix_audit_type_seq", "entity_type", "seq"),
                      Index("ix_audit_user_seq", "user_id", "seq"))

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = timestamp(index=True)
    user_id: int | None = None
    user_name: str = Field(max_length=200)
    action: str = Field(max_length=64)
    entity_type: str = Field(max_length=64)
    entity_id: str = Field(max_length=128)
    field: str | None = Field(default=None, max_length=128)
    old_value: str | None = None
    new_value: str | None = None
    reason: str | None = None
    visibility: Visibility = Field(default=Visibility.everyone, sa_type=String(16))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """The single row every audited transaction locks: it serialises the chain across workers."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str = Field(max_length=64)
    # The checkpoint key's Ed25519 signature of (seq, hash) (checkpoints.signing.head_message),
    # written with the head: whoever moves the head by hand cannot sign it. None: written without the key.
    signature: str | None = Field(default=None, max_length=88)


class AuditCheckpoint(SQLModel, table=True):
    """A signed checkpoint (checkpoints/store.py): at `at`, the chain ended at `seq` with `head_hash`.
    Also appended to a log file beside the key, out of reach of whoever owns the database."""

    __tablename__ = "checkpoint"
    # The last checkpoint before an event and the first after it, per event of a lot's evidence
    # packet; the latest for the hourly task (0038_evidence)
    __table_args__ = (Index("ix_checkpoint_seq", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    seq: int
    head_hash: str = Field(max_length=64)
    at: str = Field(max_length=32)  # the exact UTC text that was signed, not a timestamp read back
    key_id: str = Field(max_length=16)
    signature: str = Field(max_length=88)
    why: str = Field(max_length=16)  # backup, qa review, certificate, hourly, evidence, manual


class Signature(SQLModel, table=True):
    __tablename__ = "signature"
    __table_args__ = (
        Index("ix_signature_entity", "entity_type", "entity_id"),
        # The backstop behind the services' row claims: one standing signature of a meaning per
        # record. A correction voids it (invalidated_at), and the record may then be signed again.
        Index("uq_signature_standing", "entity_type", "entity_id", "meaning", unique=True,
              sqlite_where=text(STANDING), postgresql_where=text(STANDING)),
    )

    id: int | None = Field(default=None, primary_key=True)
    signer_id: int = Field(foreign_key="app_user.id")
    signer_name: str = Field(max_length=200)
    at: datetime = timestamp()
    meaning: Meaning = Field(sa_type=String(16))
    entity_type: str = Field(max_length=64)
    entity_id: str = Field(max_length=128)
    content: str  # canonical JSON of exactly what was signed
    content_hash: str = Field(max_length=64)
    record_hash: str = Field(max_length=64)  # over the fields above; written into the audit chain
    audit_seq: int | None = Field(default=None, foreign_key="audit_event.seq")
    invalidated_at: datetime | None = timestamp(nullable=True)
    invalidated_reason: str | None = None


class AuditReview(SQLModel, table=True):
    """QA's signed review of the audit trail up to one event."""

    __tablename__ = "audit_review"

    id: int | None = Field(default=None, primary_key=True)
    from_seq: int
    to_seq: int
    head_hash: str = Field(max_length=64)
    comment: str | None = None
    signature_id: int | None = Field(default=None, foreign_key="signature.id")
