"""Running counts of kits, kept by the kit lifecycle in the transaction of each move (kit_counts.py,
place_counts.py, storage_counts.py)."""
from __future__ import annotations

from sqlalchemy import BigInteger, Index
from sqlmodel import Field, SQLModel


class KitCount(SQLModel, table=True):
    """How many kits of one blinded lot are in one state at one place. Blinded lots, places and
    states are the same for both arms, so no arm is in it: blinded roles read it (accountability).
    `place` is the site's id, or 0 for the cell bench: a key column that is never NULL, so that
    one unique index holds on both engines (PostgreSQL's NULLs are distinct)."""

    __tablename__ = "kit_count"
    __table_args__ = (Index("ix_kit_count_key", "study_id", "place", "blinded_lot_id", "state", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id")
    place: int  # site id; 0: the cell bench
    blinded_lot_id: int = Field(foreign_key="blinded_lot.id", index=True)
    state: str = Field(max_length=32)
    kits: int = 0


class StorageCount(SQLModel, table=True):
    """How many kits are in one state in one storage location (a tank or freezer), so that the
    storage page reads a few rows a location whatever the number of kits. Locations and states are
    the same for both arms, so no arm is in it (storage_counts.py)."""

    __tablename__ = "storage_count"
    __table_args__ = (Index("ix_storage_count_key", "storage_location_id", "state", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    storage_location_id: int = Field(foreign_key="storage_location.id")
    state: str = Field(max_length=32)
    kits: int = 0


class PlaceCount(SQLModel, table=True):
    """How many kits of a study are in one state at one place, over all blinded lots, with the
    place's fingerprint share (place_counts.py): what a study's totals and a site's verification
    status read in a few rows, however many blinded lots ten years leave. No arm is in it."""

    __tablename__ = "place_count"
    __table_args__ = (Index("ix_place_count_key", "study_id", "place", "state", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id")
    place: int  # site id; 0: the cell bench
    state: str = Field(max_length=32)
    kits: int = 0
    fingerprint: int = Field(default=0, sa_type=BigInteger)  # modulo place_counts.MODULUS


class UnpackagedCount(SQLModel, table=True):
    """How many kits of a study not yet in a blinded lot (issued, awaiting packaging) are in one
    state at one place, kept by kit issue and the kit lifecycle (unpackaged_counts.py), so that a
    study's total of kits reads a few rows however many kit lists ten years sealed. No arm is in it."""

    __tablename__ = "unpackaged_count"

    study_id: int = Field(foreign_key="study.id", primary_key=True)
    place: int = Field(primary_key=True)  # site id; 0: the cell bench
    state: str = Field(max_length=32, primary_key=True)
    kits: int = 0


class PlaceLotCount(SQLModel, table=True):
    """How many blinded lots of a study have kits in the accountability figures at one place (a kit
    in a state of a category: not planned), kept with the place's kits (place_counts.py), so that a
    site's figures say how many blinded lots they hold without counting them. Blinded lots hold
    both arms: no arm is in it."""

    __tablename__ = "place_lot_count"

    study_id: int = Field(foreign_key="study.id", primary_key=True)
    place: int = Field(primary_key=True)  # site id; 0: the cell bench
    blinded_lots: int = 0
