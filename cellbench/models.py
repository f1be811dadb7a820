"""All tables and enums: the schema on one page.

Timestamps are stored as fixed-width ISO-8601 UTC text ("2026-11-22T03:49:10.123456Z") on every
engine. The audit chain hashes exactly these bytes, so no driver or engine conversion can change
what was hashed, and text of one width sorts in time order for range filters.
"""
from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import Index, String
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

UTC_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_text(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not stored: give a timezone-aware UTC time")
    return moment.astimezone(UTC).strftime(UTC_FORMAT)


def parse_utc_text(value: str) -> datetime:
    return datetime.strptime(value, UTC_FORMAT).replace(tzinfo=UTC)


class UTCTimestamp(TypeDecorator):
    impl = String(27)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # noqa: ANN001
        return None if value is None else utc_text(value)

    def process_result_value(self, value, dialect):  # noqa: ANN001
        return None if value is None else parse_utc_text(value)


class Role(str, enum.Enum):
    operator = "operator"
    verifier = "verifier"
    qc_analyst = "qc_analyst"
    qa = "qa"
    qp = "qp"
    supply_manager = "supply_manager"
    pharmacist = "pharmacist"
    preparer = "preparer"
    investigator = "investigator"
    monitor = "monitor"
    admin = "admin"


# Roles that must never learn an arm. A user holding one of these and an unblinded role at once
# is refused (segregation of duties).
BLINDED_ROLES = frozenset({Role.pharmacist, Role.investigator, Role.monitor, Role.admin})


class Visibility(str, enum.Enum):
    everyone = "all"  # anyone with access to the entity
    unblinded = "unblinded"  # reveals an arm: blinded roles never see it, not even as a gap


class Meaning(str, enum.Enum):
    performed = "performed"
    verified = "verified"
    reviewed = "reviewed"
    approved = "approved"
    certified = "certified"
    released = "released"
    rejected = "rejected"
    unblinded = "unblinded"
    destroyed = "destroyed"


def _ts(nullable: bool = False, index: bool = False):  # noqa: ANN202
    return Field(default=None, sa_type=UTCTimestamp, nullable=nullable, index=index)


# --- users, sessions, tokens -------------------------------------------------------------------


class User(SQLModel, table=True):
    __tablename__ = "app_user"  # "user" is reserved in PostgreSQL

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    full_name: str = Field(max_length=200)
    password_hash: str = Field(max_length=255)
    active: bool = True
    locked: bool = False
    failed_logins: int = 0
    created_at: datetime = _ts()
    password_changed_at: datetime = _ts()


class UserRole(SQLModel, table=True):
    __tablename__ = "user_role"

    user_id: int = Field(foreign_key="app_user.id", primary_key=True)
    role: Role = Field(sa_type=String(32), primary_key=True)


class WebSession(SQLModel, table=True):
    """A server-side page session; the browser's cookie holds a token whose SHA-256 is the id."""

    __tablename__ = "web_session"

    id: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = _ts()
    last_seen_at: datetime = _ts()
    ended_at: datetime | None = _ts(nullable=True)
    end_reason: str | None = Field(default=None, max_length=32)


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16)  # shown in lists so a token can be recognised, never the rest
    created_at: datetime = _ts()
    revoked_at: datetime | None = _ts(nullable=True)


# --- audit trail and signatures -----------------------------------------------------------------


class AuditEvent(SQLModel, table=True):
    """Append-only. Nothing updates or deletes these rows; `cellbench verify` proves it."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_entity", "entity_type", "entity_id", "seq"),)

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = _ts(index=True)
    user_id: int | None = Field(default=None, index=True)
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


class Signature(SQLModel, table=True):
    __tablename__ = "signature"
    __table_args__ = (Index("ix_signature_entity", "entity_type", "entity_id"),)

    id: int | None = Field(default=None, primary_key=True)
    signer_id: int = Field(foreign_key="app_user.id")
    signer_name: str = Field(max_length=200)
    at: datetime = _ts()
    meaning: Meaning = Field(sa_type=String(16))
    entity_type: str = Field(max_length=64)
    entity_id: str = Field(max_length=128)
    content: str  # canonical JSON of exactly what was signed
    content_hash: str = Field(max_length=64)
    record_hash: str = Field(max_length=64)  # over the fields above; written into the audit chain
    audit_seq: int | None = Field(default=None, foreign_key="audit_event.seq")
    invalidated_at: datetime | None = _ts(nullable=True)
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
