"""Studies, sites and blinded lots.

Nothing here reveals an arm; what does lives in models.sealed.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Field, SQLModel

from .base import timestamp


class Study(SQLModel, table=True):
    """A trial as loaded from specs/studies/<code>.toml; `content` is the parsed file as loaded."""

    __tablename__ = "study"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)  # the registry number, e.g. NCT07290946
    eu_ct_number: str = Field(max_length=32)
    title: str
    short_title: str = Field(max_length=120)
    sponsor_name: str = Field(max_length=200)
    sponsor_address: str = Field(max_length=300)
    sponsor_phone: str = Field(max_length=40)
    emergency_contact: str = Field(max_length=200)
    emergency_phone: str = Field(max_length=40)
    emergency_email: str = Field(max_length=200)
    treatments: int  # treatments per participant
    interval_days: int  # between treatments
    window_days: int  # ± around each later treatment's target day
    doses_per_treatment: int  # one per submandibular gland
    label_languages: str = Field(max_length=32)  # comma-separated, e.g. "da,en"
    target_enrolment: int
    # How an automatic quarantine of a manufacturing lot keeps the blind: "proportionate" (its
    # kits plus a random, proportionate set of placebo kits) or "blinded_lot" (every kit of the
    # blinded lots it is in). The supply manager chooses; a manual quarantine may choose again.
    quarantine_policy: str = Field(default="proportionate", max_length=16)
    file_sha256: str = Field(max_length=64)
    content: str  # canonical JSON of the parsed definition
    loaded_at: datetime = timestamp()


class Site(SQLModel, table=True):
    __tablename__ = "site"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    name: str = Field(max_length=200)
    address: str = Field(default="", max_length=300)
    timezone: str = Field(default="Europe/Copenhagen", max_length=64)


class StudySite(SQLModel, table=True):
    __tablename__ = "study_site"

    study_id: int = Field(foreign_key="study.id", primary_key=True)
    site_id: int = Field(foreign_key="site.id", primary_key=True)
    investigator: str = Field(default="", max_length=200)


class BlindedLot(SQLModel, table=True):
    """The lot code printed on labels. It maps (in the sealed compartment) to ASC lots and placebo
    lots together, and carries the earliest expiry of them all, so neither can tell an arm."""

    __tablename__ = "blinded_lot"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    expiry: date
    created_at: datetime = timestamp()
    row_version: int = 1


class StudyLock(SQLModel, table=True):
    """A study's database lock and then its unblinding (study_data.py), each signed by the
    sponsor's representative. No row: the database is open. Both signatures point here."""

    __tablename__ = "study_lock"

    study_id: int = Field(foreign_key="study.id", primary_key=True)  # one lock per study: two at once conflict
    state: str = Field(max_length=16)  # study_data.DataState: locked, unblinded
    locked_by: int = Field(foreign_key="app_user.id")
    locked_at: datetime = timestamp()
    participants: int  # as locked: a later enrolment breaks the lock signature at `cellbench verify`
    randomised: int
    lock_signature_id: int | None = Field(default=None, foreign_key="signature.id")
    unblinded_by: int | None = Field(default=None, foreign_key="app_user.id")
    unblinded_at: datetime | None = timestamp(nullable=True)
    unblinding_reason: str | None = None
    unblinding_signature_id: int | None = Field(default=None, foreign_key="signature.id")
