"""Values of the batch record: typed ones checked against their limits as they are recorded, the ones
cellbench computes from them, and the vial a storage step places."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import insert, inspect
from sqlmodel import Session

from .. import audit, limits, lots, users
from ..audit import Actor
from ..clock import utcnow
from ..deviations import raise_deviation
from ..errors import InvalidInput
from ..lots import vials
from ..models import Lot, Role, StepEntry, StepState, StepValue, VialState
from ..specifications import (
    LimitCheck,
    Parameter,
    Specification,
    Step,
    check_limits,
    formulate_in_cs10,
    parse_value,
    population_doublings,
)
from ..specifications import versions as spec_versions
from .guided import (
    LATE_AFTER,
    PLACING_STEP,
    ValueInput,
    current_values,
    entry_of,
    lot_value,
    require_open_lot,
    step_of,
    where,
)


def record_values(session: Session, actor: Actor, lot: Lot, step_code: str, repeat_index: int,
                  inputs: dict[str, ValueInput], seen_version: int | None) -> list[StepValue]:
    """Record the values typed for one step entry, each checked and audited on its own."""
    users.require_role(actor, Role.operator)
    require_open_lot(lot)
    spec = spec_versions.parsed(lots.spec_of(session, lot))
    step = step_of(spec, step_code)
    lots.claim(session, lot, seen_version)
    entry = entry_of(session, lot, step_code, repeat_index)
    if StepState(entry.state) != StepState.open:
        raise InvalidInput("This step is signed: change a value with a correction, giving a reason.", field="step")
    existing = current_values(session, entry)
    checked: list[tuple[Parameter, _Checked]] = []
    written: list[StepValue] = []
    for parameter in step.parameters:
        given = inputs.get(parameter.code)
        if parameter.computed or given is None or not (given.value.strip() or given.na_reason.strip()):
            continue
        if parameter.code in existing:
            raise InvalidInput(f"'{parameter.label}' is already recorded; correct it with a reason instead.",
                               field=parameter.code)
        checked.append((parameter, _checked_value(actor, entry, parameter, given)))
    # Every value checked first, then all inserted in one statement (in the order typed, so the ids
    # are those one by one gives), then each audited and its deviation opened in that order: one
    # INSERT and flush per value was a fifth of every entry's statements (issue 18). The unit of
    # work inserts a self-referencing table's rows one by one: hence the bulk insert, with NULLs
    # written (else rows are grouped by the columns they leave empty, and the ids are not in the
    # order typed). Its rows come back matched by parameter (one each here), not by their order.
    if checked:
        stored = {value.parameter_code: value for value in session.scalars(
            insert(StepValue).returning(StepValue), [_row(new.value) for _, new in checked],
            execution_options={"render_nulls": True})}
        for parameter, new in checked:
            value = stored[parameter.code]
            _audit_value(session, actor, lot, step, entry, parameter, new._replace(value=value))
            written.append(value)
    # The entry's values as they now stand, from the read above and what was just written: one
    # read of them per call, where computing and placing each read them again (issue 18).
    now_current = existing | {value.parameter_code: value for value in written}
    written += compute(session, actor, lot, spec, step, entry, now_current)
    _place_vial(session, actor, lot, step, now_current)
    _counts_agree(session, lot, written)
    return written


def write_value(session: Session, actor: Actor, lot: Lot, step: Step, entry: StepEntry, parameter: Parameter,
                given: ValueInput, *, correction_reason: str | None = None, computed: bool = False) -> StepValue:
    """One value, checked against the parameter's limits; outside them (or entered late) it opens a
    deviation in the same transaction."""
    new = _checked_value(actor, entry, parameter, given, correction_reason=correction_reason, computed=computed)
    session.add(new.value)
    session.flush()
    _audit_value(session, actor, lot, step, entry, parameter, new)
    return new.value


_STORED_COLUMNS = tuple(attr.key for attr in inspect(StepValue).column_attrs if attr.key != "id")


def _row(value: StepValue) -> dict[str, object]:
    return {key: getattr(value, key) for key in _STORED_COLUMNS}


class _Checked(NamedTuple):
    """A value that passed every check, not stored yet: the row, the value as parsed, whether it is
    within its limits (None: not applicable) and when it was entered."""

    value: StepValue
    parsed: object
    within: bool | None
    now: datetime


def _checked_value(actor: Actor, entry: StepEntry, parameter: Parameter, given: ValueInput, *,
                   correction_reason: str | None = None, computed: bool = False) -> _Checked:
    """The value as it will be stored, once every check on it passed (nothing stored yet)."""
    limits.text(given.comment, parameter.code, f"comment on {parameter.label}", "comment")
    limits.text(given.na_reason, parameter.code, f"reason {parameter.label} is not applicable", "reason")
    now = utcnow()
    text, within, parsed = None, None, None
    if given.value.strip():
        try:
            parsed = parse_value(parameter, given.value.strip())
            within = check_limits(parameter, parsed) == LimitCheck.WITHIN
        except ValueError as exc:
            raise InvalidInput(f"{parameter.label}: {exc}", field=parameter.code) from None
        if isinstance(parsed, datetime) and parsed > now + timedelta(minutes=5):
            raise InvalidInput(f"{parameter.label}: a time in the future cannot be recorded.", field=parameter.code)
        # A time is kept in UTC, whatever zone it was typed in (a typed time without offset is the bench's).
        text = utc_iso(parsed) if isinstance(parsed, datetime) else given.value.strip()
        if not within and not given.comment.strip():
            raise InvalidInput(f"{parameter.label}: {text} is outside its limits ({limits_text(parameter)}); "
                               "explain it in a comment (a deviation will be opened).", field=parameter.code)
    elif not parameter.required or given.na_reason.strip():
        within = None
    if not text and not given.na_reason.strip():
        raise InvalidInput(f"{parameter.label}: give a value, or N/A with a reason.", field=parameter.code)
    assert entry.id is not None  # a started entry is stored
    value = StepValue(entry_id=entry.id, parameter_code=parameter.code, value=text, unit=parameter.unit,
                      within_limits=within if (parameter.min is not None or parameter.max is not None
                                               or parameter.expected is not None) else None,
                      computed=computed, comment=given.comment.strip() or None,
                      na_reason=None if text else given.na_reason.strip(), entered_by=actor.user_id or 0,
                      entered_by_name=actor.name, entered_at=now, correction_reason=correction_reason)
    return _Checked(value, parsed, within, now)


def _audit_value(session: Session, actor: Actor, lot: Lot, step: Step, entry: StepEntry, parameter: Parameter,
                 new: _Checked) -> None:
    """A stored value's audit event, and the deviation it opens when outside its limits or late."""
    value, parsed, now = new.value, new.parsed, new.now
    text, at = value.value, where(step, entry, parameter.code)
    if text is None:
        audit.record(session, actor, "value not applicable", "lot", lot.number, field=at, reason=value.na_reason)
    else:
        audit.record(session, actor, "value corrected" if value.correction_reason else
                     ("value computed" if value.computed else "value recorded"), "lot", lot.number, field=at,
                     new=f"{text} {parameter.unit or ''}".strip(), reason=value.correction_reason or value.comment)
    if new.within is False:
        open_deviation(session, actor, lot, step, f"{at} = {text} {parameter.unit or ''} outside "
                       f"{limits_text(parameter)}. Operator comment: {value.comment}", "out_of_limit")
    if text and isinstance(parsed, datetime) and now - parsed > LATE_AFTER:
        open_deviation(session, actor, lot, step, f"{at} records {text}, entered at {now:%Y-%m-%d %H:%M} UTC: "
                       "a late entry.", "late_entry")


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="minutes" if not moment.second and not moment.microsecond
                                            else "seconds")


def open_deviation(session: Session, actor: Actor, lot: Lot, step: Step, description: str, origin: str) -> None:
    raise_deviation(session, actor, lot_id=lot.id, step_code=step.code, origin=origin, description=description)


def limits_text(parameter: Parameter) -> str:
    if parameter.expected is not None:
        return f"expected {'yes' if parameter.expected else 'no'}"
    unit = f" {parameter.unit}" if parameter.unit else ""
    if parameter.min is not None and parameter.max is not None:
        return f"{parameter.min:g}–{parameter.max:g}{unit}"
    return f"≥ {parameter.min:g}{unit}" if parameter.min is not None else f"≤ {parameter.max:g}{unit}"


def _number(values: dict[str, StepValue], code: str) -> float | None:
    value = values.get(code)
    return float(value.value) if value is not None and value.value is not None else None


def _computed_value(session: Session, lot: Lot, spec: Specification, key: str,
                    values: dict[str, StepValue]) -> float | None:
    """What cellbench calculates instead of the operator (specifications.COMPUTED names them)."""
    if key == "total_viable_cells":
        concentration, volume = _number(values, "viable_concentration"), _number(values, "suspension_volume")
        return None if concentration is None or volume is None else concentration * volume
    if key == "population_doublings":
        seeded, harvested = _number(values, "cells_seeded"), _number(values, "cells_harvested")
        return None if not seeded or not harvested else population_doublings(seeded, harvested)
    if key.startswith("formulation."):
        total = lot_value(session, lot, "count", "total_viable_cells")
        target = spec.product.dose.target_concentration_per_ml
        if total is None or total.value is None or not target:
            return None
        # counts are recorded in 10^6 cells; the dose target is in cells/mL
        result = formulate_in_cs10(float(total.value) * 1e6, target,
                                   residual_volume_ml=_number(values, "residual_volume") or 0.0)
        return {"formulation.final_volume": result.final_volume_ml, "formulation.cs10_volume": result.cs10_volume_ml,
                "formulation.final_dmso": result.final_dmso_percent}[key]
    if key == "dmso_exposure_minutes":
        added, started = lot_value(session, lot, "formulation", "cs10_added_at"), values.get("freeze_started_at")
        if added is None or started is None or not added.value or not started.value:
            return None
        return (datetime.fromisoformat(started.value) - datetime.fromisoformat(added.value)).total_seconds() / 60
    return None


def compute(session: Session, actor: Actor, lot: Lot, spec: Specification, step: Step,
            entry: StepEntry, values: dict[str, StepValue] | None = None) -> list[StepValue]:
    """The entry's computed values whose inputs are all there and that are not yet written
    (`values`: the entry's current values, when the caller has them; they are updated)."""
    written = []
    values = current_values(session, entry) if values is None else values
    for parameter in step.parameters:
        if not parameter.computed or parameter.code in values:
            continue
        result = _computed_value(session, lot, spec, parameter.computed, values)
        if result is not None:
            shown = f"{result:.3f}".rstrip("0").rstrip(".")
            outside = check_limits(parameter, result) != LimitCheck.WITHIN
            comment = "computed by cellbench; outside limits" if outside else ""
            written.append(write_value(session, actor, lot, step, entry, parameter, ValueInput(shown, comment),
                                       computed=True))
            values[parameter.code] = written[-1]
    return written


# Counts of the samples step that must agree with the vials scanned with that fate (lots.vials).
SAMPLE_COUNTS = {"qc_vials": VialState.qc, "retained_vials": VialState.retained}


def _counts_agree(session: Session, lot: Lot, written: list[StepValue]) -> None:
    for value in written:
        if value.parameter_code in SAMPLE_COUNTS and value.value is not None:
            counted = int(float(value.value))
            if why := vials.count_agrees(session, lot, SAMPLE_COUNTS[value.parameter_code], counted):
                raise InvalidInput(why, field=value.parameter_code)


_PLACE = ("vial_id", "tank", "rack", "box", "position")  # what a storage entry records of its vial


def placement(values: dict[str, StepValue]) -> tuple[str, str] | None:
    """The vial a storage entry names and the position it gives (tank/rack/box/position), once all are recorded."""
    typed = {c: values[c].value for c in _PLACE if c in values}
    if not all(typed.get(c) for c in _PLACE):
        return None
    return str(typed["vial_id"]), "/".join(str(typed[c]) for c in _PLACE[1:])


def _place_vial(session: Session, actor: Actor, lot: Lot, step: Step, values: dict[str, StepValue]) -> None:
    """The storage step names a vial and its position: the vial's one fate, placed (lots.vials)."""
    if step.code != PLACING_STEP or (where := placement(values)) is None:
        return
    vials.place(session, actor, lot, *where)
