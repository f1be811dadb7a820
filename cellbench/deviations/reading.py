"""Reading deviations: one by its number, its links, the lists (keyset-paged for the pages), the
release gate's reading of a lot's open deviations, and the little a blinded person may be shown.

Nothing here changes a deviation; raising, assessing and closing are in records.py.
"""
from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlmodel import Session, col

from .. import pagination
from ..errors import NotFound
from ..models import Deviation, DeviationState, Kit, Lot, Participant, Shipment, Signature, Study, User, Visit

SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2}
GENERIC_BLINDED_SUMMARY = "A deviation was recorded and is being handled under the quality system."



def by_number(session: Session, number: str | None, field: str = "number") -> Deviation:
    number = (number or "").strip().upper()
    deviation = session.scalars(select(Deviation).where(col(Deviation.number) == number)).first()
    if deviation is None:
        raise NotFound(f"There is no deviation '{number}'.", field=field)
    return deviation


def links(session: Session, deviation: Deviation) -> dict[str, str | None]:
    """The kit, visit and shipment a deviation concerns, by their public references; only those
    it has. A kit number and a visit say nothing about an arm."""
    found: dict[str, str | None] = {}
    if deviation.kit_id is not None:
        found["kit"] = session.scalar(select(col(Kit.number)).where(col(Kit.id) == deviation.kit_id))
    if deviation.visit_id is not None:
        row = session.execute(select(col(Study.code), col(Participant.screening_number), col(Visit.treatment))
                              .join(Participant, col(Participant.id) == col(Visit.participant_id))
                              .join(Study, col(Study.id) == col(Participant.study_id))
                              .where(col(Visit.id) == deviation.visit_id)).first()
        # the visit's id in the audit trail (pharmacy.VisitContext.ref)
        found["visit"] = f"{row[0]}/{row[1]}/T{row[2]}" if row else None
    if deviation.shipment_id is not None:
        found["shipment"] = session.scalar(select(col(Shipment.number))
                                           .where(col(Shipment.id) == deviation.shipment_id))
    return found


def deviations_of(session: Session, *, kit_id: int | None = None, shipment_id: int | None = None) -> list[Deviation]:
    """The deviations linked to a kit or a shipment, oldest first."""
    query = select(Deviation)
    if kit_id is not None:
        query = query.where(col(Deviation.kit_id) == kit_id)
    if shipment_id is not None:
        query = query.where(col(Deviation.shipment_id) == shipment_id)
    return list(session.scalars(query.order_by(col(Deviation.raised_at), col(Deviation.number))))


def lot_number_of(session: Session, deviation: Deviation) -> str | None:
    return session.scalar(select(col(Lot.number)).where(col(Lot.id) == deviation.lot_id)) if deviation.lot_id else None


@dataclass(frozen=True)
class Around:
    """What a list shows beside its deviations, read for the whole list at once: each one's lot
    number, who raised it (printed name) and its closure signature. One read per row of each made
    the API's page of 100 run 300 statements (issue 18)."""

    lot_numbers: dict[int, str] = field(default_factory=dict)  # by lot id
    raisers: dict[int, str] = field(default_factory=dict)  # user id -> full name
    closures: dict[int, Signature] = field(default_factory=dict)  # by signature id

    def lot_number(self, deviation: Deviation) -> str | None:
        return self.lot_numbers.get(deviation.lot_id) if deviation.lot_id is not None else None

    def raiser(self, deviation: Deviation) -> str | None:
        return self.raisers.get(deviation.raised_by) if deviation.raised_by is not None else None

    def closure(self, deviation: Deviation) -> Signature | None:
        sig_id = deviation.closure_signature_id
        return self.closures.get(sig_id) if sig_id is not None else None


def around(session: Session, rows: Sequence[Deviation], *, raisers: bool = True) -> Around:
    """The lot numbers, raisers' names and closure signatures of these deviations, one statement
    each (none for what no row has)."""
    lot_ids = sorted({d.lot_id for d in rows if d.lot_id is not None})
    user_ids = sorted({d.raised_by for d in rows if d.raised_by is not None}) if raisers else []
    sig_ids = sorted({d.closure_signature_id for d in rows if d.closure_signature_id is not None}) if raisers else []
    lot_numbers = {row[0]: row[1] for row in session.execute(select(col(Lot.id), col(Lot.number))
                                                             .where(col(Lot.id).in_(lot_ids)))} if lot_ids else {}
    names = {row[0]: row[1] for row in session.execute(select(col(User.id), col(User.full_name))
                                                       .where(col(User.id).in_(user_ids)))} if user_ids else {}
    closures = {s.id or 0: s for s in session.scalars(select(Signature).where(col(Signature.id).in_(sig_ids)))} \
        if sig_ids else {}
    return Around(lot_numbers, names, closures)


def _by_severity_then_age(rows: list[Deviation]) -> list[Deviation]:
    return sorted(rows, key=lambda d: (SEVERITY_RANK.get(d.severity, 9), d.raised_at, d.number))


def deviations(session: Session, *, states: Set[DeviationState] | None = None, lot_id: int | None = None,
               order: str = "severity") -> list[Deviation]:
    """Deviations, most severe first then oldest first (order="severity"), or oldest first ("age")."""
    query = select(Deviation)
    if states:
        query = query.where(col(Deviation.state).in_([DeviationState(s).value for s in states]))
    if lot_id is not None:
        query = query.where(col(Deviation.lot_id) == lot_id)
    rows = list(session.scalars(query.order_by(col(Deviation.raised_at), col(Deviation.number))))
    return rows if order == "age" else _by_severity_then_age(rows)


# The two orders of the list: most severe first then oldest ("severity"), or oldest first ("age").
# The severity names sort in their rank's order (critical < major < minor: SEVERITY_RANK), so the
# column's own order is the rank's and an index serves the page (0040_records): a rank computed per
# row sorted every deviation at each page (issue 18). Named anew with it: a cursor holding a rank
# is refused, not compared with a name.
ORDERS = {"severity": pagination.Order("deviations by severity name",
                                      (col(Deviation.severity), col(Deviation.raised_at), col(Deviation.number))),
          "age": pagination.Order("deviations by age", (col(Deviation.raised_at), col(Deviation.number)))}


def deviation_page(session: Session, ask: pagination.Ask, *, states: Set[DeviationState] | None = None,
                   lot_id: int | None = None, order: str = "severity") -> pagination.Page[Deviation]:
    query = select(Deviation)
    if states:
        query = query.where(col(Deviation.state).in_([DeviationState(s).value for s in states]))
    if lot_id is not None:
        query = query.where(col(Deviation.lot_id) == lot_id)
    return pagination.page(session, query, ORDERS[order], ask)


NOT_CLOSED = frozenset({DeviationState.open, DeviationState.assessed})


def open_deviations(session: Session, lot_id: int | None = None) -> list[Deviation]:
    """Deviations not yet closed (open or assessed), most severe first, then oldest first."""
    return deviations(session, states=set(NOT_CLOSED), lot_id=lot_id)


def blocking_deviations(session: Session, lot_id: int) -> list[Deviation]:
    """A lot's deviations that block its release: every one QA has not closed."""
    return open_deviations(session, lot_id)


def deviations_block(session: Session, lot_id: int) -> str | None:
    """The release gate: why this lot's deviations block it, or None."""
    blocking = blocking_deviations(session, lot_id)
    if not blocking:
        return None
    listed = ", ".join(f"{d.number} ({DeviationState(d.state).value})" for d in blocking)
    return f"{len(blocking)} deviation{'s' if len(blocking) > 1 else ''} not closed by QA: {listed}."


def count_by_state(session: Session) -> dict[DeviationState, int]:
    rows = session.execute(select(col(Deviation.state), func.count()).group_by(col(Deviation.state)))
    counts = dict.fromkeys(DeviationState, 0)
    counts.update({DeviationState(state): n for state, n in rows})
    return counts


def closure_signature(session: Session, deviation: Deviation) -> Signature | None:
    return session.get(Signature, deviation.closure_signature_id) if deviation.closure_signature_id else None


def blinded_view(deviation: Deviation) -> dict[str, str]:
    """All that a blinded person may ever be shown of a deviation."""
    return {"number": deviation.number, "state": DeviationState(deviation.state).value,
            "summary": deviation.blinded_summary or GENERIC_BLINDED_SUMMARY}
