"""Storage locations, shipments with their temperature records, and the custody chain of kits."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
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
    # each role's home line: the shipments in one state, newest first (web/shipments.py; 0037_homes)
    __table_args__ = (Index("ix_shipment_state_id", "state", "id"),)

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
    # by kit: a kit's chain; by person and action: the scan station's and returns page's own latest
    # (custody.recent), which otherwise walk every event backwards to find a person's eight; by
    # action: the kits ever dispensed (the trial export's count, migration 0042)
    __table_args__ = (Index("ix_custody_kit", "kit_id", "id"), Index("ix_custody_by_user", "by_user", "action", "id"),
                      Index("ix_custody_action_kit", "action", "kit_id"))

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


class StorageBox(SQLModel, table=True):
    """A box in a rack of a site's tank, with numbered positions. Its code is on its label (a QR of
    the code), and scanning that label at receipt or at a move names the box."""

    __tablename__ = "storage_box"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)  # 'BOX-RH-ENT-001'
    site_id: int = Field(foreign_key="site.id", index=True)
    storage_location_id: int = Field(foreign_key="storage_location.id", index=True)  # the tank
    rack: str = Field(max_length=16)
    capacity: int  # positions 1..capacity
    active: bool = True
    created_by: int | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = timestamp()


class KitPosition(SQLModel, table=True):
    """Where a kit was last put: a box and a position in it. It holds the kit only while the kit is
    still in that box's tank (kit.storage_location_id, cleared by every move that takes a kit off
    its shelf); a row left behind by a kit that has gone is cleared when its position is filled
    again. One row per position: two kits put into one position at once, one of them conflicts."""

    __tablename__ = "kit_position"
    __table_args__ = (UniqueConstraint("box_id", "position", name="uq_kit_position_box_position"),)

    kit_id: int = Field(foreign_key="kit.id", primary_key=True)
    box_id: int = Field(foreign_key="storage_box.id", index=True)
    position: int
    placed_by: int | None = Field(default=None, foreign_key="app_user.id")
    placed_at: datetime = timestamp()
