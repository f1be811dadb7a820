"""Participants by number, their treatment visits and administrations, emergency unblindings,
and the notification queue (cellbench.notifications)."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from .base import timestamp

IMPACT_UNSENT = "impact_sent_at IS NULL"  # as `Unblinding.impact_sent_at.is_(None)` renders on both engines


class Participant(SQLModel, table=True):
    """A trial participant by number only. The arm is in the sealed compartment, by number."""

    __tablename__ = "participant"
    # the unblinded participants of a study (sealed.block_mates now looks each block line up by study and
    # number instead: an IN list of them all grew with the years)
    __table_args__ = (UniqueConstraint("study_id", "screening_number"),
                      UniqueConstraint("study_id", "randomisation_number"),
                      Index("ix_participant_unblinded", "study_id", "unblinded_at", "randomisation_number"))

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id", index=True)
    screening_number: str = Field(max_length=32)
    randomisation_number: str | None = Field(default=None, max_length=32)
    enrolled_by: int = Field(foreign_key="app_user.id")
    enrolled_at: datetime = timestamp()
    randomised_at: datetime | None = timestamp(nullable=True)
    unblinded_at: datetime | None = timestamp(nullable=True)


class EligibilityRecord(SQLModel, table=True):
    """What the investigator confirmed at randomisation: the date of informed consent and each
    eligibility criterion of the study file as loaded (inclusion met, exclusion absent)."""

    __tablename__ = "eligibility_record"

    participant_id: int = Field(foreign_key="participant.id", primary_key=True)
    consent_date: date
    criteria: str  # JSON {code: "met" | "absent"}, every criterion of the study file
    study_file_sha256: str = Field(max_length=64)  # the study file the criteria were read from
    confirmed_by: int = Field(foreign_key="app_user.id")
    confirmed_at: datetime = timestamp()


class Visit(SQLModel, table=True):
    """One treatment visit of a participant, with its window, kit and use clock."""

    __tablename__ = "visit"
    # the visits due today and those in a passing state (pharmacy.due_query; migration 0030_site)
    # the preparations running, soonest use-by first, read along an index (pharmacy.preparations_running;
    # migration 0037_homes): sorting every running visit grew with the years
    __table_args__ = (UniqueConstraint("participant_id", "treatment"),
                      Index("ix_visit_state_window_end", "state", "window_end"),
                      Index("ix_visit_state_use_by", "state", "use_by", "participant_id", "treatment"))

    id: int | None = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    treatment: int
    target_date: date
    window_start: date
    window_end: date
    state: str = Field(default="planned", max_length=16)
    kit_id: int | None = Field(default=None, foreign_key="kit.id", unique=True)
    replaced_kit_ids: str | None = None  # kits replaced at this visit, with reasons in the audit trail
    preparation_started_at: datetime | None = timestamp(nullable=True)
    use_by: datetime | None = timestamp(nullable=True)
    row_version: int = 1


class VisitCount(SQLModel, table=True):
    """How many visits of one study at one site are in one state, kept with every visit's move
    (pharmacy/counts.py), so that the site's work lines count a few rows whatever the years hold.
    Studies, sites and states are the same for both arms: no arm is in it."""

    __tablename__ = "visit_count"

    study_id: int = Field(foreign_key="study.id", primary_key=True)
    site_id: int = Field(foreign_key="site.id", primary_key=True)
    state: str = Field(max_length=16, primary_key=True)
    visits: int = 0


class Administration(SQLModel, table=True):
    __tablename__ = "administration"
    __table_args__ = (UniqueConstraint("visit_id", "dose"),)

    id: int | None = Field(default=None, primary_key=True)
    visit_id: int = Field(foreign_key="visit.id", index=True)
    kit_id: int = Field(foreign_key="kit.id", index=True)
    dose: int  # 1 = left submandibular gland, 2 = right
    administered_at: datetime = timestamp()
    volume_ml: float
    by_user: int = Field(foreign_key="app_user.id")
    by_name: str = Field(max_length=200)


class Unblinding(SQLModel, table=True):
    """An emergency unblinding of one participant. The arm itself is not stored here: it is in the
    sealed compartment and shown once to the investigator who unblinded."""

    __tablename__ = "unblinding"
    # the unblinding list, newest first (pagination.py, migration 0028); the unblindings whose
    # impact the sponsor has not had yet, apart (0043): QA's and supply's home pages ask for them
    # on every visit, and ten years hold a thousand unblindings whose impact went long ago
    __table_args__ = (Index("ix_unblinding_at_id", "at", "id"),
                      Index("ix_unblinding_impact_unsent", "id", sqlite_where=text(IMPACT_UNSENT),
                            postgresql_where=text(IMPACT_UNSENT)))

    id: int | None = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    reason_code: str = Field(max_length=32)
    reason: str
    by_user: int = Field(foreign_key="app_user.id")
    at: datetime = timestamp()
    signature_id: int | None = Field(default=None, foreign_key="signature.id")
    inferable: str = ""  # JSON: other participants whose arm could now be inferred, and why
    # when the impact first went to the sponsor (unblinding_impact.send, with its audit event;
    # cellbench verify replays it from those events)
    impact_sent_at: datetime | None = timestamp(nullable=True)


class Notification(SQLModel, table=True):
    """A message to people outside the page: queued in the transaction of the event it tells, sent
    later by cellbench.notifications' sender (pending -> sent, or dead after its last attempt).

    A message has one audience: "unblinded" messages may name arms, counts and kit lists and are
    read only by unblinded roles; "blinded" ones read the same for an active and a placebo kit.
    `to_address` is the first recipient (kept for the rows written before `recipients`)."""

    __tablename__ = "notification"
    # the notifications list by state, newest first (pagination.py, migration 0028); a site
    # reader's list, one (site, study, state) or her own unblindings at a time, newest first (0032)
    __table_args__ = (Index("ix_notification_state_id", "state", "id"),
                      Index("ix_notification_scope", "site_id", "study_id", "audience", "state", "id"),
                      Index("ix_notification_author", "queued_by", "kind", "state", "id"))

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    to_address: str = Field(max_length=200)
    subject: str = Field(max_length=300)
    body: str
    created_at: datetime = timestamp()
    sent_at: datetime | None = timestamp(nullable=True)
    recipients: str = ""  # comma-separated addresses, resolved when queued
    audience: str = Field(default="unblinded", max_length=16)
    study_id: int | None = Field(default=None, foreign_key="study.id")
    site_id: int | None = Field(default=None, foreign_key="site.id")
    # Who queued it (the author of its "notification queued" event): how an investigator finds
    # the messages her own unblindings queued without reading her audit trail.
    queued_by: int | None = Field(default=None, foreign_key="app_user.id")
    state: str = Field(default="pending", max_length=16, index=True)
    attempts: int = 0
    next_attempt_at: datetime | None = timestamp(nullable=True)
    last_error: str | None = None
    # A sender's claim: its token and until when it holds the row (a crashed sender's claim lapses).
    claimed_by: str | None = Field(default=None, max_length=32)
    claimed_until: datetime | None = timestamp(nullable=True)


class Preparation(SQLModel, table=True):
    """The unblinded preparer's record of one visit's dose, begun when the preparation clock starts
    (the start itself is the visit's preparation_started_at): when the thaw (ASC) or preparation
    (saline) ended and the masking measure used. The same fields for both arms; what is in the
    units stays in the sealed compartment."""

    __tablename__ = "preparation"

    visit_id: int = Field(foreign_key="visit.id", primary_key=True)
    kit_id: int = Field(foreign_key="kit.id", index=True)
    thaw_ended_at: datetime | None = timestamp(nullable=True)
    thaw_ended_by: int | None = Field(default=None, foreign_key="app_user.id")
    masking_measure: str | None = Field(default=None, max_length=200)
    masking_by: int | None = Field(default=None, foreign_key="app_user.id")
    masking_at: datetime | None = timestamp(nullable=True)


class PreparationUnit(SQLModel, table=True):
    """A unit (vial) of the kit scanned at preparation and found to be one of the kit's own. Its
    code is not kept here: which units a kit holds is the sealed compartment's to know."""

    __tablename__ = "preparation_unit"
    __table_args__ = (UniqueConstraint("visit_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    visit_id: int = Field(foreign_key="visit.id", index=True)
    position: int  # the unit's place in the kit, 1 = the first dose's first unit
    scanned_at: datetime = timestamp()
    by_user: int = Field(foreign_key="app_user.id")


class PreparationSyringe(SQLModel, table=True):
    """The syringe drawn up for one dose (gland), its volume, and its printed label."""

    __tablename__ = "preparation_syringe"
    __table_args__ = (UniqueConstraint("visit_id", "dose"),)

    id: int | None = Field(default=None, primary_key=True)
    visit_id: int = Field(foreign_key="visit.id", index=True)
    dose: int  # 1-based index of the study's dose_sites
    volume_ml: float
    drawn_at: datetime = timestamp()
    by_user: int = Field(foreign_key="app_user.id")
    labels_printed: int = 0
    label_printed_at: datetime | None = timestamp(nullable=True)
