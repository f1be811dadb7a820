"""Received raw materials and consumables, and the equipment used at the bench."""
from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import timestamp


class MaterialStatus(str, enum.Enum):
    quarantine = "quarantine"
    released = "released"
    rejected = "rejected"


class MaterialLot(SQLModel, table=True):
    """A received lot of a raw material or consumable (supplier lot, expiry, QA status)."""

    __tablename__ = "material_lot"
    # the material list by expiry, and by status then expiry (pagination.py, migration 0028)
    __table_args__ = (UniqueConstraint("material_code", "supplier_lot"),
                      Index("ix_material_lot_expiry", "expiry", "material_code", "supplier_lot"),
                      Index("ix_material_lot_status_expiry", "status", "expiry", "material_code", "supplier_lot"))

    id: int | None = Field(default=None, primary_key=True)
    material_code: str = Field(max_length=64)  # as named in the specification's steps
    name: str = Field(max_length=200)
    supplier: str = Field(max_length=200)
    supplier_lot: str = Field(max_length=64)
    expiry: date
    status: MaterialStatus = Field(default=MaterialStatus.quarantine, sa_type=String(16))
    received_at: datetime = timestamp()


class Equipment(SQLModel, table=True):
    __tablename__ = "equipment"
    # the equipment list by calibration due (pagination.py, migration 0028)
    __table_args__ = (Index("ix_equipment_due_asset", "calibration_due", "asset_id"),)

    id: int | None = Field(default=None, primary_key=True)
    asset_id: str = Field(max_length=64, unique=True)  # the label scanned at the bench
    equipment_code: str = Field(max_length=64)  # the kind, as named in the specification's steps
    name: str = Field(max_length=200)
    calibration_due: date
    active: bool = True
