"""The bedside check: what the investigator scanned before a dose went in (the participant's
card, then each syringe label), once it matched the visit. Refused scans are not rows here: they
are audit events, written even though the scan's use case rolled back."""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from .base import timestamp


class BedsideCheck(SQLModel, table=True):
    """One passed scan at the bedside: kind "card" (dose and kit empty) or "syringe" (one dose of
    the visit's kit). Same columns for both arms; nothing here says what the syringe holds."""

    __tablename__ = "bedside_check"

    id: int | None = Field(default=None, primary_key=True)
    visit_id: int = Field(foreign_key="visit.id", index=True)
    kind: str = Field(max_length=8)  # "card" | "syringe"
    kit_id: int | None = Field(default=None, foreign_key="kit.id")
    dose: int | None = None  # 1 = the study's first dose site (gland), 2 = the second
    by_user: int = Field(foreign_key="app_user.id")
    at: datetime = timestamp()
