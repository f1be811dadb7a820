"""Whose audit trail holds which events: the one rule (trail_scope) every view of the trail reads
(page, CSV, API, a record's history), as SQL over the audit events. Re-exported by audit."""
from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

from sqlalchemy import (
    ColumnElement,
    Exists,
    Select,
    String,
    and_,
    cast,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    true,
)
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


def _asked(query: Select, whole: bool) -> Exists:
    """EXISTS of a record an event names. Asked per event read (`whole` False), with OFFSET 0: without
    it PostgreSQL may turn the EXISTS into a hash of every record in the reader's scope, built per
    statement (all 100,000 kits at ten years, 40 ms) to answer a page that reads a hundred events; the
    planner does not see that the LIMIT stops the walk early. An EXISTS with an OFFSET is asked per
    row. A statement that reads every event (the export) lets the planner choose (`whole`)."""
    return exists(query if whole else query.offset(0))


def _trial_deviation(whole: bool) -> Exists:
    """A deviation is a trial record when it is about a kit, a visit or a shipment; asked per event by its number."""
    return _asked(select(literal(1)).where(
        col(Deviation.number) == col(AuditEvent.entity_id),
        or_(col(Deviation.kit_id).is_not(None), col(Deviation.visit_id).is_not(None),
            col(Deviation.shipment_id).is_not(None))), whole)


UNBLINDING_SUBJECT = "Emergency unblinding: "
BLINDED_SCOPES: dict[Role, frozenset[str]] = {Role.admin: USER_RECORDS, Role.monitor: TRIAL_RECORDS,
                                              Role.pharmacist: TRIAL_RECORDS, Role.investigator: TRIAL_RECORDS}


# Each kind of record a blinded reader's trail holds, with the rule an event of that kind must meet
# (None: every event of that kind).
KindRules = Mapping[str, ColumnElement[bool] | None]


def kind_rules(viewer: Actor, *, whole: bool = False) -> KindRules | None:
    """trail_scope kind by kind; None for an unblinded reader (the whole trail). A reader asking
    about one kind (audit.entity_types, a filter by kind) is given its one rule, not the OR of all."""
    if not viewer.is_blinded:
        return None
    return _kind_rules(viewer.roles, viewer.sites, viewer.studies, whole)


# Built once per scope, not per request: a site role's rules are a tree of some 1,300 SQL elements,
# 2 ms to build, and the same for every request of the same scope. Expressions are immutable, so
# threads share them as they share the module's prebuilt statements (audit._LOCK_HEAD).
@functools.lru_cache(maxsize=256)
def _kind_rules(roles: frozenset[Role], sites: frozenset[int] | None, studies: frozenset[int] | None,
                whole: bool) -> KindRules:
    records: frozenset[str] = frozenset().union(*(BLINDED_SCOPES.get(role, frozenset()) for role in roles))
    rules: dict[str, ColumnElement[bool] | None] = dict.fromkeys(sorted(records))
    if sites is not None and records & TRIAL_RECORDS:
        rules.update(_site_rules(sites, studies or frozenset(), whole))
    elif records & TRIAL_RECORDS:
        rules["deviation"] = _trial_deviation(whole)
    return MappingProxyType(rules)


def trail_scope(viewer: Actor, rules: KindRules | None = None, *, whole: bool = False) -> ColumnElement[bool]:
    """The one rule of which audit events a reader's trail covers, for every view (page, CSV,
    API, a record's history). Unblinded roles (QA, QP and the rest) read the whole trail; a blinded
    role reads the records of its job, the union when it holds several; a blinded role without a
    scope reads nothing. A site role's trial records are those of its sites and studies
    (site_trial_records). `whole`: for a statement that reads every event (_asked); `rules`: the
    viewer's kind_rules when the caller has them already."""
    if not viewer.is_blinded:
        return true()
    rules = rules if rules is not None else kind_rules(viewer, whole=whole)
    return _either(rules) if rules else false()


def _either(rules: Mapping[str, ColumnElement[bool] | None]) -> ColumnElement[bool]:
    kind = col(AuditEvent.entity_type)
    every = sorted(k for k, rule in rules.items() if rule is None)
    return or_(kind.in_(every), *(and_(kind == k, rule) for k, rule in rules.items() if rule is not None))


def site_trial_records(viewer: Actor, *, whole: bool = False) -> ColumnElement[bool]:
    """The trial records of a site-role reader's sites and studies, as one rule (site_trial_rules)."""
    return _either(site_trial_rules(viewer, whole=whole))


def site_trial_rules(viewer: Actor, *, whole: bool = False) -> Mapping[str, ColumnElement[bool]]:
    """The trial records of a site-role reader's sites and studies (users.scope's rules, as the
    audit trail's entity ids): its studies and sites; the participants and visits of its sites in
    its studies; its studies' kits at its sites or not at any site yet (the bench's stock, on their
    way), as users.scope.sees_kit reads kits; its studies' blinded lots; the shipments to and the
    destructions at its sites; its sites' storage locations; the sponsor notification of an
    unblinding at its sites; and the deviations about those kits, visits and shipments.

    Each is asked of the one record an event names, by that record's unique key (an EXISTS per
    event read, not a list of every kit or participant of the reader's sites built per request):
    a page of the trail then costs the same at ten years as in the first month (_asked)."""
    return _site_rules(viewer.sites or frozenset(), viewer.studies or frozenset(), whole)


def _site_rules(site_ids: frozenset[int], study_ids: frozenset[int], whole: bool) -> Mapping[str, ColumnElement[bool]]:
    sites, studies = sorted(site_ids), sorted(study_ids)
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
    one = select(literal(1))
    rules: dict[str, ColumnElement[bool]] = {kind: _asked(one.where(rule), whole) for kind, rule in ids.items()}
    rules["participant"], rules["visit"] = _asked(participant, whole), _asked(visit, whole)
    # The sponsor's notification of an unblinding names its participant by randomisation number
    # (unblinding.py's subject), which ends the subject and is unique in its study.
    subject = literal(UNBLINDING_SUBJECT) + col(Study.code) + " participant " + col(Participant.randomisation_number)
    number_at = func.length(col(Study.code)) + len(UNBLINDING_SUBJECT) + len(" participant ") + 1
    rules["notification"] = _asked(one.where(cast(col(Notification.id), String) == entity, _asked(theirs.where(
        col(Participant.randomisation_number) == func.substr(col(Notification.subject), number_at),
        subject == col(Notification.subject)), whole)), whole)
    rules["deviation"] = _asked(one.where(col(Deviation.number) == entity, or_(
        _asked(one.where(col(Kit.id) == col(Deviation.kit_id), kit_scope), whole),
        _asked(one.where(col(Shipment.id) == col(Deviation.shipment_id), shipment_scope), whole),
        _asked(visits.where(col(Visit.id) == col(Deviation.visit_id)), whole))), whole)
    return rules
