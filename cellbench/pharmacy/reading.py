"""Reading the site: participants and visits by reference, what a page or the API shows of a visit
(`VisitView`: the same shape and words for both arms), and the work lists of the day (visits
due, kits to dispense and to prepare, preparations whose clock is running)."""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Select, and_, false, func, or_, select
from sqlmodel import Session, col

from .. import clock, kits, pagination, studies, users
from ..audit import Actor
from ..clock import utcnow
from ..custody import fetch
from ..errors import NotFound
from ..models import Administration, BlindedLot, Kit, Participant, Site, Study, User, Visit
from . import counts
from .lifecycle import FINAL, OPEN, Action, VisitState, actions, study_locked, visit_label
from .records import Earlier, ReadAhead, VisitContext, gland_names, participant_number, replaced_kits

T = TypeVar("T")


def participant_by_ref(session: Session, study_code: str, screening_number: str, *,
                       reader: Actor | None = None) -> Participant:
    """The participant; for a `reader` of other sites or studies, as missing as one never enrolled."""
    study = studies.by_code(session, study_code)
    number = (screening_number or "").strip().upper()
    participant = session.scalars(select(Participant).where(col(Participant.study_id) == study.id,
                                                            col(Participant.screening_number) == number)).first()
    if participant is None or (reader is not None and not users.sees(reader, participant.site_id, study)):
        raise NotFound(f"No participant {number} in {study.code}.", field="participant")
    return participant


MAX_TREATMENTS = 99


def visit_by_ref(session: Session, study_code: str, screening_number: str, treatment: object, *,
                 reader: Actor | None = None) -> Visit:
    participant = participant_by_ref(session, study_code, screening_number, reader=reader)
    try:
        number = int(str(treatment))
    except ValueError:
        raise NotFound(f"No treatment '{str(treatment)[:20]}'.", field="treatment") from None
    if not 1 <= number <= MAX_TREATMENTS:  # a number no visit can have, nor the database hold
        raise NotFound(f"{participant_number(participant)} has no treatment {str(number)[:20]} visit.",
                       field="treatment")
    visit = session.scalars(select(Visit).where(col(Visit.participant_id) == participant.id,
                                                col(Visit.treatment) == number)).first()
    if visit is None:
        raise NotFound(f"{participant_number(participant)} has no treatment {number} visit"
                       f"{'' if participant.randomisation_number else ' (not randomised yet)'}.", field="treatment")
    return visit


def enrolment_sites(session: Session, reader: Actor | None = None) -> list[tuple[str, str, str]]:
    """(study, site code, site name) of every study's sites (a `reader`'s own): where a participant
    may be enrolled."""
    return [(study.code, site.code, site.name) for study in studies.all_studies(session)
            for site, _link in studies.sites_of(session, study) if reader is None or users.sees(reader, site, study)]


def participants(session: Session, study: Study | None = None, *,
                 reader: Actor | None = None) -> list[tuple[Participant, Study, Site]]:
    """Participants (of a study), of the `reader`'s sites and studies only when one is given."""
    query = _participants(study, reader)
    return list(session.execute(query.order_by(col(Study.code), col(Participant.screening_number))).all())


def _participants(study: Study | None, reader: Actor | None) -> Select:
    query = (select(Participant, Study, Site).join(Study, col(Study.id) == col(Participant.study_id))
             .join(Site, col(Site.id) == col(Participant.site_id)))
    if reader is not None:
        query = users.within(query, reader, site=col(Participant.site_id), study=col(Participant.study_id))
    if study is not None:
        query = query.where(col(Participant.study_id) == study.id)
    return query


# By study and screening number: numbers given at screening, before there is an arm to follow.
PARTICIPANT_ORDER = pagination.Order("participants", (col(Participant.study_id), col(Participant.screening_number)))


def participant_page(session: Session, ask: pagination.Ask, study: Study | None = None, *,
                     reader: Actor | None = None, only: Select | None = None) -> pagination.Page:
    """A page of (participant, study, site); `only` those whose id this query gives, when given
    (due_participants: left in the database, not a list of every id)."""
    query = _participants(study, reader)
    if only is not None:
        query = query.where(col(Participant.id).in_(only))
    return pagination.page(session, query, PARTICIPANT_ORDER, ask,
                           key=lambda row: (row[0].study_id, row[0].screening_number))


def visits_of(session: Session, participant: Participant) -> list[Visit]:
    return list(session.scalars(select(Visit).where(col(Visit.participant_id) == participant.id)
                                .order_by(col(Visit.treatment))))


def visits_by_participant(session: Session, participants: list[Participant]) -> dict[int, list[Visit]]:
    """participant id -> its visits in treatment order, for a page of participants in one read."""
    found: dict[int, list[Visit]] = {p.id: [] for p in participants if p.id is not None}
    for visit in session.scalars(select(Visit).where(col(Visit.participant_id).in_(sorted(found)))
                                 .order_by(col(Visit.participant_id), col(Visit.treatment))):
        found[visit.participant_id].append(visit)
    return found


@dataclass
class AdministrationView:
    gland: str
    administered_at: datetime
    volume_ml: float
    administered_by: str
    recorded_by: str


@dataclass
class VisitView:
    """Everything a page or the API shows of a visit: the same shape and words for both arms."""

    ref: str
    study: str
    site: str
    participant: str
    screening_number: str
    treatment: int
    target_date: date
    window_start: date
    window_end: date
    state: str
    state_label: str
    kit_number: str | None
    kit_state_label: str | None
    blinded_lot: str | None
    expiry: date | None
    preparation_started_at: datetime | None
    use_by: datetime | None
    administrations: list[AdministrationView]
    glands: list[str]
    replaced_kits: list[str]
    visit_version: int
    kit_version: int | None
    actions: list[Action] = field(default_factory=list)

    @property
    def allowed(self) -> list[str]:
        return [a.name for a in self.actions if a.blocked is None]

    def may(self, name: str) -> bool:
        return name in self.allowed

    @property
    def clock_running(self) -> bool:
        """The use-by clock runs from the preparation's start until the visit closes (the last gland
        recorded, or the rest not administered): pages stop counting down then."""
        return self.use_by is not None and VisitState(self.state) not in FINAL


def view(session: Session, actor: Actor, visit: Visit) -> VisitView:
    return views(session, actor, [visit])[0]


def _by_id(session: Session, model: type[T], ids: set[int]) -> dict[int, T]:
    """The rows of this model with these ids, in one read (none for no ids)."""
    if not ids:
        return {}
    table: Any = model  # every model read here has an integer `id`
    return {cast(Any, row).id: row for row in session.scalars(select(model).where(col(table.id).in_(sorted(ids))))}


def _contexts(session: Session, visits: list[Visit]) -> list[VisitContext]:
    """The visits' contexts, each with its read-ahead: a fixed number of reads for the whole page."""
    people = _by_id(session, Participant, {v.participant_id for v in visits})
    studies_of = _by_id(session, Study, {p.study_id for p in people.values()})
    sites = _by_id(session, Site, {p.site_id for p in people.values()})
    kits_of = _by_id(session, Kit, {v.kit_id for v in visits if v.kit_id})
    locked = {study_id: study_locked(session, study) for study_id, study in studies_of.items()}
    previous = _earlier(session, visits)
    found = []
    for visit in visits:
        participant = people.get(visit.participant_id)
        if participant is None:
            raise NotFound("The visit names no participant.", field="participant")
        study, site = studies_of[participant.study_id], sites[participant.site_id]
        ahead = ReadAhead(locked[participant.study_id], previous.get((visit.participant_id, visit.treatment - 1)))
        found.append(VisitContext(visit, participant, study, site,
                                  kits_of.get(visit.kit_id) if visit.kit_id else None, ahead))
    return found


def _earlier(session: Session, visits: list[Visit]) -> dict[tuple[int, int], Earlier]:
    """(participant, treatment) -> the treatment and state of each visit's previous treatment (for
    visits after the first), in one read of those values only: no visit row is built for them."""
    wanted = {(v.participant_id, v.treatment - 1) for v in visits if v.treatment > 1}
    if not wanted:
        return {}
    rows = session.execute(select(col(Visit.participant_id), col(Visit.treatment), col(Visit.state))
                           .where(col(Visit.participant_id).in_(sorted({p for p, _t in wanted})),
                                  col(Visit.treatment).in_(sorted({t for _p, t in wanted}))))
    return {(p, t): Earlier(t, state) for p, t, state in rows if (p, t) in wanted}


def views(session: Session, actor: Actor, visits: list[Visit]) -> list[VisitView]:
    """What pages show of these visits (one or a page of them), in a fixed number of reads whatever
    their number: the same reads, shape and words for both arms."""
    contexts = _contexts(session, visits)
    for ctx in contexts:
        # lists and look-ups are already narrowed to the reader's sites; this holds for any other path
        users.require_visible(actor, ctx.site, ctx.study, f"No participant {ctx.participant.screening_number} in "
                              f"{ctx.study.code}.", field="participant")
    visit_ids = sorted(v.id for v in visits if v.id is not None)
    given_rows = list(session.scalars(select(Administration).where(col(Administration.visit_id).in_(visit_ids))
                                      .order_by(col(Administration.visit_id), col(Administration.dose)))) \
        if visit_ids else []
    given_of: dict[int, list[Administration]] = {}
    for row in given_rows:  # by visit, once: each visit's row then costs the same whatever the page
        given_of.setdefault(row.visit_id, []).append(row)
    recorders = _by_id(session, User, {row.by_user for row in given_rows if row.by_user})
    replaced_of = {v.id: replaced_kits(v) for v in visits}
    old_kits = _by_id(session, Kit, {k for ids in replaced_of.values() for k in ids})
    blinded = _by_id(session, BlindedLot, {c.kit.blinded_lot_id for c in contexts if c.kit and c.kit.blinded_lot_id})
    shown = []
    for ctx in contexts:
        visit, kit = ctx.visit, ctx.kit
        names = gland_names(ctx.study)
        given = [AdministrationView(names[row.dose - 1], row.administered_at, row.volume_ml, row.by_name,
                                    recorder.full_name if (recorder := recorders.get(row.by_user)) else "")
                 for row in given_of.get(cast(int, visit.id), ())]
        missing = [k for k in replaced_of[visit.id] if k not in old_kits]
        if missing:
            fetch(session, Kit, missing[0], "kit")  # the one answer a missing kit gets (NotFound)
        lot = blinded.get(kit.blinded_lot_id) if kit and kit.blinded_lot_id else None
        shown.append(VisitView(
            ref=ctx.ref, study=ctx.study.code, site=ctx.site.code, participant=participant_number(ctx.participant),
            screening_number=ctx.participant.screening_number, treatment=visit.treatment,
            target_date=visit.target_date, window_start=visit.window_start, window_end=visit.window_end,
            state=visit.state, state_label=visit_label(visit), kit_number=kit.number if kit else None,
            kit_state_label=kits.state_label(kit.state) if kit else None,
            blinded_lot=lot.code if lot else None, expiry=lot.expiry if lot else None,
            preparation_started_at=visit.preparation_started_at, use_by=visit.use_by, administrations=given,
            glands=names, replaced_kits=[old_kits[k].number for k in replaced_of[visit.id]],
            visit_version=visit.row_version, kit_version=kit.row_version if kit else None,
            actions=actions(session, actor, ctx)))
    return shown


# Soonest window end first, then by participant and treatment: a participant's id follows enrolment,
# before there is an arm, so nothing in this order depends on one.
DUE_ORDER = pagination.Order("visits due", (col(Visit.window_end), col(Visit.participant_id), col(Visit.treatment)))


def due_query(session: Session, states: frozenset[VisitState] = OPEN, *, reader: Actor | None = None) -> Select:
    """Open visits (in these states) whose window includes today at their site, as a query of
    visits: one range of the (state, window end) index from the earliest of the sites' todays, so
    that neither the visits done nor those left open long ago are read, however many the years
    leave. Sites are a handful; their days are worked out here, one read."""
    days: dict[date, list[int]] = {}
    for site in session.scalars(select(Site)):
        if site.id is not None:
            days.setdefault(clock.today(site), []).append(site.id)
    query = select(Visit).where(col(Visit.state).in_(sorted(s.value for s in states)))
    if not days:
        return query.where(false())
    # the bounds outside the OR let the index range be used; the OR holds each site to its own day
    site, study = _participants_site(), _participants_study()
    query = query.where(col(Visit.window_end) >= min(days), col(Visit.window_start) <= max(days),
                        or_(*(and_(site.in_(ids), col(Visit.window_start) <= day,
                                   col(Visit.window_end) >= day) for day, ids in sorted(days.items()))))
    if reader is not None:
        query = users.within(query, reader, site=site, study=study)
    return query


# A visit's site and study are its participant's, read for each visit the index range gives
# (a primary-key look-up): joined instead, PostgreSQL hashed every participant (20,835 at ten
# years, 2.6 ms a statement, twice a request) to keep the hundred visits of the day.
def _participants_site() -> Any:
    return (select(col(Participant.site_id)).where(col(Participant.id) == col(Visit.participant_id))
            .scalar_subquery())


def _participants_study() -> Any:
    return (select(col(Participant.study_id)).where(col(Participant.id) == col(Visit.participant_id))
            .scalar_subquery())


def due_count(session: Session, states: frozenset[VisitState] = OPEN, *, reader: Actor | None = None) -> int:
    return _count(session, due_query(session, states, reader=reader))


def _count(session: Session, query: Select) -> int:
    return session.scalar(select(func.count()).select_from(query.subquery())) or 0


# A page of the visits due today, by default: a day's work at one site (what a pharmacist's tablet
# shows at once; a trial's site sees a handful of treatment visits a day). The total is given
# beside it, so the rest are a page away, never silently left out.
DUE_SHOWN = 20


def due_list(session: Session, ask: pagination.Ask, states: frozenset[VisitState] = OPEN, *,
             reader: Actor) -> tuple[pagination.Page[VisitView], int]:
    """A page of the views of the visits due today (in these states) and how many are due in all:
    counted only when the page does not already say it (a first page with no next is all of them)."""
    query = due_query(session, states, reader=reader)
    found = pagination.page(session, query, DUE_ORDER, ask)
    shown = views(session, reader, list(found.rows))
    count = len(shown) if found.first and not found.next else _count(session, query)
    return pagination.Page(rows=shown, next=found.next, first=found.first), count


def due_participants(session: Session, *, reader: Actor | None = None) -> Select:
    """The ids of the participants with a visit due today, as a query to filter by."""
    return due_query(session, reader=reader).with_only_columns(col(Visit.participant_id))


AWAITING_DISPENSING = frozenset({VisitState.planned, VisitState.kit_assigned})


def due_today(session: Session, states: frozenset[VisitState] = OPEN, *, reader: Actor | None = None) -> list[Visit]:
    """Every visit due today (due_query), in DUE_ORDER: a day's visits at the reader's sites."""
    query = due_query(session, states, reader=reader)
    return list(session.scalars(query.order_by(*DUE_ORDER.columns)))


def awaiting_dispensing(session: Session, *, reader: Actor | None = None) -> list[Visit]:
    return due_today(session, AWAITING_DISPENSING, reader=reader)


DISPENSED = frozenset({VisitState.dispensed})
RUNNING = frozenset({VisitState.in_preparation, VisitState.administering})
# of the passing lists, the first this many (with how many in all): a preparer thaws a dose at a
# time, a few a day; not whatever was left open over the years
SHOWN = DUE_SHOWN


def passing_query(states: frozenset[VisitState], *, reader: Actor | None = None) -> Select:
    """Visits in these passing states (dispensed, in preparation, administering), the reader's
    sites and studies only when one is given: a visit stays in them for hours, and the state index
    (migration 0030_site) finds them without reading the visits done."""
    # joined here (not _participants_site): read in index order to a LIMIT, the first fifty visits'
    # participants are looked up one by one on both engines
    query = (select(Visit).join(Participant, col(Participant.id) == col(Visit.participant_id))
             .where(col(Visit.state).in_(sorted(s.value for s in states))))
    if reader is not None:
        query = users.within(query, reader, site=col(Participant.site_id), study=col(Participant.study_id))
    return query


def passing_count(session: Session, states: frozenset[VisitState], *, reader: Actor | None = None) -> int:
    """How many visits are in these states: from the running counts (counts.py), a few rows
    whatever the number of visits."""
    return counts.count(session, states, reader=reader)


def to_prepare(session: Session, *, reader: Actor | None = None, limit: int = SHOWN) -> list[Visit]:
    """Dispensed kits' visits waiting for preparation, soonest window end first (DUE_ORDER)."""
    return list(session.scalars(passing_query(DISPENSED, reader=reader).order_by(*DUE_ORDER.columns).limit(limit)))


# A running preparation always has its use-by time (set when it starts); the study's use window
# is the same for both arms, so this order says nothing of one.
RUNNING_ORDER = (col(Visit.use_by), col(Visit.participant_id), col(Visit.treatment))


def preparations_running(session: Session, *, reader: Actor | None = None, limit: int = SHOWN) -> list[Visit]:
    """Preparations whose clock is running, soonest use-by first (past ones too, until closed).
    Each running state's first `limit` along the (state, use-by, participant, treatment) index,
    merged: one query over both states sorted every running visit to keep the first few."""
    firsts = [session.scalars(passing_query(frozenset({state}), reader=reader).order_by(*RUNNING_ORDER).limit(limit))
              for state in sorted(RUNNING)]
    return list(heapq.merge(*firsts, key=_running_key))[:limit]


def _running_key(visit: Visit) -> tuple[datetime, int, int]:
    return cast(datetime, visit.use_by), visit.participant_id, visit.treatment


def minutes_left(visit: Visit, now: datetime | None = None) -> int:
    return max(0, math.ceil(((visit.use_by - (now or utcnow())).total_seconds()) / 60)) if visit.use_by else 0
