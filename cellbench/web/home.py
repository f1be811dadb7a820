"""Each role's home page: its work queue. Later areas add their queues to QUEUES."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import Select, func, select
from sqlmodel import Session

from .. import audit, audit_review, clock
from ..audit import AUDIT_READERS
from ..deps import Viewer, current_viewer, read_session
from ..models import Role
from ..templating import render

router = APIRouter(include_in_schema=False)

# What each role does in cellbench, as its home page tells it.
DUTIES: dict[Role, list[str]] = {
    Role.operator: ["Execute batch-record steps", "Record materials, equipment and values", "Raise deviations"],
    Role.verifier: ["Verify critical steps performed by another operator"],
    Role.qc_analyst: ["Enter QC results against the release specification", "Review out-of-specification results"],
    Role.qa: ["Review batch records by exception", "Review and sign the audit trail", "Close deviations",
              "Decide on lots"],
    Role.qp: ["Certify lots (initial and final certification)"],
    Role.supply_manager: ["Sponsor release", "Randomisation and kit lists", "Packaging and labelling runs",
                          "Shipments", "Blind-preserving quarantine",
                          "For the sponsor, at the end of a study: sign the database lock, then the study unblinding"],
    Role.pharmacist: ["Receive shipments by scanning kits", "Store kits", "Dispense the assigned kit"],
    Role.preparer: ["Thaw or prepare the dose", "Start the preparation clock"],
    Role.investigator: ["Randomise participants", "Record administration per gland", "Request emergency unblinding"],
    Role.monitor: ["Read accountability and reconciliation", "Read the audit trail of blinded data"],
    Role.admin: ["Manage users and roles", "Unlock accounts", "Read the audit trail (no GMP data changes, no signing)"],
    Role.statistician: ["Export the randomisation and kit arms of studies the sponsor has locked and unblinded"],
}


@dataclass
class QueueItem:
    """One line of a role's work queue: how many things wait, what they are, where to act."""

    count: int
    text: str  # as read after a count other than one: "lots in process"
    href: str  # the exact item when there is one, else the list filtered to what waits
    one: str | None = None  # as read after a count of one, when it differs: "lot in process"

    @property
    def label(self) -> str:
        return self.one if self.count == 1 and self.one else self.text


T = TypeVar("T")


def line_for(waiting: Sequence[T], text: str, one: str, listing: str, exact: Callable[[T], str]) -> list[QueueItem]:
    """The queue line for what waits: none when nothing does; the exact item's page when one thing
    waits, else `listing` (the list filtered to what waits)."""
    if not waiting:
        return []
    return [QueueItem(len(waiting), text, exact(waiting[0]) if len(waiting) == 1 else listing, one=one)]


def line_of(session: Session, query: Select, text: str, one: str, listing: str,
            exact: Callable[[Any], str], count: Callable[[], int] | None = None) -> list[QueueItem]:
    """line_for, with the list left in the database: at most two rows are read (none, the one item,
    or more than one), and only when more than one waits does the database count them (or `count`,
    a running count of the same rows, tells). A home page loads no backlog, however much has piled up."""
    first = list(session.scalars(query.limit(2)))
    if not first:
        return []
    if len(first) == 1:
        return [QueueItem(1, text, exact(first[0]), one=one)]
    if count is not None:
        return [QueueItem(count(), text, listing, one=one)]
    counted = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    return [QueueItem(counted, text, listing, one=one)]


QueueSource = Callable[[Session, Viewer], list[QueueItem]]
_QUEUE_SOURCES: list[QueueSource] = []


def work_queue(fn: QueueSource) -> QueueSource:
    """Register a source of work-queue lines (each area's web module adds its own)."""
    _QUEUE_SOURCES.append(fn)
    return fn


@work_queue
def _audit_review_due(session: Session, viewer: Viewer) -> list[QueueItem]:
    """QA's periodic review of the audit trail (audit_review.py), counted in days, not events.

    A reviewer does not act on events one by one: each lot's own trail is reviewed with its release
    (the release queue counts those lots), and this review reads the trail since the last signed one
    and signs it as one range. "3656 events" says nothing about the work; "4 days of the audit trail
    since 2026-12-02" tells QA how far behind the periodic review is, in the unit reviews are planned
    in (a review per week or month, PIC/S PI 041-1 §9). One link: the review page, which shows the
    range and signs it."""
    if not viewer.has(*audit_review.REVIEWERS):
        return []
    period = audit_review.pending_days(session, clock.zone())
    if period is None:
        return []
    first, last = period
    days = (last - first).days + 1
    return [QueueItem(days, f"days of the audit trail await your periodic review (since {first.isoformat()})",
                      "/audit/review", one=f"day of the audit trail awaits your periodic review ({first.isoformat()})")]


@router.get("/")
def home(request: Request, viewer: Viewer = Depends(current_viewer),
         session: Session = Depends(read_session)) -> Response:
    mine = audit.trail(session, viewer.actor, audit.TrailFilter(user=str(viewer.user.id)), limit=10)
    queue = [item for source in _QUEUE_SOURCES for item in source(session, viewer)]
    duties = [(role, DUTIES[role]) for role in sorted(viewer.roles, key=lambda r: list(Role).index(r))]
    return render(request, "home.html", duties=duties, mine=mine, queue=queue,
                  can_read_audit=viewer.has(*AUDIT_READERS))


@router.get("/health", include_in_schema=False)
def health() -> dict[str, str]:
    return {"status": "ok"}
