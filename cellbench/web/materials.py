"""Material lots and equipment pages: receipt and QA disposition, registration and calibration."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from .. import audit, clock, materials
from ..clock import utcnow
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError, InvalidInput
from ..models import MaterialStatus, Role
from ..templating import render
from . import paging
from .home import QueueItem, line_for, work_queue

router = APIRouter(include_in_schema=False)
KEEPERS = (Role.operator, Role.qa)
keepers = require(*KEEPERS)
MATERIAL_FIELDS = ("material_code", "name", "supplier", "supplier_lot", "expiry")
EQUIPMENT_FIELDS = ("asset_id", "equipment_code", "name", "calibration_due")



def lot_url(lot) -> str:
    return f"/materials/{quote(lot.material_code, safe='')}/{quote(lot.supplier_lot, safe='')}"


def asset_url(item) -> str:
    return f"/equipment/{quote(item.asset_id, safe='')}"


def _status(lot) -> str:
    return MaterialStatus(lot.status).value


def _notice(url: str, text: str) -> RedirectResponse:
    return RedirectResponse(f"{url}?notice={quote(text)}", status_code=303)


# --- work queues ------------------------------------------------------------------------------


@work_queue
def _materials_in_quarantine(session: Session, viewer: Viewer) -> list[QueueItem]:
    if not viewer.has(Role.qa):
        return []
    return line_for(materials.material_lots(session, MaterialStatus.quarantine),
                    "material lots in quarantine await your release or rejection",
                    "material lot in quarantine awaits your release or rejection",
                    "/materials?status=quarantine", lot_url)


@work_queue
def _calibrations_due(session: Session, viewer: Viewer) -> list[QueueItem]:
    if not viewer.has(Role.operator):
        return []
    days = materials.CALIBRATION_WARNING_DAYS
    due = materials.equipment_list(session, due_by=utcnow().date() + timedelta(days=days))
    return line_for(due, f"pieces of equipment are overdue or due for calibration within {days} days",
                    f"piece of equipment is overdue or due for calibration within {days} days",
                    f"/equipment?due={days}", asset_url)


# --- material lots ----------------------------------------------------------------------------


@router.get("/materials")
def material_list(request: Request, viewer: Viewer = Depends(keepers), session: Session = Depends(read_session)):
    status = (request.query_params.get("status") or "").strip()
    if status and status not in {s.value for s in MaterialStatus}:
        raise InvalidInput(f"Unknown status '{status}'.", field="status")
    today = clock.today()
    found = materials.material_lot_page(session, paging.ask(request), status or None)
    return render(request, "materials/list.html", rows=found.rows, status=status, today=today,
                  pager=paging.pager("/materials", {"status": status}, found),
                  statuses=[s.value for s in MaterialStatus], soon=materials.expiring_soon,
                  scan_code=materials.material_scan_code, lot_url=lot_url, st=_status,
                  can_receive=viewer.has(*materials.RECEIVERS))


def _new_material(request: Request, session: Session, form: dict, error: DomainError | None = None):
    codes, _ = materials.known_codes(session)
    return render(request, "materials/new.html", status_code=error.status if error else 200, form=form,
                  error=error, codes=codes, today=clock.today())


@router.get("/materials/new")
def new_material_form(request: Request, viewer: Viewer = Depends(require(*materials.RECEIVERS)),
                      session: Session = Depends(read_session)):
    return _new_material(request, session, {})


@router.post("/materials")
def receive_material(request: Request, viewer: Viewer = Depends(form_by(*materials.RECEIVERS)),
                     db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: form.get(k, "") for k in MATERIAL_FIELDS}
    try:
        with db.write() as session:
            lot = materials.receive_material(session, viewer.actor, today=clock.today(), **values)
    except DomainError as error:
        with db.read() as session:
            return _new_material(request, session, values, error)
    return _notice(lot_url(lot), "Material lot received into quarantine.")


def _material_detail(request: Request, session: Session, viewer: Viewer, material_code: str, supplier_lot: str,
                     error: DomainError | None = None, form: dict | None = None):
    lot = materials.material_lot(session, material_code, supplier_lot)
    return render(request, "materials/detail.html", status_code=error.status if error else 200, lot=lot, st=_status,
                  label=materials.material_label(lot), scan_code=materials.material_scan_code(lot),
                  decisions=materials.material_decisions_for(lot, viewer.actor), today=clock.today(),
                  soon=materials.expiring_soon(lot, clock.today()), lot_url=lot_url(lot),
                  history=audit.history(session, viewer.actor, "material_lot", materials.material_label(lot)),
                  error=error, form=form or {})


@router.get("/materials/{material_code}/{supplier_lot:path}")
def material_detail(request: Request, material_code: str, supplier_lot: str, viewer: Viewer = Depends(keepers),
                    session: Session = Depends(read_session)):
    return _material_detail(request, session, viewer, material_code, supplier_lot)


@router.post("/materials/{material_code}/{supplier_lot:path}/decision")
def decide_material(request: Request, material_code: str, supplier_lot: str,
                    viewer: Viewer = Depends(form_by(Role.qa)), db: Database = Depends(get_db),
                    form=Depends(form_data)):
    decision, reason = form.get("decision", ""), form.get("reason", "")
    try:
        with db.write() as session:
            lot = materials.material_lot(session, material_code, supplier_lot)
            materials.decide_material(session, viewer.actor, lot, decision, reason)
    except DomainError as error:
        with db.read() as session:
            return _material_detail(request, session, viewer, material_code, supplier_lot, error,
                                    {"reason": reason})
    return _notice(lot_url(lot), f"Material lot {_status(lot)}.")


# --- equipment --------------------------------------------------------------------------------


@router.get("/equipment")
def equipment_list(request: Request, viewer: Viewer = Depends(keepers), session: Session = Depends(read_session)):
    today = clock.today()
    due = (request.query_params.get("due") or "").strip()
    if due and not (due.isdigit() and len(due) <= 4):
        raise InvalidInput(f"'{due}' is not a number of days.", field="due")
    found = materials.equipment_page(session, paging.ask(request),
                                     due_by=today + timedelta(days=int(due)) if due else None)
    return render(request, "materials/equipment_list.html", rows=found.rows, today=today, due=due,
                  pager=paging.pager("/equipment", {"due": due}, found),
                  state=materials.calibration_state, asset_url=asset_url)


def _new_equipment(request: Request, session: Session, form: dict, error: DomainError | None = None):
    _, kinds = materials.known_codes(session)
    return render(request, "materials/equipment_new.html", status_code=error.status if error else 200,
                  form=form, error=error, kinds=kinds)


@router.get("/equipment/new")
def new_equipment_form(request: Request, viewer: Viewer = Depends(keepers), session: Session = Depends(read_session)):
    return _new_equipment(request, session, {})


@router.post("/equipment")
def register_equipment(request: Request, viewer: Viewer = Depends(form_by(*materials.EQUIPMENT_KEEPERS)),
                       db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: form.get(k, "") for k in EQUIPMENT_FIELDS}
    try:
        with db.write() as session:
            item = materials.register_equipment(session, viewer.actor, **values)
    except DomainError as error:
        with db.read() as session:
            return _new_equipment(request, session, values, error)
    return _notice(asset_url(item), "Equipment registered.")


def _equipment_detail(request: Request, session: Session, viewer: Viewer, asset_id: str,
                      error: DomainError | None = None, form: dict | None = None):
    item = materials.equipment_by_asset(session, asset_id)
    today = clock.today()
    return render(request, "materials/equipment_detail.html", status_code=error.status if error else 200,
                  item=item, state=materials.calibration_state(item, today), today=today, asset_url=asset_url(item),
                  can_return=viewer.has(Role.qa),
                  history=audit.history(session, viewer.actor, "equipment", item.asset_id),
                  error=error, form=form or {})


@router.get("/equipment/{asset_id}")
def equipment_detail(request: Request, asset_id: str, viewer: Viewer = Depends(keepers),
                     session: Session = Depends(read_session)):
    return _equipment_detail(request, session, viewer, asset_id)


@router.post("/equipment/{asset_id}/calibration")
def record_calibration(request: Request, asset_id: str, viewer: Viewer = Depends(form_by(*materials.EQUIPMENT_KEEPERS)),
                       db: Database = Depends(get_db), form=Depends(form_data)):
    values = {"calibration_due": form.get("calibration_due", ""), "reference": form.get("reference", "")}
    try:
        with db.write() as session:
            item = materials.equipment_by_asset(session, asset_id)
            materials.record_calibration(session, viewer.actor, item, today=clock.today(), **values)
    except DomainError as error:
        with db.read() as session:
            return _equipment_detail(request, session, viewer, asset_id, error, values)
    return _notice(asset_url(item), "Calibration recorded.")


@router.post("/equipment/{asset_id}/service")
def set_in_service(request: Request, asset_id: str, viewer: Viewer = Depends(form_by(*materials.EQUIPMENT_KEEPERS)),
                   db: Database = Depends(get_db), form=Depends(form_data)):
    active, reason = form.get("active", "") == "true", form.get("reason", "")
    try:
        with db.write() as session:
            item = materials.equipment_by_asset(session, asset_id)
            materials.set_in_service(session, viewer.actor, item, active, reason)
    except DomainError as error:
        with db.read() as session:
            return _equipment_detail(request, session, viewer, asset_id, error, {"service_reason": reason})
    return _notice(asset_url(item), "Returned to service." if active else "Taken out of service.")
