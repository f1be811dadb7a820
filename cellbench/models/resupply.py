"""Resupply (unblinded): per site and arm, the minimum and maximum stock and the do-not-ship days
the supply manager sets, and the shipments the resupply trigger proposes from them. These rows
name arms by their study code (the study file's `active`, `placebo`), never which kit or which
participant is on one: the picked kits' arms stay in the sealed compartment."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import timestamp


class ResupplySetting(SQLModel, table=True):
    __tablename__ = "resupply_setting"
    __table_args__ = (UniqueConstraint("study_id", "site_id", "arm"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id", index=True)
    arm: str = Field(max_length=16)  # the study file's arm code
    min_stock: int  # below this many usable kits (at the site and on their way), propose a shipment
    max_stock: int  # a proposal fills up to this many
    do_not_ship_days: int  # a kit expiring within this many days of shipping is not picked
    updated_by: int | None = Field(default=None, foreign_key="app_user.id")
    updated_at: datetime = timestamp()
    row_version: int = 1


class ResupplyProposal(SQLModel, table=True):
    """One proposed shipment to one site: proposed -> accepted (a shipment being packed) or
    dismissed (with a reason), or lapsed (the trigger found nothing needed any more). At most one
    open proposal per study and site: `open_slot` is 1 while proposed and NULL after, so the
    unique constraint holds one open row and any number of closed ones."""

    __tablename__ = "resupply_proposal"
    # The open proposals, apart from the years of decided ones: the supply manager's home counts
    # them on every visit (0043)
    __table_args__ = (UniqueConstraint("study_id", "site_id", "open_slot"),
                      Index("ix_resupply_proposal_open", "open_slot"))

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id", index=True)
    state: str = Field(default="proposed", max_length=16)
    open_slot: int | None = Field(default=1)
    cause: str = Field(max_length=200)  # what set it off last: a kit move, a "no kit", the daily run
    figures: str  # JSON per arm: stock, on the way, due visits, minimum, maximum, shortfall, picked
    created_at: datetime = timestamp()
    evaluated_at: datetime = timestamp()
    decided_by: int | None = Field(default=None, foreign_key="app_user.id")
    decided_at: datetime | None = timestamp(nullable=True)
    reason: str | None = None  # a dismissal's, or why it lapsed
    shipment_id: int | None = Field(default=None, foreign_key="shipment.id")
    row_version: int = 1


class ResupplyProposalKit(SQLModel, table=True):
    """A kit the proposal picked (its arm is read from the compartment when shown)."""

    __tablename__ = "resupply_proposal_kit"

    proposal_id: int = Field(foreign_key="resupply_proposal.id", primary_key=True)
    kit_id: int = Field(foreign_key="kit.id", primary_key=True, index=True)


class StockNote(SQLModel, table=True):
    """A site's stock changed (a kit moved into or out of it) or a visit found no kit: written by
    the kit lifecycle in the mover's transaction, naming no kit and no arm; resupply evaluates the
    site from it afterwards, in a transaction of its own, and deletes it (supply/resupply.py)."""

    __tablename__ = "stock_note"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id")
    site_id: int = Field(foreign_key="site.id")
    cause: str = Field(max_length=64)
    noted_at: datetime = timestamp()
