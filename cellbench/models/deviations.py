"""Deviations from the batch record, a kit's use, or a shipment."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Index, String
from sqlmodel import Field, SQLModel

from .base import timestamp


class DeviationState(str, enum.Enum):
    open = "open"
    assessed = "assessed"  # impact assessed; awaiting QA closure
    closed = "closed"


class Deviation(SQLModel, table=True):
    __tablename__ = "deviation"
    # QA's home lines: the deviations in one state, oldest first (web/deviations.py; 0037_homes)
    # The list's two orders, with and without a state, read along an index (reading.ORDERS; 0040_records)
    __table_args__ = (Index("ix_deviation_state_id", "state", "id"),
                      Index("ix_deviation_severity_age", "severity", "raised_at", "number"),
                      Index("ix_deviation_state_severity_age", "state", "severity", "raised_at", "number"),
                      Index("ix_deviation_age", "raised_at", "number"))

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True)
    lot_id: int | None = Field(default=None, foreign_key="lot.id", index=True)
    step_code: str | None = Field(default=None, max_length=64)
    # what else it concerns: a kit (a late administration), its visit, a shipment (a failed receipt)
    kit_id: int | None = Field(default=None, foreign_key="kit.id", index=True)
    visit_id: int | None = Field(default=None, foreign_key="visit.id")
    shipment_id: int | None = Field(default=None, foreign_key="shipment.id", index=True)
    # out_of_limit | material_override | late_entry | manual | oos | late_administration | shipment
    origin: str = Field(max_length=32)
    severity: str = Field(default="minor", max_length=16)  # minor | major | critical
    description: str
    blinded_summary: str | None = None  # the only text a blinded user may ever see
    impact_assessment: str | None = None
    capa_reference: str | None = Field(default=None, max_length=64)
    state: DeviationState = Field(default=DeviationState.open, sa_type=String(16))
    raised_by: int | None = Field(default=None, foreign_key="app_user.id")
    raised_at: datetime = timestamp()
    closure_signature_id: int | None = Field(default=None, foreign_key="signature.id")
