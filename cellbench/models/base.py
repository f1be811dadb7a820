"""What every table part shares: the UTC timestamp column, roles, visibility, signature meanings.

Timestamps are stored as fixed-width ISO-8601 UTC text ("2026-11-22T03:49:10.123456Z") on every
engine. The audit chain hashes exactly these bytes, so no driver or engine conversion can change
what was hashed, and text of one width sorts in time order for range filters.
"""
from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field

UTC_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_text(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not stored: give a timezone-aware UTC time")
    return moment.astimezone(UTC).strftime(UTC_FORMAT)


def parse_utc_text(value: str) -> datetime:
    # fromisoformat reads our fixed form ~40x faster than strptime; pages read hundreds of times.
    if len(value) == 27 and value.endswith("Z"):
        return datetime.fromisoformat(value)
    return datetime.strptime(value, UTC_FORMAT).replace(tzinfo=UTC)


class UTCTimestamp(TypeDecorator[datetime]):
    impl = String(27)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> str | None:
        return None if value is None else utc_text(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> datetime | None:
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
    # Unblinded, and only once the sponsor has locked the database and unblinded the study
    # (study_data.py): exports the randomisation and kit arms for the analysis.
    statistician = "statistician"


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
    locked = "locked"  # the sponsor's representative locks a study's database (study_data.py)


def timestamp(nullable: bool = False, index: bool = False) -> Any:
    """A UTC timestamp column (stored as fixed-width text, see above)."""
    return Field(default=None, sa_type=UTCTimestamp, nullable=nullable, index=index)


class Saved(Protocol):
    id: int | None


def saved_id(row: Saved) -> int:
    """The id of a row already written (flushed). Every table's id is None until then, so a caller
    that needs it before the flush has a bug, and this names it instead of storing a NULL."""
    if row.id is None:
        raise ValueError(f"{type(row).__name__} has no id yet: flush it before using its id")
    return row.id
