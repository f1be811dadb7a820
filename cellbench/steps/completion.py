"""Completion: the units a signed step creates, and the lot's move to QC (the lot table's "complete",
through lots.complete) with its expiry once every step is done."""
from __future__ import annotations

import calendar
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit, lots
from ..audit import Actor
from ..errors import InvalidInput
from ..models import Lot, StepEntry, Vial, VialState
from ..specifications import Specification
from ..specifications import versions as spec_versions
from .guided import all_current, current_step, current_values, entries_of, lot_value

# The step whose signature creates a lot's units, the count that says how many, and their code
# letter, in order of precedence (unit_step): vials at fill, supplied units (ampoules) at receipt.
# Both are rows of `vial`, so a kit holds units of either product the same way.
UNIT_COUNTS = {"fill": ("vials_filled", "V"), "supplier_receipt": ("units_received", "U")}


def unit_step(spec: Specification) -> str | None:
    """The step that creates the lot's units: the fill where the lot is filled here (ASC, and the
    saline mirror fill from saline-placebo v2 on), else the receipt of supplied units (saline v1)."""
    return next((code for code in UNIT_COUNTS if any(step.code == code for step in spec.steps)), None)


def create_units(session: Session, actor: Actor, lot: Lot, entry: StepEntry, step_code: str) -> None:
    parameter, letter = UNIT_COUNTS[step_code]
    assert lot.id is not None  # a lot with a signed step is stored
    if session.scalar(select(col(Vial.id)).where(col(Vial.lot_id) == lot.id).limit(1)) is not None:
        return  # re-signed after a correction: the units exist already
    counted = current_values(session, entry)[parameter].value
    if counted is None:
        raise InvalidInput(f"The step records no {parameter.replace('_', ' ')}.", field=parameter)
    count = int(float(counted))
    # Filled here: each vial waits for its one fate. Received from a supplier: the units are stock.
    state = VialState.filled if step_code == "fill" else VialState.stored
    session.add_all(Vial(code=f"{lot.number}-{letter}{n:03d}", lot_id=lot.id, seq=n, state=state.value)
                    for n in range(1, count + 1))
    session.flush()
    audit.record(session, actor, "vials created" if letter == "V" else "units created", "lot", lot.number,
                 field="vials" if letter == "V" else "units",
                 new=f"{lot.number}-{letter}001 … {lot.number}-{letter}{count:03d} ({count})")


def months_later(day: date, months: int) -> date:
    year, month = divmod(day.month - 1 + months, 12)
    year, month = day.year + year, month + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _expiry(session: Session, lot: Lot, spec: Specification) -> date | None:
    """A frozen lot expires a shelf life after freezing; a supplied product on its supplier's expiry.
    A lot filled from a supplied product (the saline mirror fill) never outlives the supplier's date."""
    supplied = next((v for v in all_current(session, lot) if v.parameter_code.endswith("expiry") and v.value), None)
    supplier_expiry = date.fromisoformat(supplied.value) if supplied and supplied.value else None
    if spec.product.expiry_basis == "freeze_date":
        frozen = lot_value(session, lot, "controlled_rate_freezing", "freeze_started_at")
        if frozen is None or not frozen.value or spec.product.shelf_life_frozen_months is None:
            raise InvalidInput("The batch record gives no freezing time to date the lot's expiry from.",
                               field="freeze_started_at")
        shelf = months_later(datetime.fromisoformat(frozen.value).date(), spec.product.shelf_life_frozen_months)
        return min(shelf, supplier_expiry) if supplier_expiry else shelf
    return supplier_expiry


def complete_if_done(session: Session, actor: Actor, lot: Lot, spec: Specification) -> None:
    """After a signature: when no step is left, the lot moves to QC through the lot table."""
    if current_step(spec, entries_of(session, lot)) is not None:
        return
    lots.complete(session, actor, lot, _expiry(session, lot, spec))


def batch_record_unfinished(lot: Any, session: Session) -> str | None:
    """The guard on the lot table's "complete": every step of the master batch record is done."""
    step = current_step(spec_versions.parsed(lots.spec_of(session, lot)), entries_of(session, lot))
    return None if step is None else f"Step '{step.title}' of the batch record is not complete."


lots.MACHINE.add_guards("complete", (batch_record_unfinished,))
