"""Specification versions, as loaded from specs/ and signed effective by QA."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import String, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import timestamp


class SpecStatus(str, enum.Enum):
    draft = "draft"  # loaded from its file, not yet signed by QA: no lot can start under it
    effective = "effective"  # signed by QA; immutable from then on
    superseded = "superseded"  # a later version became effective; lots made under it keep it


class SpecVersion(SQLModel, table=True):
    """One version of a product specification, as loaded from specs/<code>/v<N>.toml."""

    __tablename__ = "spec_version"
    __table_args__ = (UniqueConstraint("product_code", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    product_code: str = Field(max_length=64)
    version: int
    kind: str = Field(max_length=16)  # asc | placebo
    name: str = Field(max_length=200)
    file_sha256: str = Field(max_length=64)
    content: str  # canonical JSON of the parsed file: what lots are bound to, whatever the file does later
    status: SpecStatus = Field(default=SpecStatus.draft, sa_type=String(16))
    loaded_at: datetime = timestamp()
    effective_at: datetime | None = timestamp(nullable=True)
    signature_id: int | None = Field(default=None, foreign_key="signature.id")
