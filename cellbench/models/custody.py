"""Storage locations, shipments with their temperature records, and the custody chain of kits."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from .base import timestamp


class StorageLocation(SQLModel, table=True):
    """Where kits are kept: tank/rack/box at the cell bench (site None) or a site's freezer or tank."""

    __tablename__ = "storage_location"

    id: int | None = Field(default=None, primary_key=True)
    site_id: int | None = Field(default=None, foreign_key="site.id", index=True)
    code: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=16)  # tank | freezer | shelf
    active: bool = True


class Shipment(SQLModel, table=True):
    __tablename__ = "shipment"

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id", index=True)
    state: str = Field(default="packing", max_length=16)  # packing|in_transit|received|quarantined|rejected|lost
    shipper_id: str | None = Field(default=None, max_length=64)
    seal_number: str | None = Field(default=None, max_length=64)
    logger_id: str | None = Field(default=None, max_length=64)
    created_by: int = Field(foreign_key="app_user.id")
    created_at: datetime = timestamp()
    dispatched_by: int | None = Field(default=None, foreign_key="app_user.id")
    dispatched_at: datetime | None = timestamp(nullable=True)
    received_by: int | None = Field(default=None, foreign_key="app_user.id")
    received_at: datetime | None = timestamp(nullable=True)
    seal_intact: bool | None = None
    logger_source: str | None = Field(default=None, max_length=16)  # csv | manual | missing
    logger_min: float | None = None
    logger_max: float | None = None
    transit_minutes: int | None = None
    receipt_problems: str | None = None  # why it was quarantined at receipt, for QA
    qa_decision: str | None = Field(default=None, max_length=16)  # accepted | rejected
    qa_reason: str | None = None
    qa_signature_id: int | None = Field(default=None, foreign_key="signature.id")
    row_version: int = 1


class ShipmentKit(SQLModel, table=True):
    __tablename__ = "shipment_kit"

    shipment_id: int = Field(foreign_key="shipment.id", primary_key=True)
    kit_id: int = Field(foreign_key="kit.id", primary_key=True, index=True)
    packed_at: datetime = timestamp()
    received_at: datetime | None = timestamp(nullable=True)


class LoggerReading(SQLModel, table=True):
    __tablename__ = "logger_reading"

    id: int | None = Field(default=None, primary_key=True)
    shipment_id: int = Field(foreign_key="shipment.id", index=True)
    at: datetime = timestamp()
    temperature_c: float


class CustodyEvent(SQLModel, table=True):
    """A hand-over or move of a kit: from, to, who, when, condition. The kit's chain reads these."""

    __tablename__ = "custody_event"
    __table_args__ = (Index("ix_custody_kit", "kit_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    kit_id: int = Field(foreign_key="kit.id")
    action: str = Field(max_length=32)
    from_place: str | None = Field(default=None, max_length=200)
    to_place: str | None = Field(default=None, max_length=200)
    shipment_id: int | None = Field(default=None, foreign_key="shipment.id")
    by_user: int | None = Field(default=None, foreign_key="app_user.id")
    by_name: str = Field(max_length=200)
    at: datetime = timestamp()
    condition: str | None = Field(default=None, max_length=200)
