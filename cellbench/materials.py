"""Material lots and equipment: receipt, QA disposition, calibration, and the two rules a
batch-record step applies when an operator records a material or a piece of equipment.

Scan formats, what a barcode scanner (or a person typing) may give:

- material lot: ``MAT|<material_code>|<supplier_lot>``, the payload of the receipt label cellbench
  prints (`material_scan_code`), or ``<material_code>:<supplier_lot>`` typed by hand. The material
  code is the one the specification's steps name (lower case); the supplier lot is matched exactly.
- equipment: the asset id printed on the asset label, or ``EQ|<asset_id>``.

A material code never contains ':' or '|', so a supplier lot may contain either.
"""
from __future__ import annotations

import json
import re
from datetime import date, timedelta

from sqlalchemy import Select, func, select
from sqlmodel import Session, col

from . import audit, clock, inputs, pagination, users
from .audit import Actor
from .clock import utcnow
from .errors import Conflict, InvalidInput, NotFound
from .models import Equipment, MaterialLot, MaterialStatus, Role, SpecVersion

CODE = re.compile(r"^[a-z][a-z0-9_]*$")  # as in the specification files
ASSET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # goes into URLs and onto labels
MATERIAL_SCAN_PREFIX = "MAT|"
EQUIPMENT_SCAN_PREFIX = "EQ|"
EXPIRY_WARNING_DAYS = 30
CALIBRATION_WARNING_DAYS = 14

RECEIVERS = (Role.operator, Role.qa)
EQUIPMENT_KEEPERS = (Role.operator, Role.qa)

# QA's disposition of a material lot: action -> (states it may start from, state it leads to).
# A released lot may still be rejected (a supplier recall, a failed incoming test); a rejected
# lot is final.
MATERIAL_DECISIONS: dict[str, tuple[frozenset[MaterialStatus], MaterialStatus]] = {
    "release": (frozenset({MaterialStatus.quarantine}), MaterialStatus.released),
    "reject": (frozenset({MaterialStatus.quarantine, MaterialStatus.released}), MaterialStatus.rejected),
}


# --- input helpers ----------------------------------------------------------------------------


def _code(value: str | None, field: str, what: str) -> str:
    value = inputs.text(value, field, what, 64).lower()
    if not CODE.match(value):
        raise InvalidInput(f"The {what} '{value}' must be written as in the specification: lower-case letters, "
                           "digits and '_', starting with a letter.", field=field)
    return value


def _today(today: date | None) -> date:
    # Expiry and calibration dates are the bench's calendar days, not UTC days.
    return today or clock.today()


def known_codes(session: Session) -> tuple[dict[str, str], dict[str, str]]:
    """Material and equipment codes named by the loaded specifications (code -> name), so that
    forms can offer them instead of relying on typing."""
    materials: dict[str, str] = {}
    equipment: dict[str, str] = {}
    for content in session.scalars(select(col(SpecVersion.content))):
        for step in json.loads(content).get("steps", []):
            materials.update({m["code"]: m["name"] for m in step.get("materials", [])})
            equipment.update({e["code"]: e["name"] for e in step.get("equipment", [])})
    return dict(sorted(materials.items())), dict(sorted(equipment.items()))


# --- material lots ----------------------------------------------------------------------------


def material_label(lot: MaterialLot) -> str:
    """The public name of a material lot: in URLs, audit entries and messages."""
    return f"{lot.material_code}:{lot.supplier_lot}"


def material_scan_code(lot: MaterialLot) -> str:
    return f"{MATERIAL_SCAN_PREFIX}{lot.material_code}|{lot.supplier_lot}"


def receive_material(session: Session, actor: Actor, *, material_code: str, name: str, supplier: str,
                     supplier_lot: str, expiry: date | str, today: date | None = None) -> MaterialLot:
    """A received lot starts in quarantine until QA releases it."""
    users.require_role(actor, *RECEIVERS)
    material_code = _code(material_code, "material_code", "material code")
    name = inputs.text(name, "name", "material name", 200)
    supplier = inputs.text(supplier, "supplier", "supplier", 200)
    supplier_lot = inputs.text(supplier_lot, "supplier_lot", "supplier lot", 64)
    expiry = inputs.expiry(expiry, "expiry", "expiry date")
    if expiry < _today(today):
        raise InvalidInput(f"The expiry date {expiry} is already past: an expired lot cannot be received.",
                           field="expiry")
    if _find_material(session, material_code, supplier_lot) is not None:
        raise Conflict(f"Lot '{supplier_lot}' of {material_code} has already been received.", field="supplier_lot")
    lot = MaterialLot(material_code=material_code, name=name, supplier=supplier, supplier_lot=supplier_lot,
                      expiry=expiry, status=MaterialStatus.quarantine, received_at=utcnow())
    session.add(lot)
    session.flush()
    audit.record(session, actor, "material received", "material_lot", material_label(lot),
                 new={"name": name, "supplier": supplier, "expiry": expiry.isoformat(),
                      "status": MaterialStatus.quarantine.value})
    return lot


def decide_material(session: Session, actor: Actor, lot: MaterialLot, decision: str, reason: str | None) -> None:
    """QA releases or rejects a material lot, saying why (certificate reviewed, test failed...)."""
    users.require_role(actor, Role.qa)
    if decision not in MATERIAL_DECISIONS:
        raise InvalidInput(f"Unknown decision '{decision}': release or reject.", field="decision")
    reason = audit.require_reason(reason)
    sources, target = MATERIAL_DECISIONS[decision]
    current = MaterialStatus(lot.status)
    if current not in sources:
        raise Conflict(f"Material lot {material_label(lot)} is {current.value}: it cannot be {target.value} now.",
                       field="decision")
    lot.status = target
    audit.record(session, actor, f"material {target.value}", "material_lot", material_label(lot),
                 field="status", old=current, new=target, reason=reason)
    session.flush()


def release_material(session: Session, actor: Actor, lot: MaterialLot, reason: str | None) -> None:
    decide_material(session, actor, lot, "release", reason)


def reject_material(session: Session, actor: Actor, lot: MaterialLot, reason: str | None) -> None:
    decide_material(session, actor, lot, "reject", reason)


def material_decisions_for(lot: MaterialLot, actor: Actor) -> list[str]:
    """The decisions the table allows on this lot for this person (what the page offers)."""
    if Role.qa not in actor.roles:
        return []
    return [d for d, (sources, _) in MATERIAL_DECISIONS.items() if MaterialStatus(lot.status) in sources]


def _find_material(session: Session, material_code: str, supplier_lot: str) -> MaterialLot | None:
    return session.scalars(select(MaterialLot).where(col(MaterialLot.material_code) == material_code,
                                                     col(MaterialLot.supplier_lot) == supplier_lot)).first()


def material_lot(session: Session, material_code: str, supplier_lot: str, field: str = "material") -> MaterialLot:
    lot = _find_material(session, (material_code or "").strip().lower(), (supplier_lot or "").strip())
    if lot is None:
        raise NotFound(f"No material lot '{supplier_lot}' of '{material_code}' has been received.", field=field)
    return lot


def parse_material_scan(text: str | None, field: str = "material") -> tuple[str, str]:
    """(material code, supplier lot) from a scan or a typed 'code:supplier_lot'."""
    raw = (text or "").strip()
    if raw.upper().startswith(MATERIAL_SCAN_PREFIX):
        code, sep, supplier_lot = raw[len(MATERIAL_SCAN_PREFIX):].partition("|")
    else:
        code, sep, supplier_lot = raw.partition(":")
    code, supplier_lot = code.strip().lower(), supplier_lot.strip()
    if not sep or not CODE.match(code) or not supplier_lot:
        raise InvalidInput(f"'{raw}' is not a material lot: scan its label or type <material code>:<supplier lot>.",
                           field=field)
    return code, supplier_lot


def material_by_scan(session: Session, text: str | None, field: str = "material") -> MaterialLot:
    code, supplier_lot = parse_material_scan(text, field)
    return material_lot(session, code, supplier_lot, field)


# Soonest expiry first; (material code, supplier lot) is unique. Migration 0028 indexes this order.
MATERIAL_ORDER = pagination.Order("material lots", (col(MaterialLot.expiry), col(MaterialLot.material_code),
                                                    col(MaterialLot.supplier_lot)))


def _material_lots(status: MaterialStatus | str | None) -> Select:
    query = select(MaterialLot)
    if status:
        query = query.where(col(MaterialLot.status) == MaterialStatus(status).value)
    return query


def material_lots(session: Session, status: MaterialStatus | str | None = None) -> list[MaterialLot]:
    return list(session.scalars(_material_lots(status).order_by(*MATERIAL_ORDER.columns)))


def material_lot_page(session: Session, ask: pagination.Ask,
                      status: MaterialStatus | str | None = None) -> pagination.Page[MaterialLot]:
    """A page of material lots, soonest expiry first."""
    return pagination.page(session, _material_lots(status), MATERIAL_ORDER, ask)


def count_in_quarantine(session: Session) -> int:
    query = (select(func.count()).select_from(MaterialLot)
             .where(col(MaterialLot.status) == MaterialStatus.quarantine.value))
    return session.scalar(query) or 0


def expiring_soon(lot: MaterialLot, on: date, days: int = EXPIRY_WARNING_DAYS) -> bool:
    return on <= lot.expiry <= on + timedelta(days=days)


def material_refusal(material_lot: MaterialLot, on: date, expected_codes: set[str]) -> str | None:
    """Why this material lot may not be used on a step on day `on`, or None if it may."""
    label = material_label(material_lot)
    if material_lot.material_code not in expected_codes:
        wanted = ", ".join(sorted(expected_codes)) or "no materials"
        return f"{material_lot.name} ({label}) is not a material this step uses (it uses: {wanted})."
    status = MaterialStatus(material_lot.status)
    if status is MaterialStatus.rejected:
        return f"Material lot {label} was rejected by QA and must not be used."
    if status is not MaterialStatus.released:
        return f"Material lot {label} is in quarantine: QA has not released it."
    if material_lot.expiry < on:
        return f"Material lot {label} expired on {material_lot.expiry.isoformat()}."
    return None


# --- equipment --------------------------------------------------------------------------------


def _asset_id(value: str | None, field: str = "asset_id") -> str:
    value = inputs.text(value, field, "asset id", 64)
    if not ASSET_ID.match(value):
        raise InvalidInput(f"The asset id '{value}' may hold letters, digits, '.', '-' and '_' only.", field=field)
    return value


def register_equipment(session: Session, actor: Actor, *, asset_id: str, equipment_code: str, name: str,
                       calibration_due: date | str) -> Equipment:
    users.require_role(actor, *EQUIPMENT_KEEPERS)
    asset_id = _asset_id(asset_id)
    equipment_code = _code(equipment_code, "equipment_code", "equipment kind")
    name = inputs.text(name, "name", "equipment name", 200)
    due = inputs.calibration_due(calibration_due, "calibration_due", "calibration due date")
    if session.scalars(select(col(Equipment.id)).where(col(Equipment.asset_id) == asset_id)).first() is not None:
        raise Conflict(f"Asset '{asset_id}' is already registered.", field="asset_id")
    item = Equipment(asset_id=asset_id, equipment_code=equipment_code, name=name, calibration_due=due, active=True)
    session.add(item)
    session.flush()
    audit.record(session, actor, "equipment registered", "equipment", asset_id,
                 new={"kind": equipment_code, "name": name, "calibration_due": due.isoformat()})
    return item


def record_calibration(session: Session, actor: Actor, equipment: Equipment, *, calibration_due: date | str,
                       reference: str | None, today: date | None = None) -> None:
    """A new calibration: the next due date, and the certificate it rests on as the reason."""
    users.require_role(actor, *EQUIPMENT_KEEPERS)
    due = inputs.calibration_due(calibration_due, "calibration_due", "next calibration due date")
    reference = audit.require_reason(reference, field="reference")
    if due <= _today(today):
        raise InvalidInput(f"The next calibration due date {due} must be in the future.", field="calibration_due")
    old = equipment.calibration_due
    equipment.calibration_due = due
    audit.record(session, actor, "equipment calibrated", "equipment", equipment.asset_id,
                 field="calibration_due", old=old.isoformat(), new=due.isoformat(), reason=reference)
    session.flush()


def set_in_service(session: Session, actor: Actor, equipment: Equipment, active: bool, reason: str | None) -> None:
    """Anyone keeping equipment may take it out of service; only QA puts it back."""
    users.require_role(actor, *((Role.qa,) if active else EQUIPMENT_KEEPERS))
    reason = audit.require_reason(reason)
    if equipment.active == active:
        state = "in service" if active else "out of service"
        raise Conflict(f"Asset {equipment.asset_id} is already {state}.", field="active")
    equipment.active = active
    audit.record(session, actor, "equipment returned to service" if active else "equipment taken out of service",
                 "equipment", equipment.asset_id, field="active", old=not active, new=active, reason=reason)
    session.flush()


def equipment_by_asset(session: Session, asset_id: str | None, field: str = "asset_id") -> Equipment:
    asset_id = (asset_id or "").strip()
    item = session.scalars(select(Equipment).where(col(Equipment.asset_id) == asset_id)).first()
    if item is None:
        raise NotFound(f"No equipment with asset id '{asset_id}' is registered.", field=field)
    return item


def equipment_by_scan(session: Session, asset_id: str | None, field: str = "equipment") -> Equipment:
    text = (asset_id or "").strip()
    if text.upper().startswith(EQUIPMENT_SCAN_PREFIX):
        text = text[len(EQUIPMENT_SCAN_PREFIX):]
    if not text:
        raise InvalidInput("Scan the asset label of the equipment.", field=field)
    return equipment_by_asset(session, text, field)


# Soonest calibration due first; the asset id is unique. Migration 0028 indexes this order.
EQUIPMENT_ORDER = pagination.Order("equipment", (col(Equipment.calibration_due), col(Equipment.asset_id)))


def _equipment(due_by: date | None) -> Select:
    query = select(Equipment)
    if due_by is not None:
        query = query.where(col(Equipment.active).is_(True), col(Equipment.calibration_due) <= due_by)
    return query


def equipment_list(session: Session, *, due_by: date | None = None) -> list[Equipment]:
    """All equipment by calibration due date; with due_by, only what is in service and due by then."""
    return list(session.scalars(_equipment(due_by).order_by(*EQUIPMENT_ORDER.columns)))


def equipment_page(session: Session, ask: pagination.Ask, *, due_by: date | None = None) -> pagination.Page[Equipment]:
    """A page of equipment_list."""
    return pagination.page(session, _equipment(due_by), EQUIPMENT_ORDER, ask)


def calibration_state(equipment: Equipment, on: date) -> str:
    """out_of_service | overdue | due_soon | ok: how lists colour it."""
    if not equipment.active:
        return "out_of_service"
    if equipment.calibration_due < on:
        return "overdue"
    if equipment.calibration_due <= on + timedelta(days=CALIBRATION_WARNING_DAYS):
        return "due_soon"
    return "ok"


def equipment_refusal(equipment: Equipment, on: date, expected_codes: set[str]) -> str | None:
    """Why this piece of equipment may not be used on a step on day `on`, or None if it may."""
    what = f"{equipment.name} ({equipment.asset_id})"
    if equipment.equipment_code not in expected_codes:
        wanted = ", ".join(sorted(expected_codes)) or "no equipment"
        return f"{what} is a {equipment.equipment_code}, not equipment this step uses (it uses: {wanted})."
    if not equipment.active:
        return f"{what} is out of service."
    if equipment.calibration_due < on:
        return f"{what} was due for calibration on {equipment.calibration_due.isoformat()}."
    return None
