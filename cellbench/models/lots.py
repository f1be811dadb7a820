"""Manufacturing lots, their batch-record steps, recorded values, materials, equipment and vials."""
from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import timestamp


class LotState(str, enum.Enum):
    """The lot lifecycle (reference "Workflow" A); lots.MOVES holds who may move a lot and when."""

    in_process = "in_process"  # the batch record is being executed
    on_hold = "on_hold"
    aborted = "aborted"
    qc_pending = "qc_pending"  # every step performed and verified (cells frozen, saline accepted); QC follows
    initial_certified = "initial_certified"  # QP certified with listed pending tests (staged release)
    # the sponsor released an initially certified lot for shipment under quarantine (Annex 16 two-step
    # release): its kits travel but stay unassignable until the QP's final certification releases it
    released_for_shipment = "released_for_shipment"
    qp_certified = "qp_certified"  # QP final certification
    released = "released"  # sponsor release: usable for kits
    quarantined = "quarantined"  # a released lot under investigation: its kits are quarantined, blind kept
    recalled = "recalled"  # taken back: its kits are withdrawn, blind kept
    rejected = "rejected"


class Lot(SQLModel, table=True):
    __tablename__ = "lot"
    # the release list: lots in given states, by number (pagination.py, migration 0028)
    __table_args__ = (Index("ix_lot_state_number", "state", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True)
    spec_version_id: int = Field(foreign_key="spec_version.id")
    donation_id: int | None = Field(default=None, foreign_key="donation.id", index=True)
    state: LotState = Field(default=LotState.in_process, sa_type=String(24))
    state_before_hold: str | None = Field(default=None, max_length=24)
    hold_reason: str | None = None
    expiry: date | None = None
    created_by: int = Field(foreign_key="app_user.id")
    created_at: datetime = timestamp()
    row_version: int = 1  # optimistic concurrency: two people acting on one lot get a conflict


class StepState(str, enum.Enum):
    open = "open"
    performed = "performed"  # signed by the operator
    verified = "verified"  # signed by a second person
    not_applicable = "not_applicable"


class StepEntry(SQLModel, table=True):
    """One execution of one master-batch-record step on a lot (a repeatable step has several)."""

    __tablename__ = "step_entry"
    __table_args__ = (UniqueConstraint("lot_id", "step_code", "repeat_index"),)

    id: int | None = Field(default=None, primary_key=True)
    lot_id: int = Field(foreign_key="lot.id", index=True)
    position: int  # the step's place in the master batch record
    step_code: str = Field(max_length=64)
    repeat_index: int = 1
    state: StepState = Field(default=StepState.open, sa_type=String(16))
    na_reason: str | None = None
    started_at: datetime = timestamp()
    performed_by: int | None = Field(default=None, foreign_key="app_user.id")
    performed_signature_id: int | None = Field(default=None, foreign_key="signature.id")
    verified_signature_id: int | None = Field(default=None, foreign_key="signature.id")


class StepDraft(SQLModel, table=True):
    """What one person has typed or scanned on an open step entry and not yet signed: the form's
    fields as JSON. Not part of the batch record and not audited: nothing in it is GMP data until
    the signed save writes it, through the same checked and audited service functions as ever.
    It exists so that a refused save, a timeout or a closed tab never loses the typing."""

    __tablename__ = "step_draft"
    __table_args__ = (UniqueConstraint("entry_id", "user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="step_entry.id", index=True)
    user_id: int = Field(foreign_key="app_user.id")
    fields: str  # JSON: {"v:<parameter>": ..., "c:<parameter>": ..., "materials": [...], "equipment": [...]}
    saved_at: datetime = timestamp()


class StepValue(SQLModel, table=True):
    """A recorded value. A correction adds a new row and marks the old one superseded: the
    original stays readable."""

    __tablename__ = "step_value"

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="step_entry.id", index=True)
    parameter_code: str = Field(max_length=64)
    value: str | None = None  # as entered (or computed), in the parameter's unit
    unit: str | None = Field(default=None, max_length=32)
    within_limits: bool | None = None  # None when the parameter has no limits
    computed: bool = False
    comment: str | None = None  # required when out of limits
    na_reason: str | None = None
    entered_by: int = Field(foreign_key="app_user.id")
    entered_by_name: str = Field(max_length=200)
    entered_at: datetime = timestamp()
    superseded_by: int | None = Field(default=None, foreign_key="step_value.id")
    correction_reason: str | None = None  # set on the row that corrects an earlier one


class MaterialUse(SQLModel, table=True):
    __tablename__ = "material_use"

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="step_entry.id", index=True)
    material_lot_id: int = Field(foreign_key="material_lot.id")
    recorded_by: int = Field(foreign_key="app_user.id")
    recorded_at: datetime = timestamp()


class EquipmentUse(SQLModel, table=True):
    __tablename__ = "equipment_use"

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="step_entry.id", index=True)
    equipment_id: int = Field(foreign_key="equipment.id")
    recorded_by: int = Field(foreign_key="app_user.id")
    recorded_at: datetime = timestamp()


class VialState(str, enum.Enum):
    """A unit's one fate at the bench, and then its use. A vial made at fill starts `filled` (no fate
    yet) and gets exactly one fate: placed in storage, pulled for QC, kept as a retained sample, or
    destroyed. Only a placed vial may go into a kit (`kitted`: still counted as placed). Units received
    from a supplier (saline v1) enter the lot's stock as they are: `stored`."""

    filled = "filled"
    stored = "stored"  # placed at its storage position: free for a kit
    qc = "qc"  # pulled for QC testing
    retained = "retained"  # kept as a retained (reference) sample
    destroyed = "destroyed"
    kitted = "kitted"  # a placed vial, now in a kit


class Vial(SQLModel, table=True):
    __tablename__ = "vial"
    __table_args__ = (UniqueConstraint("lot_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=40, unique=True)  # lot number + vial sequence, printed on the vial
    lot_id: int = Field(foreign_key="lot.id", index=True)
    seq: int
    # unique: a storage position never holds two vials (NULL until the vial is placed)
    storage_position: str | None = Field(default=None, max_length=64, unique=True)
    # lots.vials gives a filled vial its one fate; supply marks a placed one kitted
    state: str = Field(default=VialState.stored.value, max_length=16)
    fate_note: str | None = Field(default=None, max_length=200)  # why it was destroyed, where it is retained
    fate_at: datetime | None = timestamp(nullable=True)
