"""Whose audit trail holds which events: the one rule (trail_scope) every view of the trail reads
(page, CSV, API, a record's history), as SQL over the audit events. Re-exported by audit."""
from __future__ import annotations

from typing import Protocol

from sqlalchemy import ColumnElement, String, and_, cast, exists, false, func, literal, or_, select, true
from sqlmodel import col

from .models import (
    AuditEvent,
    BlindedLot,
    Destruction,
    Deviation,
    Kit,
    Notification,
    Participant,
    Role,
    Shipment,
    Site,
    StorageLocation,
    Study,
    Visit,
)


class Actor(Protocol):
    """A reader as audit.Actor describes one (named here, not imported: audit imports this module)."""

    @property
    def roles(self) -> frozenset[Role]: ...
    @property
    def sites(self) -> frozenset[int] | None: ...
    @property
    def studies(self) -> frozenset[int] | None: ...
    @property
    def is_blinded(self) -> bool: ...


# What a blinded role's audit trail holds (DESIGN.md): the administrator the users, roles and
# security events (sign-in, lockouts, passwords, tokens: all recorded on the user); the site roles
# and the monitor the blinded trail of the trial's own records (and the deviations about a kit, a
# visit or a shipment, whose blinded summary they read), not manufacturing or donors.
USER_RECORDS = frozenset({"user"})
TRIAL_RECORDS = frozenset({"study", "site", "participant", "visit", "kit", "blinded_lot", "shipment",
                           "storage_location", "destruction", "notification"})  # notification: of an unblinding
# A deviation is a trial record when it is about a kit, a visit or a shipment; asked per event by its number.
_TRIAL_DEVIATION = exists().where(col(Deviation.number) == col(AuditEvent.entity_id),
                                  or_(col(Deviation.kit_id).is_not(None), col(Deviation.visit_id).is_not(None),
                                      col(Deviation.shipment_id).is_not(None)))
UNBLINDING_SUBJECT = "Emergency unblinding: "
BLINDED_SCOPES: dict[Role, frozenset[str]] = {Role.admin: USER_RECORDS, Role.monitor: TRIAL_RECORDS,
                                              Role.pharmacist: TRIAL_RECORDS, Role.investigator: TRIAL_RECORDS}


def trail_scope(viewer: Actor) -> ColumnElement[bool]:
    """The one rule of which audit events a reader's trail covers, for every view (page, CSV,
    API, a record's history). Unblinded roles (QA, QP and the rest) read the whole trail; a blinded
    role reads the records of its job, the union when it holds several; a blinded role without a
    scope reads nothing. A site role's trial records are those of its sites and studies
    (site_trial_records)."""
    if not viewer.is_blinded:
        return true()
    scopes = [BLINDED_SCOPES[role] for role in viewer.roles if role in BLINDED_SCOPES]
    if not scopes:
        return false()
    records: frozenset[str] = frozenset().union(*scopes)
    if viewer.sites is not None and records & TRIAL_RECORDS:
        return or_(col(AuditEvent.entity_type).in_(sorted(records - TRIAL_RECORDS)), site_trial_records(viewer))
    rule: ColumnElement[bool] = col(AuditEvent.entity_type).in_(sorted(records))
    if records & TRIAL_RECORDS:
        rule = or_(rule, and_(col(AuditEvent.entity_type) == "deviation", _TRIAL_DEVIATION))
    return rule


def site_trial_records(viewer: Actor) -> ColumnElement[bool]:
    """The trial records of a site-role reader's sites and studies (users.scope's rules, as the
    audit trail's entity ids): its studies and sites; the participants and visits of its sites in
    its studies; its studies' kits at its sites or not at any site yet (the bench's stock, on their
    way), as users.scope.sees_kit reads kits; its studies' blinded lots; the shipments to and the
    destructions at its sites; its sites' storage locations; the sponsor notification of an
    unblinding at its sites; and the deviations about those kits, visits and shipments.

    Each is asked of the one record an event names, by that record's unique key (an EXISTS per
    event read, not a list of every kit or participant of the reader's sites built per request):
    a page of the trail then costs the same at ten years as in the first month."""
    sites, studies = sorted(viewer.sites or ()), sorted(viewer.studies or ())
    entity = col(AuditEvent.entity_id)
    ours = and_(col(Participant.site_id).in_(sites), col(Participant.study_id).in_(studies))
    prefix = func.length(col(Study.code)) + 2  # where the screening number starts in "STUDY/SCR-..."
    theirs = select(literal(1)).select_from(Participant).join(Study, col(Study.id) == col(Participant.study_id))
    theirs = theirs.where(ours)
    participant = theirs.where(col(Participant.screening_number) == func.substr(entity, prefix),
                               col(Study.code) + "/" + col(Participant.screening_number) == entity)
    # A visit is "STUDY/SCR-.../T<n>": its participant's screening number ends before "/T1" or "/T12".
    visit_ref = col(Study.code) + "/" + col(Participant.screening_number) + "/T" + cast(col(Visit.treatment), String)
    screening = [func.substr(entity, prefix, func.length(entity) - prefix - width) for width in (2, 3)]
    visits = theirs.join(Visit, col(Visit.participant_id) == col(Participant.id))
    visit = visits.where(col(Participant.screening_number).in_(screening), visit_ref == entity)
    kit_scope = and_(col(Kit.study_id).in_(studies), or_(col(Kit.site_id).in_(sites), col(Kit.site_id).is_(None)))
    shipment_scope = and_(col(Shipment.site_id).in_(sites), col(Shipment.study_id).in_(studies))
    ids: dict[str, ColumnElement[bool]] = {
        "study": and_(col(Study.code) == entity, col(Study.id).in_(studies)),
        "site": and_(col(Site.code) == entity, col(Site.id).in_(sites)),
        "kit": and_(col(Kit.number) == entity, kit_scope),
        "blinded_lot": and_(col(BlindedLot.code) == entity, col(BlindedLot.study_id).in_(studies)),
        "shipment": and_(col(Shipment.number) == entity, shipment_scope),
        "storage_location": and_(col(StorageLocation.code) == entity, col(StorageLocation.site_id).in_(sites)),
        "destruction": and_(col(Destruction.number) == entity, col(Destruction.site_id).in_(sites),
                            col(Destruction.study_id).in_(studies)),
    }
    rules = [and_(col(AuditEvent.entity_type) == kind, exists().where(rule)) for kind, rule in ids.items()]
    # The sponsor's notification of an unblinding names its participant by randomisation number
    # (unblinding.py's subject), which ends the subject and is unique in its study.
    subject = literal(UNBLINDING_SUBJECT) + col(Study.code) + " participant " + col(Participant.randomisation_number)
    number_at = func.length(col(Study.code)) + len(UNBLINDING_SUBJECT) + len(" participant ") + 1
    notification = exists().where(cast(col(Notification.id), String) == entity, exists(theirs.where(
        col(Participant.randomisation_number) == func.substr(col(Notification.subject), number_at),
        subject == col(Notification.subject))))
    deviation = exists().where(col(Deviation.number) == entity, or_(
        exists().where(col(Kit.id) == col(Deviation.kit_id), kit_scope),
        exists().where(col(Shipment.id) == col(Deviation.shipment_id), shipment_scope),
        exists(visits.where(col(Visit.id) == col(Deviation.visit_id)))))
    return or_(*rules, and_(col(AuditEvent.entity_type) == "participant", exists(participant)),
               and_(col(AuditEvent.entity_type) == "visit", exists(visit)),
               and_(col(AuditEvent.entity_type) == "notification", notification),
               and_(col(AuditEvent.entity_type) == "deviation", deviation))
