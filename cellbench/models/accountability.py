"""Reconciliation counts and authorised destructions of kits."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from .base import timestamp

# A count that differs, as each engine writes `~Reconciliation.balanced`: a partial index serves a
# query only when the query holds its condition term for term (SQLite's rule), so the query's
# rendering and the index's are the same text.
UNBALANCED = {"sqlite": "balanced = 0", "postgresql": "NOT balanced"}
# Everyone's, newest first (the home queues), and one study's (the accountability list): two
# indexes of the few, so that neither query sorts or walks the balanced years.
UNBALANCED_INDEXES = (("ix_reconciliation_unbalanced", ("at", "id")),
                      ("ix_reconciliation_study_unbalanced", ("study_id", "at", "id")))


class Reconciliation(SQLModel, table=True):
    """A physical count of one blinded lot's kits in stock at one place, against cellbench's count.
    A count that differs is a discrepancy: it blocks destruction and closure until explained."""

    __tablename__ = "reconciliation"
    # A study's counts newest first, read along the index a page at a time (0040_records); the
    # counts that differ apart (0043): ten years hold thousands of counts, nearly all balanced, and
    # every home page's queue and the accountability list ask for the few that are not.
    __table_args__ = (Index("ix_reconciliation_study_at", "study_id", "at", "id"),
                      *(Index(name, *columns, sqlite_where=text(UNBALANCED["sqlite"]),
                              postgresql_where=text(UNBALANCED["postgresql"])) for name, columns in UNBALANCED_INDEXES))

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int | None = Field(default=None, foreign_key="site.id")  # None: the cell bench
    blinded_lot_id: int = Field(foreign_key="blinded_lot.id", index=True)
    expected: str  # JSON: cellbench's counts by category when counted
    counted_in_stock: int
    balanced: bool
    comment: str | None = None
    by_user: int = Field(foreign_key="app_user.id")
    at: datetime = timestamp()
    signature_id: int | None = Field(default=None, foreign_key="signature.id")


class Destruction(SQLModel, table=True):
    """Authorised by the sponsor (supply manager, signed) after reconciliation; then carried out at
    the site with method, date and witness, which closes it with a certificate."""

    __tablename__ = "destruction"

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int | None = Field(default=None, foreign_key="site.id")
    state: str = Field(default="authorised", max_length=16)  # authorised | destroyed
    kit_count: int
    authorised_by: int = Field(foreign_key="app_user.id")
    authorised_at: datetime = timestamp()
    authorisation_signature_id: int | None = Field(default=None, foreign_key="signature.id")
    method: str | None = Field(default=None, max_length=200)
    destroyed_on: date | None = None
    witness: str | None = Field(default=None, max_length=200)
    destroyed_by: int | None = Field(default=None, foreign_key="app_user.id")
    signature_id: int | None = Field(default=None, foreign_key="signature.id")


class DestructionKit(SQLModel, table=True):
    __tablename__ = "destruction_kit"

    destruction_id: int = Field(foreign_key="destruction.id", primary_key=True)
    kit_id: int = Field(foreign_key="kit.id", primary_key=True, index=True)


class AccountabilityVerification(SQLModel, table=True):
    """A monitor's signed source data verification of a site's accountability in a study: the
    figures as the monitor saw them (per blinded lot, counts by category; no arm), and when.
    Each monitoring visit is a new verification, numbered per study and site: two submissions of
    the same visit carry the same number, so the second one conflicts instead of duplicating."""

    __tablename__ = "accountability_verification"
    __table_args__ = (UniqueConstraint("study_id", "site_id", "sequence"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id", index=True)
    sequence: int  # 1, 2, ... per study and site
    figures: str  # canonical JSON {blinded lot code: {category: count}}, as shown when signed
    figures_hash: str = Field(max_length=64)  # SHA-256 of `figures`: compared with the figures now
    # the site's fingerprint of these figures (place_counts.py): compared with its fingerprint now
    # where reading the figures themselves would grow with the years (the monitor's home)
    fingerprint: int | None = Field(default=None, sa_type=BigInteger)
    comment: str | None = None
    by_user: int = Field(foreign_key="app_user.id")
    at: datetime = timestamp()
    signature_id: int | None = Field(default=None, foreign_key="signature.id")
