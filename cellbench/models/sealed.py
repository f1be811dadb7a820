"""The sealed compartment: participant -> arm, kit -> arm, kit -> the units inside it, and the
seeds that reproduce the lists.

Only cellbench/sealed/ reads or writes these tables (tests/test_sealed.py enforces it), and
only for an unblinded actor; every read is an audit event. Their names all start "sealed_".
They are kept together in this one part so that the wall has one place.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import timestamp


class SealedList(SQLModel, table=True):
    """A randomisation list (participant -> arm) or kit list (kit -> arm): generated from a
    recorded seed or imported, then sealed with a signature and never changed."""

    __tablename__ = "sealed_list"
    __table_args__ = (UniqueConstraint("study_id", "kind", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    kind: str = Field(max_length=16)  # randomisation | kit
    version: int
    method: str = Field(max_length=16)  # generated | imported
    seed: str | None = Field(default=None, max_length=64)  # reproduces a generated list exactly
    block_sizes: str | None = Field(default=None, max_length=64)
    source_sha256: str | None = Field(default=None, max_length=64)  # of an imported file
    size: int
    state: str = Field(default="draft", max_length=16)  # draft | sealed | discarded
    created_by: int = Field(foreign_key="app_user.id")
    created_at: datetime = timestamp()
    signature_id: int | None = Field(default=None, foreign_key="signature.id")


class SealedListArm(SQLModel, table=True):
    """How many lines of one list are on one arm, counted once when the list is made (its lines
    never change after), so that a page of a long list does not count the whole list again."""

    __tablename__ = "sealed_list_arm"
    __table_args__ = (UniqueConstraint("list_id", "arm"),)

    id: int | None = Field(default=None, primary_key=True)
    list_id: int = Field(foreign_key="sealed_list.id")
    arm: str = Field(max_length=16)
    lines: int


class SealedAllocation(SQLModel, table=True):
    """One line of a randomisation list."""

    __tablename__ = "sealed_allocation"
    # a block is counted and paged from its own lines (sealed.block_mates), not the whole list's
    __table_args__ = (UniqueConstraint("list_id", "participant_number"), UniqueConstraint("list_id", "position"),
                      Index("ix_sealed_allocation_block", "list_id", "block", "participant_number", "arm"))

    id: int | None = Field(default=None, primary_key=True)
    list_id: int = Field(foreign_key="sealed_list.id", index=True)
    position: int
    block: int
    participant_number: str = Field(max_length=32)
    arm: str = Field(max_length=16)


class SealedKitArm(SQLModel, table=True):
    """One line of a kit list. The kit row exists from sealing on; drafts have only the number."""

    __tablename__ = "sealed_kit_arm"
    __table_args__ = (UniqueConstraint("list_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    list_id: int = Field(foreign_key="sealed_list.id", index=True)
    position: int
    block: int
    kit_number: str = Field(max_length=16, index=True)
    kit_id: int | None = Field(default=None, foreign_key="kit.id", unique=True)
    arm: str = Field(max_length=16)


class SealedKitUnit(SQLModel, table=True):
    """Which physical unit (ASC vial or saline unit) is in which kit, for which dose."""

    __tablename__ = "sealed_kit_unit"
    __table_args__ = (UniqueConstraint("kit_id", "dose"),)

    id: int | None = Field(default=None, primary_key=True)
    kit_id: int = Field(foreign_key="kit.id", index=True)
    vial_id: int = Field(foreign_key="vial.id", unique=True)  # a unit goes into one kit, once
    dose: int  # 1 = left submandibular gland, 2 = right
    packaging_run_id: int = Field(foreign_key="packaging_run.id")


class SealedKitDraw(SQLModel, table=True):
    """One kit assignment: the eligible kits of the participant's arm at the site, in kit-number
    order, and which of them the random draw took. `candidates[index]` is the kit, so the draw
    can be replayed; the candidates are all of one arm, so the row is sealed."""

    __tablename__ = "sealed_kit_draw"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    randomisation_number: str = Field(max_length=32)
    site_id: int = Field(foreign_key="site.id")
    candidates: str  # kit numbers, comma-separated, in kit-number order
    index_drawn: int  # 0-based position of the chosen kit among the candidates
    kit_id: int = Field(foreign_key="kit.id", index=True)
    drawn_by: int | None = Field(default=None, foreign_key="app_user.id")
    drawn_at: datetime = timestamp()


class SealedKitShortage(SQLModel, table=True):
    """No kit of a participant's arm at a site when one was asked for: the supply manager's alert,
    with the arm, until acknowledged. The pharmacist's refusal reads the same for both arms."""

    __tablename__ = "sealed_kit_shortage"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id")
    randomisation_number: str = Field(max_length=32)
    arm: str = Field(max_length=16)
    in_date_on: date  # the kit had to be in date until this day (the end of the use window)
    reported_by: int | None = Field(default=None, foreign_key="app_user.id")
    reported_at: datetime = timestamp()
    acknowledged_by: int | None = Field(default=None, foreign_key="app_user.id")
    acknowledged_at: datetime | None = timestamp(nullable=True)
    acknowledgement: str | None = None  # what the supply manager did (a shipment on its way...)
    requirement: str | None = Field(default=None, max_length=200)  # e.g. the same donor as treatment 1


class SealedDoseDonor(SQLModel, table=True):
    """Whose cells one administered dose was: written by a blind-safe door when the investigator
    records the gland's administration, from the kit's units (vial -> lot -> donation -> donor). A
    placebo dose has no donor (donor_id None), written the same way; the same-donor rule reads
    treatment 1's rows when a later treatment's kit is drawn."""

    __tablename__ = "sealed_dose_donor"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    randomisation_number: str = Field(max_length=32, index=True)
    treatment: int
    dose: int
    kit_id: int = Field(foreign_key="kit.id", index=True)
    donor_id: int | None = Field(default=None, foreign_key="donor.id")
    recorded_by: int | None = Field(default=None, foreign_key="app_user.id")
    recorded_at: datetime = timestamp()
