"""Running counts of visits by study, site and state (VisitCount), so that the preparer's and the
pharmacist's work lines ("1,389 dispensed kits to thaw or prepare") read a few counter rows
instead of every visit in that state: at ten years a count walked 1,389 visits and their
participants, and the preparer's home page grew 1.9x from a tenth of the data to all of it.

A visit comes into being planned (participants.py: `created`) and changes state in one place
(lifecycle.set_state: `moved`), each in the mover's transaction after its audit event, which on
PostgreSQL holds the audit chain's head: counter rows are taken by one writer at a time. `refill`
rebuilds the counts from the visit rows (the migration that created the table, bulk builders that
insert visits directly); `recount` compares them with the rows (the tests).

The counts hold no arm: both arms' visits pass through the same states at the same sites."""
from __future__ import annotations

from collections import Counter

from sqlalchemy import Table, delete, func, insert, select
from sqlmodel import Session, col

from .. import db, users
from ..audit import Actor
from ..models import Participant, Site, Study, Visit, VisitCount

_COUNT: Table = VisitCount.metadata.tables["visit_count"]
_KEY = ("study_id", "site_id", "state")

Key = tuple[int, int, str]  # study id, site id, state


def _add(session: Session, changes: Counter[Key]) -> None:
    """Add these changes to the counters, in key order (one order for every writer), with the
    running counters' one adding upsert (db.add_to_rows)."""
    db.add_to_rows(session, _COUNT, _KEY, [{**dict(zip(_KEY, key, strict=True)), "visits": n}
                                           for key, n in sorted(changes.items()) if n],
                   lambda new: {"visits": _COUNT.c.visits + new.visits})


def _key(participant: Participant, state: object) -> Key:
    return participant.study_id, participant.site_id, str(getattr(state, "value", state))


def created(session: Session, participant: Participant, states: list[object]) -> None:
    """A participant's new visits, in these states, are counted."""
    _add(session, Counter(_key(participant, state) for state in states))


def moved(session: Session, participant: Participant, old: object, new: object) -> None:
    """One of the participant's visits went from `old` to `new`."""
    _add(session, Counter({_key(participant, old): -1, _key(participant, new): 1}))


def count(session: Session, states: frozenset, *, reader: Actor | None = None) -> int:
    """How many visits are in these states (at the `reader`'s sites and studies, when one is given)."""
    query = select(func.coalesce(func.sum(col(VisitCount.visits)), 0)).where(
        col(VisitCount.state).in_(sorted(str(getattr(s, "value", s)) for s in states)))
    if reader is not None:
        query = users.within(query, reader, site=col(VisitCount.site_id), study=col(VisitCount.study_id))
    return int(session.scalar(query) or 0)


def from_rows(session: Session) -> Counter[Key]:
    """The counts as the visit rows give them now: one GROUP BY over every visit (not for pages)."""
    group = (col(Participant.study_id), col(Participant.site_id), col(Visit.state))
    found: Counter[Key] = Counter()
    for study_id, site_id, state, n in session.execute(
            select(*group, func.count()).join(Participant, col(Participant.id) == col(Visit.participant_id))
            .group_by(*group)):
        found[(study_id, site_id, state)] = n
    return found


def stored(session: Session) -> Counter[Key]:
    """The running counts as stored (rows at zero left out)."""
    return Counter({(r.study_id, r.site_id, r.state): r.visits for r in session.scalars(select(VisitCount))
                    if r.visits})


def recount(session: Session) -> list[str]:
    """Each counter that differs from the visit rows, said in words; none when they agree."""
    rows, kept = from_rows(session), stored(session)
    wrong = sorted(key for key in set(rows) | set(kept) if rows.get(key, 0) != kept.get(key, 0))
    if not wrong:
        return []
    # named by study and site code, as verify names everything
    studies = dict(session.execute(select(col(Study.id), col(Study.code))).all())
    sites = dict(session.execute(select(col(Site.id), col(Site.code))).all())
    return [f"visit count of {studies.get(study, f'study {study}')}, {sites.get(site, f'site {site}')}, "
            f"{state.replace('_', ' ')}: counted {kept.get(key, 0)}, the rows hold {rows.get(key, 0)}"
            for key in wrong for study, site, state in [key]]


def refill(session: Session) -> None:
    """The counts rebuilt from the visit rows."""
    session.execute(delete(VisitCount))
    rows = from_rows(session)
    if rows:
        session.execute(insert(_COUNT), [dict(zip((*_KEY, "visits"), (*key, n), strict=True))
                                         for key, n in sorted(rows.items())])
