"""The site roles' lines on their home page: the investigator's visits due today, the pharmacist's
visits awaiting a dispensed kit, the preparer's kits to thaw or prepare and the clocks running.

Each line is a count and the first visit, read from the database by the same queries as the site
pages (pharmacy.due_query, pharmacy.passing_query), the counts of passing states from the running visit
counts (pharmacy/counts.py); no line depends on an arm. Kept apart from
web/pharmacy.py, whose pages they link to; the module name keeps the lines' place on the home page
(web modules register their queues in name order).
"""
from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session

from .. import pharmacy
from ..deps import Viewer
from ..models import Role, Visit
from .home import QueueItem, line_of, work_queue
from .pharmacy import pharmacists, preparers, visit_url


@work_queue
def _site_work(session: Session, viewer: Viewer) -> list[QueueItem]:
    def at(suffix: str = "") -> Callable[[Visit], str]:
        return lambda visit: visit_url(pharmacy.view(session, viewer.actor, visit)) + suffix

    items = []
    if viewer.has(Role.investigator):  # the investigator sees the participant and administers
        items += line_of(session, _due(session, viewer, pharmacy.OPEN), "treatment visits are due today",
                         "treatment visit is due today", "/participants?due=today", at())
    if viewer.has(*pharmacists):
        items += line_of(session, _due(session, viewer, pharmacy.AWAITING_DISPENSING),
                         "visits today await a dispensed kit", "visit today awaits a dispensed kit", "/dispensing",
                         at("/dispense"))
    if viewer.has(*preparers):
        # Preparation starts by scanning the kit at the preparation station: that page is the one place.
        waiting = pharmacy.passing_query(pharmacy.DISPENSED, reader=viewer.actor).order_by(*pharmacy.DUE_ORDER.columns)
        items += line_of(session, waiting, "dispensed kits to thaw or prepare", "dispensed kit to thaw or prepare",
                         "/preparation", lambda _visit: "/preparation",
                         count=lambda: pharmacy.passing_count(session, pharmacy.DISPENSED, reader=viewer.actor))
        if running := pharmacy.preparations_running(session, reader=viewer.actor, limit=1):
            soonest = pharmacy.minutes_left(running[0])
            count = pharmacy.passing_count(session, pharmacy.RUNNING, reader=viewer.actor)
            items.append(QueueItem(count, f"preparations are running; the next use-by is in {soonest} min",
                                   "/preparation", one=f"preparation is running; its use-by is in {soonest} min"))
    return items


def _due(session: Session, viewer: Viewer, states: frozenset[pharmacy.VisitState]):
    """The visits due today in these states, in their list's order, left in the database: the
    queue line reads a count and the first one (line_of)."""
    return pharmacy.due_query(session, states, reader=viewer.actor).order_by(*pharmacy.DUE_ORDER.columns)
