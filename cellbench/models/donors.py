"""Donors by pseudonym, their donations and eligibility tests."""
from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import timestamp


class Eligibility(str, enum.Enum):
    pending = "pending"
    eligible = "eligible"
    ineligible = "ineligible"


class Donor(SQLModel, table=True):
    __tablename__ = "donor"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)  # pseudonym; no names are kept in cellbench
    consent_date: date | None = None
    consent_reference: str | None = Field(default=None, max_length=100)
    created_at: datetime = timestamp()


class Donation(SQLModel, table=True):
    __tablename__ = "donation"
    # the donor list filtered by eligibility (pagination.py, migration 0028)
    __table_args__ = (Index("ix_donation_eligibility_donor", "eligibility", "donor_id"),)

    id: int | None = Field(default=None, primary_key=True)
    donor_id: int = Field(foreign_key="donor.id", index=True)
    identifier: str = Field(max_length=64, unique=True)  # exactly as received, never normalised
    id_system: str = Field(max_length=16)  # ISBT128 | SEC
    check_character: str | None = Field(default=None, max_length=1)
    donated_on: date
    eligibility: Eligibility = Field(default=Eligibility.pending, sa_type=String(16))
    eligibility_signature_id: int | None = Field(default=None, foreign_key="signature.id")
    created_at: datetime = timestamp()


class DonorTest(SQLModel, table=True):
    """One eligibility test result (Dir. 2006/17/EC Annex II) on a donation's sample."""

    __tablename__ = "donor_test"
    __table_args__ = (UniqueConstraint("donation_id", "test"),)

    id: int | None = Field(default=None, primary_key=True)
    donation_id: int = Field(foreign_key="donation.id", index=True)
    test: str = Field(max_length=32)
    result: str = Field(max_length=16)  # negative | positive | indeterminate
    sample_date: date
    laboratory: str = Field(max_length=200)
    recorded_by: int = Field(foreign_key="app_user.id")
    recorded_at: datetime = timestamp()
