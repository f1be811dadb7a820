"""Materials and equipment recorded on a step entry by scanning them, each after its rule (release,
expiry, calibration) passes; QA may override a refusal with a reason, which opens a deviation."""
from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlmodel import Session, col

from .. import audit, clock, limits, lots, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Forbidden, InvalidInput
from ..materials import equipment_by_scan, equipment_refusal, material_by_scan, material_refusal
from ..models import Equipment, EquipmentUse, Lot, MaterialLot, MaterialUse, Role, StepEntry
from ..specifications import Step
from ..specifications import versions as spec_versions
from .guided import entry_of, require_open_lot, step_of, where
from .values import open_deviation


def _entry_for_use(session: Session, actor: Actor, lot: Lot, step_code: str,
                   repeat_index: int) -> tuple[Step, StepEntry]:
    users.require_role(actor, Role.operator, Role.qa)
    require_open_lot(lot)
    step = step_of(spec_versions.parsed(lots.spec_of(session, lot)), step_code)
    return step, entry_of(session, lot, step_code, repeat_index)


def _authorise_use(session: Session, actor: Actor, lot: Lot, step: Step, entry: StepEntry, what: str,
                   why: str | None, described: str, override_reason: str | None) -> None:
    """Let a scanned item be used: its rule passed, or QA overrides the refusal with a reason (which
    opens a deviation at once). Operators record; QA only overrides."""
    if why:
        reason = limits.text(override_reason, "override_reason", "reason for the override", "reason")
        if not reason:
            raise InvalidInput(why, field=what)
        users.require_role(actor, Role.qa)  # only QA may use what the rules refuse
        open_deviation(session, actor, lot, step, f"QA override at {where(step, entry, what)}: {described} was "
                       f"refused ({why}). Reason for the override: {reason}", f"{what}_override")
    elif not actor.roles & {Role.operator}:
        raise Forbidden("Operators record materials and equipment; QA only overrides refusals.", field=what)


def _recorded(session: Session, actor: Actor, lot: Lot, step: Step, entry: StepEntry, what: str,
              use: MaterialUse | EquipmentUse, described: str) -> None:
    session.add(use)
    session.flush()
    audit.record(session, actor, f"{what} recorded", "lot", lot.number, field=where(step, entry, what), new=described)


def record_material(session: Session, actor: Actor, lot: Lot, step_code: str, repeat_index: int,
                    scan: str, seen_version: int | None, override_reason: str | None = None) -> MaterialUse:
    step, entry = _entry_for_use(session, actor, lot, step_code, repeat_index)
    item = material_by_scan(session, scan)
    described = f"{item.material_code} lot {item.supplier_lot} (exp. {item.expiry})"
    why = material_refusal(item, clock.today(), {m.code for m in step.materials})
    _authorise_use(session, actor, lot, step, entry, "material", why, described, override_reason)
    lots.claim(session, lot, seen_version)
    assert entry.id is not None and item.id is not None  # both read from the database
    use = MaterialUse(entry_id=entry.id, material_lot_id=item.id, recorded_by=actor.user_id or 0, recorded_at=utcnow())
    _recorded(session, actor, lot, step, entry, "material", use, described)
    return use


def record_equipment(session: Session, actor: Actor, lot: Lot, step_code: str, repeat_index: int,
                     asset_id: str, seen_version: int | None) -> EquipmentUse:
    step, entry = _entry_for_use(session, actor, lot, step_code, repeat_index)
    item = equipment_by_scan(session, asset_id)
    described = f"{item.asset_id} (calibrated until {item.calibration_due})"
    why = equipment_refusal(item, clock.today(), {e.code for e in step.equipment})
    _authorise_use(session, actor, lot, step, entry, "equipment", why, described, None)
    lots.claim(session, lot, seen_version)
    assert entry.id is not None and item.id is not None  # both read from the database
    use = EquipmentUse(entry_id=entry.id, equipment_id=item.id, recorded_by=actor.user_id or 0, recorded_at=utcnow())
    _recorded(session, actor, lot, step, entry, "equipment", use, described)
    return use


# Read at every signature of an entry (steps.guided: why the reads are built once).
_MATERIALS = (select(MaterialLot).join(MaterialUse, col(MaterialUse.material_lot_id) == col(MaterialLot.id))
              .where(col(MaterialUse.entry_id) == bindparam("entry")).order_by(col(MaterialUse.id)))
_EQUIPMENT = (select(Equipment).join(EquipmentUse, col(EquipmentUse.equipment_id) == col(Equipment.id))
              .where(col(EquipmentUse.entry_id) == bindparam("entry")).order_by(col(EquipmentUse.id)))


def materials_of(session: Session, entry: StepEntry) -> list[MaterialLot]:
    return list(session.scalars(_MATERIALS, {"entry": entry.id}))


def equipment_of(session: Session, entry: StepEntry) -> list[Equipment]:
    return list(session.scalars(_EQUIPMENT, {"entry": entry.id}))


def uses_by_entry(session: Session, entry_ids: list[int]) -> tuple[dict[int, list[MaterialLot]],
                                                                    dict[int, list[Equipment]]]:
    """Every entry's materials and equipment in two statements, in the order each was recorded (as
    materials_of / equipment_of): a lot page shows all its entries, and one read per entry made it
    grow with the lot."""
    materials: dict[int, list[MaterialLot]] = {}
    equipment: dict[int, list[Equipment]] = {}
    if not entry_ids:
        return materials, equipment
    for entry_id, item in session.execute(
            select(col(MaterialUse.entry_id), MaterialLot)
            .join(MaterialLot, col(MaterialUse.material_lot_id) == col(MaterialLot.id))
            .where(col(MaterialUse.entry_id).in_(entry_ids)).order_by(col(MaterialUse.id))):
        materials.setdefault(entry_id, []).append(item)
    for entry_id, thing in session.execute(
            select(col(EquipmentUse.entry_id), Equipment)
            .join(Equipment, col(EquipmentUse.equipment_id) == col(Equipment.id))
            .where(col(EquipmentUse.entry_id).in_(entry_ids)).order_by(col(EquipmentUse.id))):
        equipment.setdefault(entry_id, []).append(thing)
    return materials, equipment
