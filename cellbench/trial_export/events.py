"""The blinded trial events of a study, read once for an export to the sponsor's EDC.

Per randomised participant: the randomisation number and time, and per treatment visit the kit
dispensed (number and time of the pharmacist's scan), each gland's administration (volume and
time), each gland not administered (time and reason), and every emergency unblinding as an event
(time and coded reason; never the arm). Everything here is the same for an active and a placebo
participant except kit numbers: nothing reads the sealed compartment. Times are kept as the UTC
text they are stored as (local_times.Moment): the writers put them in the site's zone.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, String, func, select, type_coerce
from sqlmodel import Session, col

from .. import clock, studies, users
from ..audit import Actor
from ..models import Administration, CustodyEvent, Kit, Participant, Site, Study, Unblinding, Visit
from .local_times import Moment

# Custody actions that date a visit's kit events (pharmacy/dispensing.py, pharmacy/administration.py).
DISPENSED, NOT_ADMINISTERED = "dispensed", "not administered"
# Visit states whose glands without an administration were not administered (pharmacy.VisitState).
STOPPED = frozenset({"not_administered", "incomplete"})


@dataclass(slots=True)
class Dose:
    """One gland of one treatment: administered (volume and time) or not (time and reason)."""

    number: int  # 1, 2, ... as the study numbers its dose sites
    gland: str
    administered_at: Moment | None = None
    volume_ml: float | None = None
    by_name: str | None = None
    not_administered_at: Moment | None = None
    reason: str | None = None


@dataclass(slots=True)
class TreatmentVisit:
    treatment: int
    target_date: str
    state: str
    kit_number: str | None = None
    dispensed_at: Moment | None = None
    administered: list[Dose] = field(default_factory=list)
    not_administered: list[Dose] = field(default_factory=list)


@dataclass(slots=True)
class UnblindingEvent:
    at: Moment
    reason_code: str


@dataclass(slots=True)
class Subject:
    randomisation_number: str
    site_code: str
    zone: ZoneInfo  # the site's: times are written as the site reads them
    randomised_at: Moment | None
    visits: list[TreatmentVisit] = field(default_factory=list)
    unblindings: list[UnblindingEvent] = field(default_factory=list)


@dataclass
class TrialEvents:
    study: Study
    glands: list[str]
    sites: list[Site]
    subjects: list[Subject]

    @property
    def counts(self) -> dict[str, int]:
        """What the export holds, to compare with the records (and to audit the download)."""
        visits = [v for s in self.subjects for v in s.visits]
        return {"participants": len(self.subjects), "dispensings": sum(1 for v in visits if v.kit_number),
                "administrations": sum(len(v.administered) for v in visits),
                "not_administered": sum(len(v.not_administered) for v in visits),
                "unblindings": sum(len(s.unblindings) for s in self.subjects)}


def _stored(column: Any) -> Any:
    """A time column read as the UTC text it is stored as (local_times writes it), not parsed."""
    return type_coerce(column, String)


PAGE = 1000  # participants read per page: a page's rows, not the study's, are in memory at once


def _randomised(study: Study, reader: Actor | None) -> Any:
    """The study's randomised participants (a site role's own sites only), as a query's conditions."""
    query = select(col(Participant.id), col(Participant.randomisation_number), col(Participant.site_id),
                   _stored(col(Participant.randomised_at))).where(col(Participant.study_id) == study.id,
                                                         col(Participant.randomisation_number).is_not(None))
    if reader is not None:
        query = users.within(query, reader, site=col(Participant.site_id), study=col(Participant.study_id))
    return query


def glands_of(study: Study) -> list[str]:
    return list(studies.definition(study).schedule.dose_sites)


def sites_used(session: Session, study: Study, reader: Actor | None = None) -> list[Site]:
    """The sites of the randomised participants an export holds, in id order (its AdminData)."""
    ids = _randomised(study, reader).with_only_columns(col(Participant.site_id)).distinct()
    return list(session.scalars(select(Site).where(col(Site.id).in_(ids)).order_by(col(Site.id))))





def subject_pages(session: Session, study: Study, reader: Actor | None = None,
                  size: int = PAGE) -> Iterator[list[Subject]]:
    """The randomised participants and their events in randomisation-number order, a page at a time
    (keyset on the number, unique in the study), so an export's memory does not grow with the study."""
    glands = glands_of(study)
    zones: dict[int, tuple[str, ZoneInfo]] = {}
    after: str | None = None
    number = col(Participant.randomisation_number)
    connection = session.connection()
    while True:
        query = _randomised(study, reader)
        if after is not None:
            query = query.where(number > after)
        page = connection.execute(query.order_by(number).limit(size)).all()
        if not page:
            return
        for site_id in {p[2] for p in page} - zones.keys():
            site = session.get_one(Site, site_id)
            zones[site_id] = (site.code, clock.zone(site))
        # the page's participants as a subquery of the same conditions between its first and last
        # number: the rows below are asked for by it, not by lists of thousands of ids (which cost
        # more to bind and check than the reading itself)
        members = _randomised(study, reader).with_only_columns(col(Participant.id)).where(number <= page[-1][1])
        if after is not None:
            members = members.where(number > after)
        yield _subjects(connection, page, members, glands, zones)
        if len(page) < size:
            return
        after = page[-1][1]


# One page's rows, each read as plain tuples through the Core connection (not the ORM's result
# machinery): the visits with their kit's number, the kits' dispensing and not-administered custody
# events, the administrations, the unblindings.
def _visits(members: Any) -> Any:
    return (select(col(Visit.participant_id), col(Visit.id), col(Visit.treatment), col(Visit.target_date),
                   col(Visit.state), col(Visit.kit_id), col(Kit.number))
            .outerjoin(Kit, col(Kit.id) == col(Visit.kit_id))
            .where(col(Visit.participant_id).in_(members)).order_by(col(Visit.participant_id), col(Visit.treatment)))


def _kit_events(members: Any) -> Any:
    kits = select(col(Visit.kit_id)).where(col(Visit.participant_id).in_(members), col(Visit.kit_id).is_not(None))
    return (select(col(CustodyEvent.kit_id), col(CustodyEvent.action), _stored(col(CustodyEvent.at)),
                   col(CustodyEvent.condition))
            .where(col(CustodyEvent.kit_id).in_(kits), col(CustodyEvent.action).in_((DISPENSED, NOT_ADMINISTERED)))
            .order_by(col(CustodyEvent.id)))


def _given(members: Any) -> Any:
    visits = select(col(Visit.id)).where(col(Visit.participant_id).in_(members))
    return (select(col(Administration.visit_id), col(Administration.dose), _stored(col(Administration.administered_at)),
                   col(Administration.volume_ml), col(Administration.by_name))
            .where(col(Administration.visit_id).in_(visits))
            .order_by(col(Administration.visit_id), col(Administration.dose)))


def _unblindings(members: Any) -> Any:
    return (select(col(Unblinding.participant_id), _stored(col(Unblinding.at)), col(Unblinding.reason_code))
            .where(col(Unblinding.participant_id).in_(members)).order_by(col(Unblinding.at), col(Unblinding.id)))


def _subjects(connection: Connection, page: Sequence[Any], members: Any, glands: list[str],
              zones: dict[int, tuple[str, ZoneInfo]]) -> list[Subject]:
    """One page of participants (_randomised's rows; `members`, their ids as a subquery) with their
    visits, kits and events."""
    visits: dict[int, list[tuple]] = defaultdict(list)
    for visit in connection.execute(_visits(members)).all():
        visits[visit[0]].append(visit)
    dispensed: dict[int, Any] = {}
    stopped: dict[int, tuple[Any, str | None]] = {}
    for kit_id, action, at, condition in connection.execute(_kit_events(members)).all():
        if action == DISPENSED:  # the last of each kit's stays (events in id order)
            dispensed[kit_id] = at
        else:
            stopped[kit_id] = (at, condition)
    given: dict[int, list[Dose]] = defaultdict(list)
    for visit_id, dose, administered_at, volume_ml, by_name in connection.execute(_given(members)).all():
        given[visit_id].append(Dose(dose, glands[dose - 1], administered_at, volume_ml, by_name))
    unblinded: dict[int, list[UnblindingEvent]] = defaultdict(list)
    for participant_id, at, reason_code in connection.execute(_unblindings(members)).all():
        unblinded[participant_id].append(UnblindingEvent(at, reason_code))
    subjects = []
    none: list = []
    for pid, number, site_id, randomised_at in page:
        code, zone = zones[site_id]
        subjects.append(Subject(number or "", code, zone, randomised_at,
                                [_visit(visit, glands, dispensed, stopped, given.get(visit[1]) or [])
                                 for visit in visits.get(pid, none)], unblinded.get(pid) or []))
    return subjects


def counts(session: Session, study: Study, reader: Actor | None = None) -> dict[str, int]:
    """What an export of the study holds (TrialEvents.counts), counted by the database: the
    download's audit event names them before the file is streamed."""
    people = _randomised(study, reader).with_only_columns(col(Participant.id))
    visits = select(col(Visit.id)).where(col(Visit.participant_id).in_(people))
    dispensed = select(col(CustodyEvent.kit_id)).where(col(CustodyEvent.action) == DISPENSED)
    stopped = visits.where(col(Visit.state).in_(STOPPED))
    glands = len(glands_of(study))
    given_stopped = select(col(Administration.visit_id), col(Administration.dose)).where(
        col(Administration.visit_id).in_(stopped), col(Administration.dose).between(1, glands)).distinct()

    def count(query: Any) -> int:
        return session.scalar(select(func.count()).select_from(query.subquery())) or 0

    return {"participants": count(people),
            "dispensings": count(visits.where(col(Visit.kit_id).in_(dispensed))),
            "administrations": count(select(col(Administration.id)).where(col(Administration.visit_id).in_(visits))),
            "not_administered": glands * count(stopped) - count(given_stopped),
            "unblindings": count(select(col(Unblinding.id)).where(col(Unblinding.participant_id).in_(people)))}


def gather(session: Session, study: Study, reader: Actor | None = None) -> TrialEvents:
    """The study's randomised participants (a site role's own sites only) and their events, all at
    once (exports stream subject_pages instead)."""
    subjects = [s for page in subject_pages(session, study, reader) for s in page]
    return TrialEvents(study, glands_of(study), sites_used(session, study, reader), subjects)


def _visit(visit: tuple, glands: list[str], dispensed: dict[int, Any], stopped: dict[int, tuple[Any, str | None]],
           given: list[Dose]) -> TreatmentVisit:
    """One treatment visit's events from its row (_visits' columns) and its administrations."""
    _, _, treatment, target_date, state, kit_id, kit_number = visit
    scan = dispensed.get(kit_id) if kit_id is not None else None
    # a kit only assigned, not yet dispensed, is no dispensing
    out = TreatmentVisit(treatment, target_date.isoformat(), state, kit_number if scan is not None else None, scan,
                         given)
    if state in STOPPED:
        done = {dose.number for dose in given}
        event = stopped.get(kit_id) if kit_id is not None else None
        at, reason = event if event is not None else (None, None)
        out.not_administered = [Dose(n, gland, not_administered_at=at, reason=reason)
                                for n, gland in enumerate(glands, 1) if n not in done]
    return out
