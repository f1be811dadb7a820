"""Kits and what is done to them in bulk: packaging runs, quarantines, label runs.

One kit lifecycle for both arms; nothing here reveals an arm (that lives in models.sealed).
"""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Index, String
from sqlmodel import Field, SQLModel

from .base import timestamp


class KitState(str, enum.Enum):
    """The kit lifecycle (reference "Workflow" B), one for both arms; kits.MOVES holds the moves."""

    planned = "planned"  # on the sealed kit list; nothing inside yet
    packaged = "packaged"  # units assigned and labelled; waiting for its lots' release
    released = "released"  # every lot inside released: may be shipped
    # Two-step release (EU GMP Annex 16): a lot of the run is only initially certified and released
    # for shipment under quarantine. Such a kit travels and is received, but is never assigned
    # until the last lot of its run is finally certified; the same states for both arms.
    awaiting_release = "awaiting_release"  # at the cell bench: may be packed and shipped
    transit_awaiting_release = "transit_awaiting_release"  # in a dispatched shipment
    site_awaiting_release = "site_awaiting_release"  # received at the site; not assignable yet
    quarantined = "quarantined"  # blinded users read "temporarily unavailable", whatever the cause
    withdrawn = "withdrawn"  # taken out of use after a quarantine or recall; goes to destruction
    in_transit = "in_transit"  # packed into a dispatched shipment
    at_site = "at_site"  # received at the site pharmacy and in its storage
    allocated = "allocated"  # assigned by cellbench to a participant's treatment visit
    dispensed = "dispensed"  # the pharmacist scanned it out to the preparer
    in_preparation = "in_preparation"  # thaw (ASC) or preparation (saline) started: the use clock runs
    administered = "administered"  # both glands injected
    not_administered = "not_administered"  # the use window passed or the procedure stopped; to destruction
    returned = "returned"  # back to the pharmacy unused; to destruction
    damaged = "damaged"
    missing = "missing"
    destroyed = "destroyed"


class Kit(SQLModel, table=True):
    __tablename__ = "kit"
    # the kit list's filters, each with its page order (kit number: pagination.py, migration 0027)
    __table_args__ = (Index("ix_kit_study_state", "study_id", "state"), Index("ix_kit_state_number", "state", "number"),
                      Index("ix_kit_blinded_lot_number", "blinded_lot_id", "number"),
                      Index("ix_kit_site_number", "site_id", "number"),
                      # the storage page: kits held in each tank, kits at a site in none (migration 0029_supply)
                      Index("ix_kit_location_state", "storage_location_id", "state"),
                      # a study's kits not yet in a blinded lot, by state, from the index alone (0033_monitor)
                      Index("ix_kit_unpacked", "blinded_lot_id", "study_id", "state"))

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=16, unique=True)  # 'XXXX-XXXX-C', random; the only id on a label
    study_id: int = Field(foreign_key="study.id")
    blinded_lot_id: int | None = Field(default=None, foreign_key="blinded_lot.id", index=True)
    state: KitState = Field(default=KitState.planned, sa_type=String(24))
    state_before_quarantine: str | None = Field(default=None, max_length=24)
    quarantine_id: int | None = Field(default=None, foreign_key="kit_quarantine.id", index=True)
    location: str = Field(default="Cell bench", max_length=100)
    site_id: int | None = Field(default=None, foreign_key="site.id", index=True)  # None: at the cell bench
    storage_location_id: int | None = Field(default=None, foreign_key="storage_location.id")
    created_at: datetime = timestamp()
    packaged_at: datetime | None = timestamp(nullable=True)
    row_version: int = 1  # optimistic concurrency: two people acting on one kit get a conflict


class PackagingRun(SQLModel, table=True):
    """One packaging and labelling run: kits filled from released units in one transaction."""

    __tablename__ = "packaging_run"

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    blinded_lot_id: int = Field(foreign_key="blinded_lot.id", index=True)
    kit_count: int
    created_by: int = Field(foreign_key="app_user.id")
    created_at: datetime = timestamp()


class KitQuarantine(SQLModel, table=True):
    """One blind-preserving quarantine: why, which policy, and how it ended. Its cause and lot are
    shown to unblinded roles only; a blinded user sees the kits as temporarily unavailable."""

    __tablename__ = "kit_quarantine"

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    cause: str = Field(max_length=32)  # lot_quarantine | recall | post_release_oos | manual
    lot_id: int | None = Field(default=None, foreign_key="lot.id", index=True)
    policy: str = Field(max_length=16)  # proportionate | blinded_lot
    reason: str
    state: str = Field(default="open", max_length=16)  # open | lifted | withdrawn
    kit_count: int = 0
    opened_by: int | None = Field(default=None, foreign_key="app_user.id")
    opened_at: datetime = timestamp()
    closed_at: datetime | None = timestamp(nullable=True)
    closure_reason: str | None = None
    closure_signature_id: int | None = Field(default=None, foreign_key="signature.id")


class KitQuarantineKit(SQLModel, table=True):
    """The kits a quarantine took out of use, kept after it ends."""

    __tablename__ = "kit_quarantine_kit"

    quarantine_id: int = Field(foreign_key="kit_quarantine.id", primary_key=True)
    kit_id: int = Field(foreign_key="kit.id", primary_key=True, index=True)


class LabelRun(SQLModel, table=True):
    """One print of labels for a set of kits, reconciled afterwards:
    printed = applied + spoiled + destroyed."""

    __tablename__ = "label_run"

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    blinded_lot_id: int | None = Field(default=None, foreign_key="blinded_lot.id", index=True)
    kind: str = Field(max_length=8)  # outer | vial
    output: str = Field(max_length=8)  # sheet | single | zpl
    printed: int
    applied: int | None = None
    spoiled: int | None = None
    destroyed: int | None = None
    created_by: int = Field(foreign_key="app_user.id")
    created_at: datetime = timestamp()
    reconciled_by: int | None = Field(default=None, foreign_key="app_user.id")
    reconciled_at: datetime | None = timestamp(nullable=True)


class LabelRunKit(SQLModel, table=True):
    __tablename__ = "label_run_kit"

    run_id: int = Field(foreign_key="label_run.id", primary_key=True)
    kit_id: int = Field(foreign_key="kit.id", primary_key=True)
