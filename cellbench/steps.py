"""Guided execution of the master batch record: steps in order, values checked against their
limits as they are recorded, materials and equipment checked, performed and verified signatures,
corrections that keep the original.

Every mutating function takes the lot version the actor saw (`seen_version`): two people recording
on the same lot at the same moment get one success and one conflict (lots.claim)."""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from . import audit, lots, signatures, users
from .audit import Actor
from .clock import utcnow
from .errors import Conflict, Forbidden, InvalidInput, NotFound
from .models import (
    Equipment,
    EquipmentUse,
    Lot,
    LotState,
    MaterialLot,
    MaterialUse,
    Meaning,
    Role,
    Signature,
    StepEntry,
    StepState,
    StepValue,
    User,
    Vial,
)
from .specifications import (
    LimitCheck,
    Parameter,
    Specification,
    Step,
    check_limits,
    formulate_in_cs10,
    parse_value,
    population_doublings,
)
from .specifications import versions as spec_versions

LATE_AFTER = timedelta(hours=24)  # a time recorded this long after it happened is a late entry


@dataclass
class ValueInput:
    value: str = ""
    comment: str = ""
    na_reason: str = ""


# --- reading ----------------------------------------------------------------------------------


def entries_of(session: Session, lot: Lot) -> dict[str, list[StepEntry]]:
    by_code: dict[str, list[StepEntry]] = {}
    for entry in session.scalars(select(StepEntry).where(StepEntry.lot_id == lot.id)
                                 .order_by(StepEntry.position, StepEntry.repeat_index)):
        by_code.setdefault(entry.step_code, []).append(entry)
    return by_code


def current_values(session: Session, entry: StepEntry) -> dict[str, StepValue]:
    rows = session.scalars(select(StepValue).where(StepValue.entry_id == entry.id, StepValue.superseded_by.is_(None)))
    return {v.parameter_code: v for v in rows}


def all_values(session: Session, entry: StepEntry) -> list[StepValue]:
    """Every value of an entry in the order entered, the corrected originals included."""
    return list(session.scalars(select(StepValue).where(StepValue.entry_id == entry.id).order_by(StepValue.id)))


def _done(step: Step, entry: StepEntry) -> bool:
    state = StepState(entry.state)
    return state in (StepState.verified, StepState.not_applicable) or (state == StepState.performed and not step.verify)


def step_complete(step: Step, entries: list[StepEntry]) -> bool:
    needed = step.repeat.min if step.repeat else 1
    return all(_done(step, e) for e in entries) and len(entries) >= needed


def current_step(spec: Specification, by_code: dict[str, list[StepEntry]]) -> Step | None:
    """The first step that is not complete: the one the guided page shows."""
    return next((s for s in spec.steps if not step_complete(s, by_code.get(s.code, []))), None)


def _order_problem(spec: Specification, by_code: dict[str, list[StepEntry]], step: Step) -> str | None:
    """Why a new entry on this step would break the master batch record's order."""
    position = spec.steps.index(step)
    for earlier in spec.steps[:position]:
        if not step_complete(earlier, by_code.get(earlier.code, [])):
            return f"Step '{earlier.title}' must be completed first."
    for later in spec.steps[position + 1:]:
        if by_code.get(later.code):
            return f"Step '{later.title}' has already started; '{step.title}' is closed."
    existing = by_code.get(step.code, [])
    if not step.repeat and existing:
        return f"Step '{step.title}' already has its entry."
    if step.repeat and step.repeat.max and len(existing) >= step.repeat.max:
        return f"Step '{step.title}' allows at most {step.repeat.max} entries."
    if any(not _done(step, e) for e in existing):
        return f"Finish the open entry of '{step.title}' before starting another."
    return None


def _step(spec: Specification, code: str) -> Step:
    step = next((s for s in spec.steps if s.code == code), None)
    if step is None:
        raise NotFound(f"No step '{code}' in this specification.", field="step")
    return step


def _entry(session: Session, lot: Lot, step_code: str, repeat_index: int) -> StepEntry:
    entry = session.scalars(select(StepEntry).where(StepEntry.lot_id == lot.id, StepEntry.step_code == step_code,
                                                    StepEntry.repeat_index == repeat_index)).first()
    if entry is None:
        raise NotFound(f"Step '{step_code}' entry {repeat_index} has not been started.", field="step")
    return entry


def _require_open_lot(lot: Lot) -> None:
    if LotState(lot.state) != LotState.in_process:
        raise InvalidInput(f"Lot {lot.number} is {LotState(lot.state).value.replace('_', ' ')}: nothing can be "
                           "recorded on it now.", field="lot")


# --- recording --------------------------------------------------------------------------------


def start_entry(session: Session, actor: Actor, lot: Lot, step_code: str, seen_version: int | None) -> StepEntry:
    users.require_role(actor, Role.operator)
    _require_open_lot(lot)
    spec = spec_versions.parsed(lots.spec_of(session, lot))
    step = _step(spec, step_code)
    lots.claim(session, lot, seen_version)  # first: a stale page gets a conflict, whatever else is wrong
    by_code = entries_of(session, lot)
    if why := _order_problem(spec, by_code, step):
        raise InvalidInput(why, field="step")
    entry = StepEntry(lot_id=lot.id, position=spec.steps.index(step) + 1, step_code=step.code,
                      repeat_index=len(by_code.get(step.code, [])) + 1, started_at=utcnow())
    session.add(entry)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("Someone else started this step at the same moment. Reload.", field="step") from None
    audit.record(session, actor, "step started", "lot", lot.number, field=_where(step, entry))
    return entry


def _where(step: Step, entry: StepEntry, parameter: str | None = None) -> str:
    label = f"{step.code}[{entry.repeat_index}]" if step.repeat else step.code
    return f"{label}.{parameter}" if parameter else label


def record_values(session: Session, actor: Actor, lot: Lot, step_code: str, repeat_index: int,
                  inputs: dict[str, ValueInput], seen_version: int | None) -> list[StepValue]:
    """Record the values typed for one step entry, each checked and audited on its own."""
    users.require_role(actor, Role.operator)
    _require_open_lot(lot)
    spec = spec_versions.parsed(lots.spec_of(session, lot))
    step = _step(spec, step_code)
    lots.claim(session, lot, seen_version)
    entry = _entry(session, lot, step_code, repeat_index)
    if StepState(entry.state) != StepState.open:
        raise InvalidInput("This step is signed: change a value with a correction, giving a reason.", field="step")
    existing = current_values(session, entry)
    written = []
    for parameter in step.parameters:
        given = inputs.get(parameter.code)
        if parameter.computed or given is None or not (given.value.strip() or given.na_reason.strip()):
            continue
        if parameter.code in existing:
            raise InvalidInput(f"'{parameter.label}' is already recorded; correct it with a reason instead.",
                               field=parameter.code)
        written.append(_write(session, actor, lot, step, entry, parameter, given))
    written += _compute(session, actor, lot, spec, step, entry)
    _place_vial(session, lot, step, entry)
    return written


def _write(session: Session, actor: Actor, lot: Lot, step: Step, entry: StepEntry, parameter: Parameter,
           given: ValueInput, *, correction_reason: str | None = None, computed: bool = False) -> StepValue:
    now = utcnow()
    text, within = None, None
    if given.value.strip():
        try:
            parsed = parse_value(parameter, given.value.strip())
            within = check_limits(parameter, parsed) == LimitCheck.WITHIN
        except ValueError as exc:
            raise InvalidInput(f"{parameter.label}: {exc}", field=parameter.code) from None
        if isinstance(parsed, datetime) and parsed > now + timedelta(minutes=5):
            raise InvalidInput(f"{parameter.label}: a time in the future cannot be recorded.", field=parameter.code)
        text = given.value.strip()
        if not within and not given.comment.strip():
            raise InvalidInput(f"{parameter.label}: {text} is outside its limits ({_limits(parameter)}); "
                               "explain it in a comment (a deviation will be opened).", field=parameter.code)
    elif not parameter.required or given.na_reason.strip():
        within = None
    if not text and not given.na_reason.strip():
        raise InvalidInput(f"{parameter.label}: give a value, or N/A with a reason.", field=parameter.code)
    value = StepValue(entry_id=entry.id, parameter_code=parameter.code, value=text, unit=parameter.unit,
                      within_limits=within if (parameter.min is not None or parameter.max is not None
                                               or parameter.expected is not None) else None,
                      computed=computed, comment=given.comment.strip() or None,
                      na_reason=None if text else given.na_reason.strip(), entered_by=actor.user_id or 0,
                      entered_by_name=actor.name, entered_at=now, correction_reason=correction_reason)
    session.add(value)
    session.flush()
    where = _where(step, entry, parameter.code)
    if text is None:
        audit.record(session, actor, "value not applicable", "lot", lot.number, field=where, reason=value.na_reason)
    else:
        audit.record(session, actor, "value corrected" if correction_reason else
                     ("value computed" if computed else "value recorded"), "lot", lot.number, field=where,
                     new=f"{text} {parameter.unit or ''}".strip(), reason=correction_reason or value.comment)
    if within is False:
        _deviation(session, actor, lot, step, f"{where} = {text} {parameter.unit or ''} outside {_limits(parameter)}. "
                   f"Operator comment: {value.comment}", "out_of_limit")
    if text and isinstance(parsed, datetime) and now - parsed > LATE_AFTER:
        _deviation(session, actor, lot, step, f"{where} records {text}, entered at {now:%Y-%m-%d %H:%M} UTC: "
                   "a late entry.", "late_entry")
    return value


def _deviation(session: Session, actor: Actor, lot: Lot, step: Step, description: str, origin: str) -> None:
    from .deviations import raise_deviation  # deviations is its own area; the rules live there

    raise_deviation(session, actor, lot_id=lot.id, step_code=step.code, origin=origin, description=description)


def _limits(parameter: Parameter) -> str:
    if parameter.expected is not None:
        return f"expected {'yes' if parameter.expected else 'no'}"
    unit = f" {parameter.unit}" if parameter.unit else ""
    if parameter.min is not None and parameter.max is not None:
        return f"{parameter.min:g}–{parameter.max:g}{unit}"
    return f"≥ {parameter.min:g}{unit}" if parameter.min is not None else f"≤ {parameter.max:g}{unit}"


def _number(values: dict[str, StepValue], code: str) -> float | None:
    value = values.get(code)
    return float(value.value) if value is not None and value.value is not None else None


def _lot_value(session: Session, lot: Lot, step_code: str, parameter: str) -> StepValue | None:
    row = session.execute(select(StepValue).join(StepEntry, StepEntry.id == StepValue.entry_id)
                          .where(StepEntry.lot_id == lot.id, StepEntry.step_code == step_code,
                                 StepValue.parameter_code == parameter, StepValue.superseded_by.is_(None))
                          .order_by(StepEntry.repeat_index.desc())).scalars().first()
    return row


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
        total = _lot_value(session, lot, "count", "total_viable_cells")
        target = spec.product.dose.target_concentration_per_ml
        if total is None or total.value is None or not target:
            return None
        # counts are recorded in 10^6 cells; the dose target is in cells/mL
        result = formulate_in_cs10(float(total.value) * 1e6, target,
                                   residual_volume_ml=_number(values, "residual_volume") or 0.0)
        return {"formulation.final_volume": result.final_volume_ml, "formulation.cs10_volume": result.cs10_volume_ml,
                "formulation.final_dmso": result.final_dmso_percent}[key]
    if key == "dmso_exposure_minutes":
        added, started = _lot_value(session, lot, "formulation", "cs10_added_at"), values.get("freeze_started_at")
        if added is None or started is None or not added.value or not started.value:
            return None
        return (datetime.fromisoformat(started.value) - datetime.fromisoformat(added.value)).total_seconds() / 60
    return None


def _compute(session: Session, actor: Actor, lot: Lot, spec: Specification, step: Step,
             entry: StepEntry) -> list[StepValue]:
    written = []
    values = current_values(session, entry)
    for parameter in step.parameters:
        if not parameter.computed or parameter.code in values:
            continue
        result = _computed_value(session, lot, spec, parameter.computed, values)
        if result is not None:
            shown = f"{result:.3f}".rstrip("0").rstrip(".")
            comment = "computed by cellbench; outside limits" if check_limits(parameter, result) != LimitCheck.WITHIN else ""
            written.append(_write(session, actor, lot, step, entry, parameter, ValueInput(shown, comment),
                                  computed=True))
    return written


def _place_vial(session: Session, lot: Lot, step: Step, entry: StepEntry) -> None:
    """The storage step names a vial and its position: a position never holds two vials."""
    values = current_values(session, entry)
    needed = ("vial_id", "tank", "rack", "box", "position")
    if step.code != "storage_transfer" or not all(values.get(c) and values[c].value for c in needed):
        return
    vial = session.scalars(select(Vial).where(Vial.code == values["vial_id"].value, Vial.lot_id == lot.id)).first()
    if vial is None:
        raise InvalidInput(f"Vial {values['vial_id'].value} is not a vial of lot {lot.number}.", field="vial_id")
    if vial.storage_position:
        raise Conflict(f"Vial {vial.code} is already stored at {vial.storage_position}.", field="vial_id")
    place = "/".join(values[c].value for c in needed[1:])
    if session.scalars(select(Vial.id).where(Vial.storage_position == place)).first() is not None:
        raise Conflict(f"Storage position {place} already holds a vial.", field="position")
    vial.storage_position = place
    session.flush()


def _checked_use(session: Session, actor: Actor, lot: Lot, step_code: str, repeat_index: int,
                 seen_version: int | None, what: str, find, refuse, expected, make, describe,
                 override_reason: str | None = None):
    """Record a scanned item on a step entry after its rule (expiry, release, calibration) passes.

    QA may override a refusal with a reason; the override opens a deviation at once."""
    users.require_role(actor, Role.operator, Role.qa)
    _require_open_lot(lot)
    step = _step(spec_versions.parsed(lots.spec_of(session, lot)), step_code)
    entry = _entry(session, lot, step_code, repeat_index)
    item = find(session)
    if why := refuse(item, utcnow().date(), expected(step)):
        if not (override_reason or "").strip():
            raise InvalidInput(why, field=what)
        users.require_role(actor, Role.qa)  # only QA may use what the rules refuse
        _deviation(session, actor, lot, step, f"QA override at {_where(step, entry, what)}: {describe(item)} was "
                   f"refused ({why}). Reason for the override: {override_reason.strip()}", f"{what}_override")
    elif not actor.roles & {Role.operator}:
        raise Forbidden("Operators record materials and equipment; QA only overrides refusals.", field=what)
    lots.claim(session, lot, seen_version)
    use = make(entry, item)
    session.add(use)
    session.flush()
    audit.record(session, actor, f"{what} recorded", "lot", lot.number, field=_where(step, entry, what),
                 new=describe(item))
    return use


def record_material(session: Session, actor: Actor, lot: Lot, step_code: str, repeat_index: int,
                    scan: str, seen_version: int | None, override_reason: str | None = None) -> MaterialUse:
    from .materials import material_by_scan, material_refusal

    return _checked_use(
        session, actor, lot, step_code, repeat_index, seen_version, "material",
        lambda s: material_by_scan(s, scan), material_refusal, lambda step: {m.code for m in step.materials},
        lambda entry, m: MaterialUse(entry_id=entry.id, material_lot_id=m.id, recorded_by=actor.user_id or 0,
                                     recorded_at=utcnow()),
        lambda m: f"{m.material_code} lot {m.supplier_lot} (exp. {m.expiry})", override_reason)


def record_equipment(session: Session, actor: Actor, lot: Lot, step_code: str, repeat_index: int,
                     asset_id: str, seen_version: int | None) -> EquipmentUse:
    from .materials import equipment_by_scan, equipment_refusal

    return _checked_use(
        session, actor, lot, step_code, repeat_index, seen_version, "equipment",
        lambda s: equipment_by_scan(s, asset_id), equipment_refusal, lambda step: {e.code for e in step.equipment},
        lambda entry, e: EquipmentUse(entry_id=entry.id, equipment_id=e.id, recorded_by=actor.user_id or 0,
                                      recorded_at=utcnow()),
        lambda e: f"{e.asset_id} (calibrated until {e.calibration_due})")


def materials_of(session: Session, entry: StepEntry) -> list[MaterialLot]:
    return list(session.scalars(select(MaterialLot).join(MaterialUse, MaterialUse.material_lot_id == MaterialLot.id)
                                .where(MaterialUse.entry_id == entry.id).order_by(MaterialUse.id)))


def equipment_of(session: Session, entry: StepEntry) -> list[Equipment]:
    return list(session.scalars(select(Equipment).join(EquipmentUse, EquipmentUse.equipment_id == Equipment.id)
                                .where(EquipmentUse.entry_id == entry.id).order_by(EquipmentUse.id)))


# --- signing ----------------------------------------------------------------------------------


@signatures.content_rule("step_entry")
def _entry_content(session: Session, entry_id: str) -> dict:
    """What the performed and verified signatures cover: every current value, material and instrument."""
    entry = session.get(StepEntry, int(entry_id))
    if entry is None:
        raise NotFound("No such step entry.")
    lot = session.get(Lot, entry.lot_id)
    values = sorted(current_values(session, entry).values(), key=lambda v: v.parameter_code)
    return {
        "lot": lot.number, "step": entry.step_code, "entry": entry.repeat_index, "na_reason": entry.na_reason,
        "values": [[v.parameter_code, v.value, v.unit, v.comment, v.na_reason] for v in values],
        "materials": [[m.material_code, m.supplier_lot, m.expiry.isoformat()] for m in materials_of(session, entry)],
        "equipment": [[e.asset_id, e.calibration_due.isoformat()] for e in equipment_of(session, entry)],
    }


def _incomplete(session: Session, step: Step, entry: StepEntry) -> str | None:
    values = current_values(session, entry)
    missing = [p.label for p in step.parameters if p.required and p.code not in values]
    if missing:
        return "Still to record: " + ", ".join(missing) + "."
    have_materials = {m.material_code for m in materials_of(session, entry)}
    have_equipment = {e.equipment_code for e in equipment_of(session, entry)}
    lacking = [m.name for m in step.materials if m.required and m.code not in have_materials]
    lacking += [e.name for e in step.equipment if e.required and e.code not in have_equipment]
    if lacking:
        return "Record or scan: " + ", ".join(lacking) + "."
    return None


def perform(session: Session, operator: User, password: str, lot: Lot, step_code: str, repeat_index: int,
            seen_version: int | None) -> StepEntry:
    """The operator signs the step as performed (re-entering the password)."""
    actor = users.actor(session, operator)
    users.require_role(actor, Role.operator)
    _require_open_lot(lot)
    spec = spec_versions.parsed(lots.spec_of(session, lot))
    step = _step(spec, step_code)
    entry = _entry(session, lot, step_code, repeat_index)
    if StepState(entry.state) != StepState.open:
        raise InvalidInput("This step entry is already signed.", field="step")
    if why := _incomplete(session, step, entry):
        raise InvalidInput(why, field="step")
    lots.claim(session, lot, seen_version)
    sig = signatures.sign(session, operator, password, Meaning.performed, "step_entry", str(entry.id))
    entry.state, entry.performed_by, entry.performed_signature_id = StepState.performed, operator.id, sig.id
    session.flush()
    if step.code in UNIT_COUNTS:
        _create_units(session, actor, lot, entry, step.code)
    _complete_if_done(session, actor, lot, spec)
    return entry


def verify(session: Session, verifier: User, password: str, lot: Lot, step_code: str, repeat_index: int,
           seen_version: int | None) -> StepEntry:
    """A second person signs the step as verified: never the one who performed it."""
    actor = users.actor(session, verifier)
    users.require_role(actor, Role.verifier, Role.operator)
    _require_open_lot(lot)
    spec = spec_versions.parsed(lots.spec_of(session, lot))
    step = _step(spec, step_code)
    entry = _entry(session, lot, step_code, repeat_index)
    if not step.verify:
        raise InvalidInput(f"'{step.title}' needs no second-person verification.", field="step")
    if StepState(entry.state) != StepState.performed:
        raise InvalidInput("Only a performed, not yet verified step can be verified.", field="step")
    if entry.performed_by == verifier.id:
        raise Forbidden("Nobody verifies their own step: another person must verify it.", field="step")
    lots.claim(session, lot, seen_version)
    sig = signatures.sign(session, verifier, password, Meaning.verified, "step_entry", str(entry.id))
    entry.state, entry.verified_signature_id = StepState.verified, sig.id
    session.flush()
    _complete_if_done(session, actor, lot, spec)
    return entry


def correct_value(session: Session, actor: Actor, lot: Lot, value_id: int, new_value: str, reason: str | None,
                  comment: str = "", seen_version: int | None = None) -> StepValue:
    """A correction adds a new value and keeps the original visible; signatures on the entry are voided."""
    users.require_role(actor, Role.operator, Role.qa)
    reason = audit.require_reason(reason)
    _require_open_lot(lot)
    old = session.get(StepValue, value_id)
    entry = session.get(StepEntry, old.entry_id) if old else None
    if old is None or entry.lot_id != lot.id:
        raise NotFound("No such value on this lot.", field="value")
    if old.superseded_by is not None:
        raise Conflict("That value was already corrected. Reload to see the current one.", field="value")
    if old.computed:
        raise InvalidInput("A computed value follows its inputs: correct those instead.", field="value")
    spec = spec_versions.parsed(lots.spec_of(session, lot))
    step = _step(spec, entry.step_code)
    parameter = next(p for p in step.parameters if p.code == old.parameter_code)
    lots.claim(session, lot, seen_version)
    dependents = [v for v in current_values(session, entry).values() if v.computed]
    new = _write(session, actor, lot, step, entry, parameter, ValueInput(new_value, comment), correction_reason=reason)
    old.superseded_by = new.id
    for dependent in dependents:  # recomputed below from the corrected inputs
        dependent.superseded_by = new.id
    session.flush()
    _compute(session, actor, lot, spec, step, entry)
    for sig_id in (entry.performed_signature_id, entry.verified_signature_id):
        if sig_id:
            signatures.invalidate(session, actor, session.get(Signature, sig_id),
                                  f"value {parameter.code} corrected: {reason}")
    if StepState(entry.state) != StepState.open:
        entry.state, entry.performed_signature_id, entry.verified_signature_id = StepState.open, None, None
    session.flush()
    return new


# --- completion -------------------------------------------------------------------------------


# The step whose signature creates a lot's units, the count that says how many, and their code
# letter: ASC vials at fill, saline units (ampoules) at receipt. Both are rows of `vial`, so a kit
# holds units of either product the same way.
UNIT_COUNTS = {"fill": ("vials_filled", "V"), "supplier_receipt": ("units_received", "U")}


def _create_units(session: Session, actor: Actor, lot: Lot, entry: StepEntry, step_code: str) -> None:
    parameter, letter = UNIT_COUNTS[step_code]
    if session.scalar(select(Vial.id).where(Vial.lot_id == lot.id).limit(1)) is not None:
        return  # re-signed after a correction: the units exist already
    count = int(float(current_values(session, entry)[parameter].value))
    session.add_all(Vial(code=f"{lot.number}-{letter}{n:03d}", lot_id=lot.id, seq=n) for n in range(1, count + 1))
    session.flush()
    audit.record(session, actor, "vials created" if letter == "V" else "units created", "lot", lot.number,
                 field="vials" if letter == "V" else "units",
                 new=f"{lot.number}-{letter}001 … {lot.number}-{letter}{count:03d} ({count})")


def _months_later(day: date, months: int) -> date:
    year, month = divmod(day.month - 1 + months, 12)
    year, month = day.year + year, month + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _complete_if_done(session: Session, actor: Actor, lot: Lot, spec: Specification) -> None:
    if current_step(spec, entries_of(session, lot)) is not None:
        return
    lot.state = LotState.qc_pending
    if spec.product.expiry_basis == "freeze_date":
        frozen = _lot_value(session, lot, "controlled_rate_freezing", "freeze_started_at")
        lot.expiry = _months_later(datetime.fromisoformat(frozen.value).date(), spec.product.shelf_life_frozen_months)
    else:
        supplied = next((v for v in _all_current(session, lot) if v.parameter_code.endswith("expiry") and v.value), None)
        lot.expiry = date.fromisoformat(supplied.value) if supplied else None
    session.flush()
    audit.record(session, actor, "batch record complete", "lot", lot.number, field="state",
                 old=LotState.in_process, new=LotState.qc_pending)
    audit.record(session, actor, "expiry set", "lot", lot.number, field="expiry", new=lot.expiry)


def _all_current(session: Session, lot: Lot) -> list[StepValue]:
    return list(session.scalars(select(StepValue).join(StepEntry, StepEntry.id == StepValue.entry_id)
                                .where(StepEntry.lot_id == lot.id, StepValue.superseded_by.is_(None))))
