"""JSON API: material lots (receipt, QA release/reject, lookup by scan) and equipment."""
from __future__ import annotations

from datetime import date, datetime, timedelta

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import clock, materials
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..models import Equipment, MaterialLot, MaterialStatus, Role
from ..pagination import Ask
from . import paging

router = APIRouter(prefix="/api/v1", tags=["materials and equipment"])
keepers = require(Role.operator, Role.qa)
qa = require(Role.qa)



class MaterialLotOut(BaseModel):
    material_code: str
    name: str
    supplier: str
    supplier_lot: str
    expiry: date
    status: MaterialStatus
    received_at: datetime
    scan_code: str = Field(description="What the receipt label's barcode carries: MAT|<material_code>|<supplier_lot>")


def lot_out(lot: MaterialLot) -> MaterialLotOut:
    return MaterialLotOut(material_code=lot.material_code, name=lot.name, supplier=lot.supplier,
                          supplier_lot=lot.supplier_lot, expiry=lot.expiry, status=MaterialStatus(lot.status),
                          received_at=lot.received_at, scan_code=materials.material_scan_code(lot))


class NewMaterialLot(BaseModel):
    material_code: str = Field(max_length=64, description="As the specification's steps name it, e.g. dpbs")
    name: str = Field(max_length=200)
    supplier: str = Field(max_length=200)
    supplier_lot: str = Field(max_length=64)
    expiry: date


class Reason(BaseModel):
    reason: str


class EquipmentOut(BaseModel):
    asset_id: str
    equipment_code: str
    name: str
    calibration_due: date
    active: bool
    calibration_state: str = Field(description="ok | due_soon | overdue | out_of_service, on the site's today")


def equipment_out(item: Equipment, today: date) -> EquipmentOut:
    return EquipmentOut(asset_id=item.asset_id, equipment_code=item.equipment_code, name=item.name,
                        calibration_due=item.calibration_due, active=item.active,
                        calibration_state=materials.calibration_state(item, today))


class NewEquipment(BaseModel):
    asset_id: str = Field(max_length=64)
    equipment_code: str = Field(max_length=64, description="The kind, as the specification's steps name it")
    name: str = Field(max_length=200)
    calibration_due: date


class Calibration(BaseModel):
    calibration_due: date = Field(description="The next calibration due date")
    reference: str = Field(description="The calibration certificate's reference")


class Service(BaseModel):
    active: bool
    reason: str


# --- material lots ----------------------------------------------------------------------------


MaterialLotPageOut = paging.page_model("MaterialLotPageOut", "material_lots", MaterialLotOut,
                                       "Soonest expiry first, then by material code and supplier lot")


@router.get("/material-lots", response_model=MaterialLotPageOut)
def list_material_lots(status: MaterialStatus | None = None, ask: Ask = Depends(paging.ask),
                       viewer: Viewer = Depends(keepers), session: Session = Depends(read_session)):
    found = materials.material_lot_page(session, ask, status)
    return MaterialLotPageOut(material_lots=[lot_out(lot) for lot in found.rows], next=found.next)


@router.post("/material-lots", response_model=MaterialLotOut, status_code=201)
def receive_material_lot(body: NewMaterialLot, request: Request, viewer: Viewer = Depends(keepers),
                         db: Database = Depends(get_db)):
    with db.write() as session:
        lot = materials.receive_material(session, viewer.actor, today=clock.today(), **body.model_dump())
        return lot_out(lot)


@router.get("/material-lots/by-scan", response_model=MaterialLotOut,
            description="`scan`: MAT|<material_code>|<supplier_lot> (label) or <material_code>:<supplier_lot>.")
def material_lot_by_scan(scan: str = Query(...), viewer: Viewer = Depends(keepers),
                         session: Session = Depends(read_session)):
    return lot_out(materials.material_by_scan(session, scan, field="scan"))


@router.get("/material-lots/{material_code}/{supplier_lot:path}", response_model=MaterialLotOut)
def get_material_lot(material_code: str, supplier_lot: str, viewer: Viewer = Depends(keepers),
                     session: Session = Depends(read_session)):
    return lot_out(materials.material_lot(session, material_code, supplier_lot))


@router.post("/material-lots/{material_code}/{supplier_lot:path}/release", response_model=MaterialLotOut)
def release_material_lot(material_code: str, supplier_lot: str, body: Reason, viewer: Viewer = Depends(qa),
                         db: Database = Depends(get_db)):
    with db.write() as session:
        lot = materials.material_lot(session, material_code, supplier_lot)
        materials.release_material(session, viewer.actor, lot, body.reason)
        return lot_out(lot)


@router.post("/material-lots/{material_code}/{supplier_lot:path}/reject", response_model=MaterialLotOut)
def reject_material_lot(material_code: str, supplier_lot: str, body: Reason, viewer: Viewer = Depends(qa),
                        db: Database = Depends(get_db)):
    with db.write() as session:
        lot = materials.material_lot(session, material_code, supplier_lot)
        materials.reject_material(session, viewer.actor, lot, body.reason)
        return lot_out(lot)


# --- equipment --------------------------------------------------------------------------------


EquipmentPageOut = paging.page_model("EquipmentPageOut", "equipment", EquipmentOut,
                                     "Soonest calibration due first, then by asset id")


@router.get("/equipment", response_model=EquipmentPageOut)
def list_equipment(request: Request, due_within_days: int | None = Query(None, ge=0, le=3650),
                   ask: Ask = Depends(paging.ask), viewer: Viewer = Depends(keepers),
                   session: Session = Depends(read_session)):
    today = clock.today()
    due_by = today + timedelta(days=due_within_days) if due_within_days is not None else None
    found = materials.equipment_page(session, ask, due_by=due_by)
    return EquipmentPageOut(equipment=[equipment_out(item, today) for item in found.rows], next=found.next)


@router.post("/equipment", response_model=EquipmentOut, status_code=201)
def register_equipment(body: NewEquipment, request: Request, viewer: Viewer = Depends(keepers),
                       db: Database = Depends(get_db)):
    with db.write() as session:
        return equipment_out(materials.register_equipment(session, viewer.actor, **body.model_dump()), clock.today())


@router.get("/equipment/{asset_id}", response_model=EquipmentOut)
def get_equipment(asset_id: str, request: Request, viewer: Viewer = Depends(keepers),
                  session: Session = Depends(read_session)):
    return equipment_out(materials.equipment_by_asset(session, asset_id), clock.today())


@router.post("/equipment/{asset_id}/calibrations", response_model=EquipmentOut)
def record_calibration(asset_id: str, body: Calibration, request: Request, viewer: Viewer = Depends(keepers),
                       db: Database = Depends(get_db)):
    with db.write() as session:
        item = materials.equipment_by_asset(session, asset_id)
        materials.record_calibration(session, viewer.actor, item, calibration_due=body.calibration_due,
                                     reference=body.reference, today=clock.today())
        return equipment_out(item, clock.today())


@router.post("/equipment/{asset_id}/service", response_model=EquipmentOut,
             description="Take out of service (`active: false`; operator or QA) or return to service (QA).")
def set_in_service(asset_id: str, body: Service, request: Request, viewer: Viewer = Depends(keepers),
                   db: Database = Depends(get_db)):
    with db.write() as session:
        item = materials.equipment_by_asset(session, asset_id)
        materials.set_in_service(session, viewer.actor, item, body.active, body.reason)
        return equipment_out(item, clock.today())
