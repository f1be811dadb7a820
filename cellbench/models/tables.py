"""All tables and enums: the schema on one page.

Timestamps are stored as fixed-width ISO-8601 UTC text ("2026-11-22T03:49:10.123456Z") on every
engine. The audit chain hashes exactly these bytes, so no driver or engine conversion can change
what was hashed, and text of one width sorts in time order for range filters.
"""
from __future__ import annotations

import enum
from datetime import UTC, date, datetime

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

UTC_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_text(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not stored: give a timezone-aware UTC time")
    return moment.astimezone(UTC).strftime(UTC_FORMAT)


def parse_utc_text(value: str) -> datetime:
    # fromisoformat reads our fixed form ~40x faster than strptime; pages read hundreds of times.
    if len(value) == 27 and value.endswith("Z"):
        return datetime.fromisoformat(value)
    return datetime.strptime(value, UTC_FORMAT).replace(tzinfo=UTC)


class UTCTimestamp(TypeDecorator):
    impl = String(27)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else utc_text(value)

    def process_result_value(self, value, dialect):
        return None if value is None else parse_utc_text(value)


class Role(str, enum.Enum):
    operator = "operator"
    verifier = "verifier"
    qc_analyst = "qc_analyst"
    qa = "qa"
    qp = "qp"
    supply_manager = "supply_manager"
    pharmacist = "pharmacist"
    preparer = "preparer"
    investigator = "investigator"
    monitor = "monitor"
    admin = "admin"


# Roles that must never learn an arm. A user holding one of these and an unblinded role at once
# is refused (segregation of duties).
BLINDED_ROLES = frozenset({Role.pharmacist, Role.investigator, Role.monitor, Role.admin})


class Visibility(str, enum.Enum):
    everyone = "all"  # anyone with access to the entity
    unblinded = "unblinded"  # reveals an arm: blinded roles never see it, not even as a gap


class Meaning(str, enum.Enum):
    performed = "performed"
    verified = "verified"
    reviewed = "reviewed"
    approved = "approved"
    certified = "certified"
    released = "released"
    rejected = "rejected"
    unblinded = "unblinded"
    destroyed = "destroyed"


def _ts(nullable: bool = False, index: bool = False):
    return Field(default=None, sa_type=UTCTimestamp, nullable=nullable, index=index)


# --- users, sessions, tokens -------------------------------------------------------------------


class User(SQLModel, table=True):
    __tablename__ = "app_user"  # "user" is reserved in PostgreSQL

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    full_name: str = Field(max_length=200)
    password_hash: str = Field(max_length=255)
    active: bool = True
    locked: bool = False
    failed_logins: int = 0
    created_at: datetime = _ts()
    password_changed_at: datetime = _ts()


class UserRole(SQLModel, table=True):
    __tablename__ = "user_role"

    user_id: int = Field(foreign_key="app_user.id", primary_key=True)
    role: Role = Field(sa_type=String(32), primary_key=True)


class WebSession(SQLModel, table=True):
    """A server-side page session; the browser's cookie holds a token whose SHA-256 is the id."""

    __tablename__ = "web_session"

    id: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = _ts()
    last_seen_at: datetime = _ts()
    ended_at: datetime | None = _ts(nullable=True)
    end_reason: str | None = Field(default=None, max_length=32)


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16)  # shown in lists so a token can be recognised, never the rest
    created_at: datetime = _ts()
    revoked_at: datetime | None = _ts(nullable=True)


# --- audit trail and signatures -----------------------------------------------------------------


class AuditEvent(SQLModel, table=True):
    """Append-only. Nothing updates or deletes these rows; `cellbench verify` proves it."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_entity", "entity_type", "entity_id", "seq"),)

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = _ts(index=True)
    user_id: int | None = Field(default=None, index=True)
    user_name: str = Field(max_length=200)
    action: str = Field(max_length=64)
    entity_type: str = Field(max_length=64)
    entity_id: str = Field(max_length=128)
    field: str | None = Field(default=None, max_length=128)
    old_value: str | None = None
    new_value: str | None = None
    reason: str | None = None
    visibility: Visibility = Field(default=Visibility.everyone, sa_type=String(16))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """The single row every audited transaction locks: it serialises the chain across workers."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str = Field(max_length=64)


class Signature(SQLModel, table=True):
    __tablename__ = "signature"
    __table_args__ = (Index("ix_signature_entity", "entity_type", "entity_id"),)

    id: int | None = Field(default=None, primary_key=True)
    signer_id: int = Field(foreign_key="app_user.id")
    signer_name: str = Field(max_length=200)
    at: datetime = _ts()
    meaning: Meaning = Field(sa_type=String(16))
    entity_type: str = Field(max_length=64)
    entity_id: str = Field(max_length=128)
    content: str  # canonical JSON of exactly what was signed
    content_hash: str = Field(max_length=64)
    record_hash: str = Field(max_length=64)  # over the fields above; written into the audit chain
    audit_seq: int | None = Field(default=None, foreign_key="audit_event.seq")
    invalidated_at: datetime | None = _ts(nullable=True)
    invalidated_reason: str | None = None


class AuditReview(SQLModel, table=True):
    """QA's signed review of the audit trail up to one event."""

    __tablename__ = "audit_review"

    id: int | None = Field(default=None, primary_key=True)
    from_seq: int
    to_seq: int
    head_hash: str = Field(max_length=64)
    comment: str | None = None
    signature_id: int | None = Field(default=None, foreign_key="signature.id")


# --- specifications ---------------------------------------------------------------------------


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
    loaded_at: datetime = _ts()
    effective_at: datetime | None = _ts(nullable=True)
    signature_id: int | None = Field(default=None, foreign_key="signature.id")


# --- donors and donations -----------------------------------------------------------------------


class Eligibility(str, enum.Enum):
    pending = "pending"
    eligible = "eligible"
    ineligible = "ineligible"


class Donor(SQLModel, table=True):
    __tablename__ = "donor"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)  # pseudonym; no names are kept in cellbench
    consent_date: date | None = None
    consent_reference: str | None = Field(default=None, max_length=100)
    created_at: datetime = _ts()


class Donation(SQLModel, table=True):
    __tablename__ = "donation"

    id: int | None = Field(default=None, primary_key=True)
    donor_id: int = Field(foreign_key="donor.id", index=True)
    identifier: str = Field(max_length=64, unique=True)  # exactly as received, never normalised
    id_system: str = Field(max_length=16)  # ISBT128 | SEC
    check_character: str | None = Field(default=None, max_length=1)
    donated_on: date
    eligibility: Eligibility = Field(default=Eligibility.pending, sa_type=String(16))
    eligibility_signature_id: int | None = Field(default=None, foreign_key="signature.id")
    created_at: datetime = _ts()


class DonorTest(SQLModel, table=True):
    """One eligibility test result (Dir. 2006/17/EC Annex II) on a donation's sample."""

    __tablename__ = "donor_test"
    __table_args__ = (UniqueConstraint("donation_id", "test"),)

    id: int | None = Field(default=None, primary_key=True)
    donation_id: int = Field(foreign_key="donation.id", index=True)
    test: str = Field(max_length=32)
    result: str = Field(max_length=16)  # negative | positive | indeterminate
    sample_date: date
    laboratory: str = Field(max_length=200)
    recorded_by: int = Field(foreign_key="app_user.id")
    recorded_at: datetime = _ts()


# --- materials and equipment --------------------------------------------------------------------


class MaterialStatus(str, enum.Enum):
    quarantine = "quarantine"
    released = "released"
    rejected = "rejected"


class MaterialLot(SQLModel, table=True):
    """A received lot of a raw material or consumable (supplier lot, expiry, QA status)."""

    __tablename__ = "material_lot"
    __table_args__ = (UniqueConstraint("material_code", "supplier_lot"),)

    id: int | None = Field(default=None, primary_key=True)
    material_code: str = Field(max_length=64)  # as named in the specification's steps
    name: str = Field(max_length=200)
    supplier: str = Field(max_length=200)
    supplier_lot: str = Field(max_length=64)
    expiry: date
    status: MaterialStatus = Field(default=MaterialStatus.quarantine, sa_type=String(16))
    received_at: datetime = _ts()


class Equipment(SQLModel, table=True):
    __tablename__ = "equipment"

    id: int | None = Field(default=None, primary_key=True)
    asset_id: str = Field(max_length=64, unique=True)  # the label scanned at the bench
    equipment_code: str = Field(max_length=64)  # the kind, as named in the specification's steps
    name: str = Field(max_length=200)
    calibration_due: date
    active: bool = True


# --- lots, steps, values ----------------------------------------------------------------------


class LotState(str, enum.Enum):
    """The lot lifecycle (reference "Workflow" A); lots.MOVES holds who may move a lot and when."""

    in_process = "in_process"  # the batch record is being executed
    on_hold = "on_hold"
    aborted = "aborted"
    qc_pending = "qc_pending"  # every step performed and verified (cells frozen, saline accepted); QC follows
    initial_certified = "initial_certified"  # QP certified with listed pending tests (staged release)
    qp_certified = "qp_certified"  # QP final certification
    released = "released"  # sponsor release: usable for kits
    quarantined = "quarantined"  # a released lot under investigation: its kits are quarantined, blind kept
    recalled = "recalled"  # taken back: its kits are withdrawn, blind kept
    rejected = "rejected"


class Lot(SQLModel, table=True):
    __tablename__ = "lot"

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True)
    spec_version_id: int = Field(foreign_key="spec_version.id")
    donation_id: int | None = Field(default=None, foreign_key="donation.id", index=True)
    state: LotState = Field(default=LotState.in_process, sa_type=String(24))
    state_before_hold: str | None = Field(default=None, max_length=24)
    hold_reason: str | None = None
    expiry: date | None = None
    created_by: int = Field(foreign_key="app_user.id")
    created_at: datetime = _ts()
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
    started_at: datetime = _ts()
    performed_by: int | None = Field(default=None, foreign_key="app_user.id")
    performed_signature_id: int | None = Field(default=None, foreign_key="signature.id")
    verified_signature_id: int | None = Field(default=None, foreign_key="signature.id")


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
    entered_at: datetime = _ts()
    superseded_by: int | None = Field(default=None, foreign_key="step_value.id")
    correction_reason: str | None = None  # set on the row that corrects an earlier one


class MaterialUse(SQLModel, table=True):
    __tablename__ = "material_use"

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="step_entry.id", index=True)
    material_lot_id: int = Field(foreign_key="material_lot.id")
    recorded_by: int = Field(foreign_key="app_user.id")
    recorded_at: datetime = _ts()


class EquipmentUse(SQLModel, table=True):
    __tablename__ = "equipment_use"

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="step_entry.id", index=True)
    equipment_id: int = Field(foreign_key="equipment.id")
    recorded_by: int = Field(foreign_key="app_user.id")
    recorded_at: datetime = _ts()


class Vial(SQLModel, table=True):
    __tablename__ = "vial"
    __table_args__ = (UniqueConstraint("lot_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=40, unique=True)  # lot number + vial sequence, printed on the vial
    lot_id: int = Field(foreign_key="lot.id", index=True)
    seq: int
    # unique: a storage position never holds two vials (NULL until the vial is placed)
    storage_position: str | None = Field(default=None, max_length=64, unique=True)
    state: str = Field(default="stored", max_length=16)


# --- deviations -------------------------------------------------------------------------------


class DeviationState(str, enum.Enum):
    open = "open"
    assessed = "assessed"  # impact assessed; awaiting QA closure
    closed = "closed"


class Deviation(SQLModel, table=True):
    __tablename__ = "deviation"

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
    raised_at: datetime = _ts()
    closure_signature_id: int | None = Field(default=None, foreign_key="signature.id")


# --- QC and release ---------------------------------------------------------------------------


class QcResult(SQLModel, table=True):
    """One result of one release test. Never overwritten: a retest is a new row linked to the
    original, and an invalidated original stays, with its reason and QA's signature."""

    __tablename__ = "qc_result"

    id: int | None = Field(default=None, primary_key=True)
    lot_id: int = Field(foreign_key="lot.id", index=True)
    test_code: str = Field(max_length=64)
    sample_id: str | None = Field(default=None, max_length=64)  # the sample label as pulled in the batch record
    value: str  # as entered: a number in the test's unit, or the qualitative word
    unit: str | None = Field(default=None, max_length=32)
    verdict: str = Field(max_length=8)  # pass | oos, from specifications.evaluate
    entered_by: int = Field(foreign_key="app_user.id")
    entered_by_name: str = Field(max_length=200)
    entered_at: datetime = _ts()
    retest_of: int | None = Field(default=None, foreign_key="qc_result.id")
    review_signature_id: int | None = Field(default=None, foreign_key="signature.id")  # second person
    invalidated_at: datetime | None = _ts(nullable=True)
    invalidation_reason: str | None = None
    invalidation_signature_id: int | None = Field(default=None, foreign_key="signature.id")
    deviation_id: int | None = Field(default=None, foreign_key="deviation.id")  # the OOS investigation


class LotDecision(SQLModel, table=True):
    """A signed move of a lot (initial or final certification, sponsor release, rejection, abort).
    Its own immutable row, so the signature covers the decision as taken, whatever the lot does next."""

    __tablename__ = "lot_decision"

    id: int | None = Field(default=None, primary_key=True)
    lot_id: int = Field(foreign_key="lot.id", index=True)
    decision: str = Field(max_length=32)  # the move's name in lots.MOVES
    from_state: str = Field(max_length=24)
    to_state: str = Field(max_length=24)
    reason: str | None = None
    qc_results_up_to: int | None = None  # the newest QC result id when decided: the results it stood on
    signature_id: int | None = Field(default=None, foreign_key="signature.id")
    created_at: datetime = _ts()


class PendingTest(SQLModel, table=True):
    """A release test still outstanding at an initial certification: who owns it, by when."""

    __tablename__ = "pending_test"
    __table_args__ = (UniqueConstraint("decision_id", "test_code"),)

    id: int | None = Field(default=None, primary_key=True)
    decision_id: int = Field(foreign_key="lot_decision.id", index=True)
    lot_id: int = Field(foreign_key="lot.id", index=True)
    test_code: str = Field(max_length=64)
    owner_id: int = Field(foreign_key="app_user.id")
    due_date: date
    resolved_at: datetime | None = _ts(nullable=True)


class LotReview(SQLModel, table=True):
    """QA's signed review of a lot: its batch record by exception, or its audit trail."""

    __tablename__ = "lot_review"

    id: int | None = Field(default=None, primary_key=True)
    lot_id: int = Field(foreign_key="lot.id", index=True)
    kind: str = Field(max_length=16)  # batch_record | audit_trail
    up_to_seq: int  # the last audit event of the lot the review covered
    signature_id: int = Field(foreign_key="signature.id")
    created_at: datetime = _ts()


class StorageExcursion(SQLModel, table=True):
    """A temperature excursion in a lot's storage; it blocks release until QA assesses it."""

    __tablename__ = "storage_excursion"

    id: int | None = Field(default=None, primary_key=True)
    lot_id: int = Field(foreign_key="lot.id", index=True)
    observed_at: datetime = _ts()
    highest_temperature: float
    description: str
    recorded_by: int = Field(foreign_key="app_user.id")
    assessment: str | None = None
    acceptable: bool | None = None
    assessed_by: int | None = Field(default=None, foreign_key="app_user.id")
    assessed_at: datetime | None = _ts(nullable=True)


# --- studies, sites, blinded lots, kits --------------------------------------------------------
#
# Nothing in this section reveals an arm. What does (participant -> arm, kit -> arm, kit -> the
# units inside it, and the seeds that reproduce the lists) lives in the sealed section below.


class Study(SQLModel, table=True):
    """A trial as loaded from specs/studies/<code>.toml; `content` is the parsed file as loaded."""

    __tablename__ = "study"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)  # the registry number, e.g. NCT07290946
    eu_ct_number: str = Field(max_length=32)
    title: str
    short_title: str = Field(max_length=120)
    sponsor_name: str = Field(max_length=200)
    sponsor_address: str = Field(max_length=300)
    sponsor_phone: str = Field(max_length=40)
    emergency_contact: str = Field(max_length=200)
    emergency_phone: str = Field(max_length=40)
    emergency_email: str = Field(max_length=200)
    treatments: int  # treatments per participant
    interval_days: int  # between treatments
    window_days: int  # ± around each later treatment's target day
    doses_per_treatment: int  # one per submandibular gland
    label_languages: str = Field(max_length=32)  # comma-separated, e.g. "da,en"
    target_enrolment: int
    # How an automatic quarantine of a manufacturing lot keeps the blind: "proportionate" (its
    # kits plus a random, proportionate set of placebo kits) or "blinded_lot" (every kit of the
    # blinded lots it is in). The supply manager chooses; a manual quarantine may choose again.
    quarantine_policy: str = Field(default="proportionate", max_length=16)
    file_sha256: str = Field(max_length=64)
    content: str  # canonical JSON of the parsed definition
    loaded_at: datetime = _ts()


class Site(SQLModel, table=True):
    __tablename__ = "site"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    name: str = Field(max_length=200)
    address: str = Field(default="", max_length=300)
    timezone: str = Field(default="Europe/Copenhagen", max_length=64)


class StudySite(SQLModel, table=True):
    __tablename__ = "study_site"

    study_id: int = Field(foreign_key="study.id", primary_key=True)
    site_id: int = Field(foreign_key="site.id", primary_key=True)
    investigator: str = Field(default="", max_length=200)


class BlindedLot(SQLModel, table=True):
    """The lot code printed on labels. It maps (in the sealed compartment) to ASC lots and placebo
    lots together, and carries the earliest expiry of them all, so neither can tell an arm."""

    __tablename__ = "blinded_lot"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    expiry: date
    created_at: datetime = _ts()
    row_version: int = 1


class KitState(str, enum.Enum):
    """The kit lifecycle (reference "Workflow" B), one for both arms; kits.MOVES holds the moves."""

    planned = "planned"  # on the sealed kit list; nothing inside yet
    packaged = "packaged"  # units assigned and labelled; waiting for its lots' release
    released = "released"  # every lot inside released: may be shipped
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
    __table_args__ = (Index("ix_kit_study_state", "study_id", "state"),)

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
    created_at: datetime = _ts()
    packaged_at: datetime | None = _ts(nullable=True)
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
    created_at: datetime = _ts()


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
    opened_at: datetime = _ts()
    closed_at: datetime | None = _ts(nullable=True)
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
    created_at: datetime = _ts()
    reconciled_by: int | None = Field(default=None, foreign_key="app_user.id")
    reconciled_at: datetime | None = _ts(nullable=True)


class LabelRunKit(SQLModel, table=True):
    __tablename__ = "label_run_kit"

    run_id: int = Field(foreign_key="label_run.id", primary_key=True)
    kit_id: int = Field(foreign_key="kit.id", primary_key=True)


# --- the sealed compartment -------------------------------------------------------------------
#
# Only cellbench/sealed.py reads or writes these tables (tests/test_sealed.py enforces it), and
# only for an unblinded actor; every read is an audit event. Their names all start "sealed_".


class SealedList(SQLModel, table=True):
    """A randomisation list (participant -> arm) or kit list (kit -> arm): generated from a
    recorded seed or imported, then sealed with a signature and never changed."""

    __tablename__ = "sealed_list"
    __table_args__ = (UniqueConstraint("study_id", "kind", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    kind: str = Field(max_length=16)  # randomisation | kit
    version: int
    method: str = Field(max_length=16)  # generated | imported
    seed: str | None = Field(default=None, max_length=64)  # reproduces a generated list exactly
    block_sizes: str | None = Field(default=None, max_length=64)
    source_sha256: str | None = Field(default=None, max_length=64)  # of an imported file
    size: int
    state: str = Field(default="draft", max_length=16)  # draft | sealed | discarded
    created_by: int = Field(foreign_key="app_user.id")
    created_at: datetime = _ts()
    signature_id: int | None = Field(default=None, foreign_key="signature.id")


class SealedAllocation(SQLModel, table=True):
    """One line of a randomisation list."""

    __tablename__ = "sealed_allocation"
    __table_args__ = (UniqueConstraint("list_id", "participant_number"), UniqueConstraint("list_id", "position"))

    id: int | None = Field(default=None, primary_key=True)
    list_id: int = Field(foreign_key="sealed_list.id", index=True)
    position: int
    block: int
    participant_number: str = Field(max_length=32)
    arm: str = Field(max_length=16)


class SealedKitArm(SQLModel, table=True):
    """One line of a kit list. The kit row exists from sealing on; drafts have only the number."""

    __tablename__ = "sealed_kit_arm"
    __table_args__ = (UniqueConstraint("list_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    list_id: int = Field(foreign_key="sealed_list.id", index=True)
    position: int
    block: int
    kit_number: str = Field(max_length=16, index=True)
    kit_id: int | None = Field(default=None, foreign_key="kit.id", unique=True)
    arm: str = Field(max_length=16)


class SealedKitUnit(SQLModel, table=True):
    """Which physical unit (ASC vial or saline unit) is in which kit, for which dose."""

    __tablename__ = "sealed_kit_unit"
    __table_args__ = (UniqueConstraint("kit_id", "dose"),)

    id: int | None = Field(default=None, primary_key=True)
    kit_id: int = Field(foreign_key="kit.id", index=True)
    vial_id: int = Field(foreign_key="vial.id", unique=True)  # a unit goes into one kit, once
    dose: int  # 1 = left submandibular gland, 2 = right
    packaging_run_id: int = Field(foreign_key="packaging_run.id")


# --- sites' storage, shipments, participants, dispensing, custody (issue 6) ----------------------


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
    created_at: datetime = _ts()
    dispatched_by: int | None = Field(default=None, foreign_key="app_user.id")
    dispatched_at: datetime | None = _ts(nullable=True)
    received_by: int | None = Field(default=None, foreign_key="app_user.id")
    received_at: datetime | None = _ts(nullable=True)
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
    packed_at: datetime = _ts()
    received_at: datetime | None = _ts(nullable=True)


class LoggerReading(SQLModel, table=True):
    __tablename__ = "logger_reading"

    id: int | None = Field(default=None, primary_key=True)
    shipment_id: int = Field(foreign_key="shipment.id", index=True)
    at: datetime = _ts()
    temperature_c: float


class Participant(SQLModel, table=True):
    """A trial participant by number only. The arm is in the sealed compartment, by number."""

    __tablename__ = "participant"
    __table_args__ = (UniqueConstraint("study_id", "screening_number"),
                      UniqueConstraint("study_id", "randomisation_number"))

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id", index=True)
    screening_number: str = Field(max_length=32)
    randomisation_number: str | None = Field(default=None, max_length=32)
    enrolled_by: int = Field(foreign_key="app_user.id")
    enrolled_at: datetime = _ts()
    randomised_at: datetime | None = _ts(nullable=True)
    unblinded_at: datetime | None = _ts(nullable=True)


class Visit(SQLModel, table=True):
    """One treatment visit of a participant, with its window, kit and use clock."""

    __tablename__ = "visit"
    __table_args__ = (UniqueConstraint("participant_id", "treatment"),)

    id: int | None = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    treatment: int
    target_date: date
    window_start: date
    window_end: date
    state: str = Field(default="planned", max_length=16)
    kit_id: int | None = Field(default=None, foreign_key="kit.id", unique=True)
    replaced_kit_ids: str | None = None  # kits replaced at this visit, with reasons in the audit trail
    preparation_started_at: datetime | None = _ts(nullable=True)
    use_by: datetime | None = _ts(nullable=True)
    row_version: int = 1


class Administration(SQLModel, table=True):
    __tablename__ = "administration"
    __table_args__ = (UniqueConstraint("visit_id", "dose"),)

    id: int | None = Field(default=None, primary_key=True)
    visit_id: int = Field(foreign_key="visit.id", index=True)
    kit_id: int = Field(foreign_key="kit.id", index=True)
    dose: int  # 1 = left submandibular gland, 2 = right
    administered_at: datetime = _ts()
    volume_ml: float
    by_user: int = Field(foreign_key="app_user.id")
    by_name: str = Field(max_length=200)


class Reconciliation(SQLModel, table=True):
    """A physical count of one blinded lot's kits in stock at one place, against cellbench's count.
    A count that differs is a discrepancy: it blocks destruction and closure until explained."""

    __tablename__ = "reconciliation"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int | None = Field(default=None, foreign_key="site.id")  # None: the cell bench
    blinded_lot_id: int = Field(foreign_key="blinded_lot.id", index=True)
    expected: str  # JSON: cellbench's counts by category when counted
    counted_in_stock: int
    balanced: bool
    comment: str | None = None
    by_user: int = Field(foreign_key="app_user.id")
    at: datetime = _ts()
    signature_id: int | None = Field(default=None, foreign_key="signature.id")


class Destruction(SQLModel, table=True):
    """Authorised by the sponsor (supply manager, signed) after reconciliation; then carried out at
    the site with method, date and witness, which closes it with a certificate."""

    __tablename__ = "destruction"

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int | None = Field(default=None, foreign_key="site.id")
    state: str = Field(default="authorised", max_length=16)  # authorised | destroyed
    kit_count: int
    authorised_by: int = Field(foreign_key="app_user.id")
    authorised_at: datetime = _ts()
    authorisation_signature_id: int | None = Field(default=None, foreign_key="signature.id")
    method: str | None = Field(default=None, max_length=200)
    destroyed_on: date | None = None
    witness: str | None = Field(default=None, max_length=200)
    destroyed_by: int | None = Field(default=None, foreign_key="app_user.id")
    signature_id: int | None = Field(default=None, foreign_key="signature.id")


class DestructionKit(SQLModel, table=True):
    __tablename__ = "destruction_kit"

    destruction_id: int = Field(foreign_key="destruction.id", primary_key=True)
    kit_id: int = Field(foreign_key="kit.id", primary_key=True, index=True)


class Unblinding(SQLModel, table=True):
    """An emergency unblinding of one participant. The arm itself is not stored here: it is in the
    sealed compartment and shown once to the investigator who unblinded."""

    __tablename__ = "unblinding"

    id: int | None = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    reason_code: str = Field(max_length=32)
    reason: str
    by_user: int = Field(foreign_key="app_user.id")
    at: datetime = _ts()
    signature_id: int | None = Field(default=None, foreign_key="signature.id")
    inferable: str = ""  # JSON: other participants whose arm could now be inferred, and why


class Notification(SQLModel, table=True):
    """The outbox: messages a mail transport sends, and marks sent."""

    __tablename__ = "notification"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    to_address: str = Field(max_length=200)
    subject: str = Field(max_length=300)
    body: str
    created_at: datetime = _ts()
    sent_at: datetime | None = _ts(nullable=True)


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
    at: datetime = _ts()
    condition: str | None = Field(default=None, max_length=200)
