"""The guided batch record: steps in the master batch record's order, the entry a page shows next,
and the reading every other part of steps stands on."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from sqlalchemy import bindparam, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col

from .. import audit, lots, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..lots import vials
from ..models import Lot, LotState, Role, StepEntry, StepState, StepValue, Vial, VialState
from ..specifications import Specification, Step
from ..specifications import versions as spec_versions

LATE_AFTER = timedelta(hours=24)  # a time recorded this long after it happened is a late entry


@dataclass
class ValueInput:
    value: str = ""
    comment: str = ""
    na_reason: str = ""


# The step that places the vials made at fill: it repeats, one entry per vial, until every filled
# vial is placed or has another fate (lots.vials).
PLACING_STEP = "storage_transfer"


class StepEntries(dict[str, list[StepEntry]]):
    """A lot's step entries by step code, and the filled vials that still have no fate: the placing
    step is not complete while there is one, however many of its entries are signed."""

    vials_without_fate: int = 0


# The reads every call on a step entry makes, built once (issue 18: building a statement cost about as
# much as running it, on every entry of every batch record).
_ENTRIES = (select(StepEntry).where(col(StepEntry.lot_id) == bindparam("lot"))
            .order_by(col(StepEntry.position), col(StepEntry.repeat_index)))
_ENTRY = select(StepEntry).where(col(StepEntry.lot_id) == bindparam("lot"),
                                 col(StepEntry.step_code) == bindparam("code"),
                                 col(StepEntry.repeat_index) == bindparam("repeat"))
_CURRENT = select(StepValue).where(col(StepValue.entry_id) == bindparam("entry"),
                                   col(StepValue.superseded_by).is_(None))


def entries_of(session: Session, lot: Lot) -> StepEntries:
    by_code = StepEntries()
    for entry in session.scalars(_ENTRIES, {"lot": lot.id}):
        by_code.setdefault(entry.step_code, []).append(entry)
    if PLACING_STEP in by_code:  # only then can the count matter: the step waits for its vials
        by_code.vials_without_fate = len(vials.without_fate(session, lot))
    return by_code


def current_steps(session: Session, lot_list: list[Lot]) -> dict[int, Step | None]:
    """Each lot's current step (current_step), for a page of lots in two statements whatever its
    size: the entries of its unfinished records as plain rows (step, state), and their vials
    without a fate, counted. A finished record (lots.RECORD_FINISHED) has none: it is not read.
    One read per lot made the lot list grow with the page (issue 18)."""
    ids = [lot.id for lot in lot_list if lot.id is not None and LotState(lot.state) not in lots.RECORD_FINISHED]
    by_lot: dict[int, StepEntries] = {i: StepEntries() for i in ids}
    found: dict[int, Step | None] = {lot.id: None for lot in lot_list if lot.id is not None}
    if not ids:
        return found
    rows = session.execute(select(col(StepEntry.lot_id), col(StepEntry.step_code), col(StepEntry.state))
                           .where(col(StepEntry.lot_id).in_(ids))
                           .order_by(col(StepEntry.lot_id), col(StepEntry.position), col(StepEntry.repeat_index)))
    for lot_id, code, state in rows:  # entry_done and step_complete read an entry's state only
        by_lot[lot_id].setdefault(code, []).append(cast(StepEntry, _EntryState(state)))
    placing = [i for i, by_code in by_lot.items() if PLACING_STEP in by_code]
    if placing:
        for lot_id, waiting in session.execute(
                select(col(Vial.lot_id), func.count()).where(col(Vial.lot_id).in_(placing),
                                                             col(Vial.state) == VialState.filled.value)
                .group_by(col(Vial.lot_id))):
            by_lot[lot_id].vials_without_fate = waiting
    for lot in lot_list:
        if lot.id in by_lot:
            found[lot.id] = current_step(spec_versions.parsed(lots.spec_of(session, lot)), by_lot[lot.id])
    return found


@dataclass(frozen=True)
class _EntryState:
    state: str


def waiting_vials(by_code: dict[str, list[StepEntry]]) -> int:
    return getattr(by_code, "vials_without_fate", 0)


def current_values(session: Session, entry: StepEntry) -> dict[str, StepValue]:
    rows = session.scalars(_CURRENT, {"entry": entry.id})
    return {v.parameter_code: v for v in rows}


def all_values(session: Session, entry: StepEntry) -> list[StepValue]:
    """Every value of an entry in the order entered, the corrected originals included."""
    return list(session.scalars(select(StepValue).where(col(StepValue.entry_id) == entry.id)
                                .order_by(col(StepValue.id))))


def values_by_entry(session: Session, entry_ids: list[int | None]) -> dict[int, list[StepValue]]:
    """Every value of these entries (all_values for each), in one read: a lot's record is read in a
    fixed number of statements however many entries it has."""
    found: dict[int, list[StepValue]] = {}
    wanted = [i for i in entry_ids if i is not None]
    if wanted:
        for v in session.scalars(select(StepValue).where(col(StepValue.entry_id).in_(wanted))
                                 .order_by(col(StepValue.id))):
            found.setdefault(v.entry_id, []).append(v)
    return found


def entry_done(step: Step, entry: StepEntry) -> bool:
    state = StepState(entry.state)
    return state in (StepState.verified, StepState.not_applicable) or (state == StepState.performed and not step.verify)


def step_complete(step: Step, entries: list[StepEntry], vials_without_fate: int = 0) -> bool:
    """Every entry done, as many as the step needs; the placing step also waits for every filled vial."""
    needed = step.repeat.min if step.repeat else 1
    if step.code == PLACING_STEP and vials_without_fate:
        return False
    return all(entry_done(step, e) for e in entries) and len(entries) >= needed


def current_step(spec: Specification, by_code: dict[str, list[StepEntry]]) -> Step | None:
    """The first step that is not complete: the one the guided page shows."""
    waiting = waiting_vials(by_code)
    return next((s for s in spec.steps if not step_complete(s, by_code.get(s.code, []), waiting)), None)


def order_problem(spec: Specification, by_code: dict[str, list[StepEntry]], step: Step) -> str | None:
    """Why a new entry on this step would break the master batch record's order."""
    position = spec.steps.index(step)
    waiting = waiting_vials(by_code)
    for earlier in spec.steps[:position]:
        if not step_complete(earlier, by_code.get(earlier.code, []), waiting):
            return f"Step '{earlier.title}' must be completed first."
    for later in spec.steps[position + 1:]:
        if by_code.get(later.code):
            return f"Step '{later.title}' has already started; '{step.title}' is closed."
    existing = by_code.get(step.code, [])
    if not step.repeat and existing:
        return f"Step '{step.title}' already has its entry."
    if step.repeat and step.repeat.max and len(existing) >= step.repeat.max:
        return f"Step '{step.title}' allows at most {step.repeat.max} entries."
    if any(not entry_done(step, e) for e in existing):
        return f"Finish the open entry of '{step.title}' before starting another."
    if step.code == PLACING_STEP and existing and not waiting:
        return f"Every vial has its fate: '{step.title}' has nothing left to place."
    return None


def step_of(spec: Specification, code: str) -> Step:
    step = next((s for s in spec.steps if s.code == code), None)
    if step is None:
        raise NotFound(f"No step '{code}' in this specification.", field="step")
    return step


def entry_of(session: Session, lot: Lot, step_code: str, repeat_index: int) -> StepEntry:
    # An entry keeps its place (lot, step, repeat) for ever, so the session remembers the id at that
    # place and takes the entry from its identity map, as a query would have (issue 18: every call
    # recording one entry read it again). A rolled-back transaction forgets them (_forget_entries).
    known: dict[tuple[int | None, str, int], int] = session.info.setdefault(_ENTRY_IDS, {})
    place = (lot.id, step_code, repeat_index)
    entry = session.get(StepEntry, known[place]) if place in known else None
    if entry is None:
        entry = session.scalars(_ENTRY, {"lot": lot.id, "code": step_code, "repeat": repeat_index}).first()
    if entry is None:
        raise NotFound(f"Step '{step_code}' entry {repeat_index} has not been started.", field="step")
    _remember(session, entry)
    return entry


_ENTRY_IDS = "cellbench.steps.entry_ids"


def _remember(session: Session, entry: StepEntry) -> None:
    if entry.id is not None:
        session.info.setdefault(_ENTRY_IDS, {})[entry.lot_id, entry.step_code, entry.repeat_index] = entry.id


@event.listens_for(OrmSession, "after_soft_rollback")
def _forget_entries(session: OrmSession, _previous: object) -> None:
    """An entry inserted in a rolled-back transaction (or savepoint) is gone, and its id may be reused."""
    session.info.pop(_ENTRY_IDS, None)


def require_open_lot(lot: Lot) -> None:
    if LotState(lot.state) != LotState.in_process:
        raise InvalidInput(f"Lot {lot.number} is {LotState(lot.state).value.replace('_', ' ')}: nothing can be "
                           "recorded on it now.", field="lot")


def where(step: Step, entry: StepEntry, parameter: str | None = None) -> str:
    """Where in the batch record a value sits, as the audit trail names it: step[entry].parameter."""
    label = f"{step.code}[{entry.repeat_index}]" if step.repeat else step.code
    return f"{label}.{parameter}" if parameter else label


def lot_value(session: Session, lot: Lot, step_code: str, parameter: str) -> StepValue | None:
    """The current value of a parameter on a lot (the latest entry's, for a repeated step)."""
    query = (select(StepValue).join(StepEntry, col(StepEntry.id) == col(StepValue.entry_id))
             .where(col(StepEntry.lot_id) == lot.id, col(StepEntry.step_code) == step_code,
                    col(StepValue.parameter_code) == parameter, col(StepValue.superseded_by).is_(None))
             .order_by(col(StepEntry.repeat_index).desc()))
    return session.scalars(query).first()


def all_current(session: Session, lot: Lot) -> list[StepValue]:
    return list(session.scalars(select(StepValue).join(StepEntry, col(StepEntry.id) == col(StepValue.entry_id))
                                .where(col(StepEntry.lot_id) == lot.id, col(StepValue.superseded_by).is_(None))))


def start_entry(session: Session, actor: Actor, lot: Lot, step_code: str, seen_version: int | None) -> StepEntry:
    users.require_role(actor, Role.operator)
    require_open_lot(lot)
    spec = spec_versions.parsed(lots.spec_of(session, lot))
    step = step_of(spec, step_code)
    lots.claim(session, lot, seen_version)  # first: a stale page gets a conflict, whatever else is wrong
    by_code = entries_of(session, lot)
    if why := order_problem(spec, by_code, step):
        raise InvalidInput(why, field="step")
    assert lot.id is not None  # claimed above: a stored lot
    entry = StepEntry(lot_id=lot.id, position=spec.steps.index(step) + 1, step_code=step.code,
                      repeat_index=len(by_code.get(step.code, [])) + 1, started_at=utcnow())
    session.add(entry)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("Someone else started this step at the same moment. Reload.", field="step") from None
    audit.record(session, actor, "step started", "lot", lot.number, field=where(step, entry))
    _remember(session, entry)
    return entry
