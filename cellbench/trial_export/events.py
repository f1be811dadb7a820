"""The blinded trial events of a study, read once for an export to the sponsor's EDC.

Per randomised participant: the randomisation number and time, and per treatment visit the kit
dispensed (number and time of the pharmacist's scan), each gland's administration (volume and
time), each gland not administered (time and reason), and every emergency unblinding as an event
(time and coded reason; never the arm). Everything here is the same for an active and a placebo
participant except kit numbers: nothing reads the sealed compartment.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlmodel import Session, col

from .. import clock, studies, users
from ..audit import Actor
from ..models import Administration, CustodyEvent, Kit, Participant, Site, Study, Unblinding, Visit

# Custody actions that date a visit's kit events (pharmacy/dispensing.py, pharmacy/administration.py).
DISPENSED, NOT_ADMINISTERED = "dispensed", "not administered"
# Visit states whose glands without an administration were not administered (pharmacy.VisitState).
STOPPED = frozenset({"not_administered", "incomplete"})


@dataclass
class Dose:
    """One gland of one treatment: administered (volume and time) or not (time and reason)."""

    number: int  # 1, 2, ... as the study numbers its dose sites
    gland: str
    administered_at: datetime | None = None
    volume_ml: float | None = None
    by_name: str | None = None
    not_administered_at: datetime | None = None
    reason: str | None = None


@dataclass
class TreatmentVisit:
    treatment: int
    target_date: str
    state: str
    kit_number: str | None = None
    dispensed_at: datetime | None = None
    administered: list[Dose] = field(default_factory=list)
    not_administered: list[Dose] = field(default_factory=list)


@dataclass
class UnblindingEvent:
    at: datetime
    reason_code: str


@dataclass
class Subject:
    randomisation_number: str
    site_code: str
    zone: ZoneInfo  # the site's: times are written as the site reads them
    randomised_at: datetime | None
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


def _last_by_kit(session: Session, kit_ids: list[int], action: str) -> dict[int, tuple[Any, str | None]]:
    """Each kit's last custody event of this kind: its time and condition, read as columns."""
    rows = session.execute(select(col(CustodyEvent.kit_id), col(CustodyEvent.at), col(CustodyEvent.condition))
                           .where(col(CustodyEvent.kit_id).in_(kit_ids), col(CustodyEvent.action) == action)
                           .order_by(col(CustodyEvent.id)))
    return {kit_id: (at, condition) for kit_id, at, condition in rows}  # the last of each kit's stays


# A study's export reads tens of thousands of rows at ten years: they are read as plain rows of the
# columns used (attribute access as on the models), not built as ORM objects, which cost most of the time.
_VISIT = (col(Visit.id), col(Visit.participant_id), col(Visit.treatment), col(Visit.target_date), col(Visit.state),
          col(Visit.kit_id))
_GIVEN = (col(Administration.visit_id), col(Administration.dose), col(Administration.administered_at),
          col(Administration.volume_ml), col(Administration.by_name))


PAGE = 1000  # participants read per page: a page's rows, not the study's, are in memory at once


def _randomised(study: Study, reader: Actor | None) -> Any:
    """The study's randomised participants (a site role's own sites only), as a query's conditions."""
    query = select(col(Participant.id), col(Participant.randomisation_number), col(Participant.site_id),
                   col(Participant.randomised_at)).where(col(Participant.study_id) == study.id,
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
    (keyset on the number and the id), so an export's memory does not grow with the study."""
    glands = glands_of(study)
    zones: dict[int, tuple[str, ZoneInfo]] = {}
    after: tuple[str, int] | None = None
    number, pid = col(Participant.randomisation_number), col(Participant.id)
    while True:
        query = _randomised(study, reader)
        if after is not None:
            query = query.where(or_(number > after[0], and_(number == after[0], pid > after[1])))
        page = session.execute(query.order_by(number, pid).limit(size)).all()
        if not page:
            return
        for site_id in {p.site_id for p in page} - zones.keys():
            site = session.get_one(Site, site_id)
            zones[site_id] = (site.code, clock.zone(site))
        yield _subjects(session, page, glands, zones)
        if len(page) < size:
            return
        after = (page[-1].randomisation_number, page[-1].id)


def _subjects(session: Session, page: Sequence[Any], glands: list[str],
              zones: dict[int, tuple[str, ZoneInfo]]) -> list[Subject]:
    """One page of participants (_randomised's rows) with their visits, kits and events."""
    ids = [p.id for p in page]
    # rows unpacked or indexed as tuples (a Row's attribute access by name was most of this function's time)
    visits: dict[int, list[tuple]] = defaultdict(list)
    for visit in session.execute(select(*_VISIT).where(col(Visit.participant_id).in_(ids))
                                 .order_by(col(Visit.participant_id), col(Visit.treatment))):
        visits[visit[1]].append(visit)
    visit_ids = [v[0] for vs in visits.values() for v in vs]
    kit_ids = [v[5] for vs in visits.values() for v in vs if v[5] is not None]
    kit_numbers = dict(session.execute(select(col(Kit.id), col(Kit.number))
                                       .where(col(Kit.id).in_(kit_ids))).all())
    dispensed = _last_by_kit(session, kit_ids, DISPENSED)
    stopped = _last_by_kit(session, kit_ids, NOT_ADMINISTERED)
    given: dict[int, list[tuple]] = defaultdict(list)
    for row in session.execute(select(*_GIVEN).where(col(Administration.visit_id).in_(visit_ids))
                               .order_by(col(Administration.dose))):
        given[row[0]].append(row)
    unblinded: dict[int, list[UnblindingEvent]] = defaultdict(list)
    for participant_id, at, reason_code in session.execute(
            select(col(Unblinding.participant_id), col(Unblinding.at), col(Unblinding.reason_code))
            .where(col(Unblinding.participant_id).in_(ids)).order_by(col(Unblinding.at))):
        unblinded[participant_id].append(UnblindingEvent(at, reason_code))
    subjects = []
    none: list[tuple] = []
    for pid, number, site_id, randomised_at in page:
        code, zone = zones[site_id]
        subject = Subject(number or "", code, zone, randomised_at, unblindings=unblinded.get(pid, []))
        subject.visits = [_visit(visit, glands, kit_numbers, dispensed, stopped, given.get(visit[0], none))
                          for visit in visits.get(pid, none)]
        subjects.append(subject)
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


def _visit(visit: tuple, glands: list[str], kit_numbers: dict[int, str],
           dispensed: dict[int, tuple[Any, str | None]], stopped: dict[int, tuple[Any, str | None]],
           given: list[tuple]) -> TreatmentVisit:
    """One treatment visit's events from its row (_VISIT's columns) and its administrations (_GIVEN's)."""
    _, _, treatment, target_date, state, kit_id = visit
    out = TreatmentVisit(treatment, target_date.isoformat(), state)
    scan = dispensed.get(kit_id) if kit_id is not None else None
    if scan is not None:  # a kit only assigned, not yet dispensed, is no dispensing
        out.kit_number, out.dispensed_at = kit_numbers.get(kit_id or 0), scan[0]
    for _, dose, administered_at, volume_ml, by_name in given:
        out.administered.append(Dose(dose, glands[dose - 1], administered_at=administered_at,
                                     volume_ml=volume_ml, by_name=by_name))
    if state in STOPPED:
        done = {row[1] for row in given}
        event = stopped.get(kit_id) if kit_id is not None else None
        out.not_administered = [Dose(n, gland, not_administered_at=event[0] if event else None,
                                     reason=event[1] if event else None)
                                for n, gland in enumerate(glands, 1) if n not in done]
    return out
