"""JSON API: shipments from the cell bench to a site (create, pack by scan, dispatch, receipt scans,
the receipt check with a logger file, QA's signed assessment, lost), storage locations, damaged kits.

`POST /api/v1/shipments/{number}/receipt-scans` is the site's hot path. Like the scan endpoint it
runs inline on a Core write connection, with the caller the gate identified: no thread hop, no ORM.
Everything here reads the same for an active and a placebo kit.
"""
from __future__ import annotations

from datetime import date, datetime

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import custody, kits
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..models import Meaning, Shipment, Site, StorageLocation, Study
from ..pagination import Ask
from . import paging
from .codes import CODE_DESCRIPTION, ManualEntryIn

router = APIRouter(prefix="/api/v1", tags=["shipments"])
readers = require(*custody.READERS)
shippers = require(*custody.SHIPPERS)
receivers = require(*custody.RECEIVERS)
assessors = require(*custody.ASSESSORS)


def _seconds(moment: datetime | None) -> datetime | None:
    # whole seconds, as the pages show them
    return moment.replace(microsecond=0) if moment else None


class SignatureOut(BaseModel):
    signer_name: str
    at: datetime
    meaning: Meaning
    content_hash: str


class ManifestLineOut(BaseModel):
    kit_number: str
    blinded_lot: str | None
    state: str
    state_label: str = Field(description="The kit's state as blinded users read it")
    location: str
    packed_at: datetime
    received_at: datetime | None = Field(description="When the kit was scanned at receipt")


class ShipmentOut(BaseModel):
    number: str
    study: str
    site: str
    site_name: str
    state: str = Field(description="packing | in_transit | received | quarantined | rejected | lost")
    state_label: str
    shipper_id: str | None
    seal_number: str | None
    logger_id: str | None
    created_at: datetime
    created_by: str | None
    dispatched_at: datetime | None
    dispatched_by: str | None
    received_at: datetime | None
    received_by: str | None
    seal_intact: bool | None
    logger_source: str | None = Field(description="csv | manual | missing")
    logger_min: float | None = Field(description="°C, over the transit")
    logger_max: float | None = Field(description="°C, over the transit")
    logger_readings: int
    transit_minutes: int | None
    receipt_problems: list[str] = Field(description="Why the shipment was held on receipt (empty: not held)")
    qa_decision: str | None
    qa_reason: str | None
    qa_signature: SignatureOut | None
    kits: list[ManifestLineOut]
    scanned: int
    total: int
    allowed_actions: list[str] = Field(description="What the shipment's transition table lets the caller do now")
    shipment_version: int = Field(description="Changes with every change of the shipment (for conflict checks)")


class ShipmentSummaryOut(BaseModel):
    number: str
    study: str
    site: str
    state: str
    state_label: str
    kits: int
    scanned: int
    dispatched_at: datetime | None
    received_at: datetime | None


def shipment_out(session: Session, shipment: Shipment, viewer: Viewer) -> ShipmentOut:
    names = custody.user_names(session, shipment.created_by, shipment.dispatched_by, shipment.received_by)
    study = custody.fetch(session, Study, shipment.study_id, "study")
    site = custody.fetch(session, Site, shipment.site_id, "site")
    lines = custody.manifest(session, shipment)
    sig = custody.qa_signature(session, shipment)
    return ShipmentOut(
        number=shipment.number, study=study.code, site=site.code, site_name=site.name, state=shipment.state,
        state_label=custody.state_label(shipment.state), shipper_id=shipment.shipper_id,
        seal_number=shipment.seal_number, logger_id=shipment.logger_id, created_at=_seconds(shipment.created_at),
        created_by=names.get(shipment.created_by), dispatched_at=_seconds(shipment.dispatched_at),
        dispatched_by=names.get(shipment.dispatched_by), received_at=_seconds(shipment.received_at),
        received_by=names.get(shipment.received_by), seal_intact=shipment.seal_intact,
        logger_source=shipment.logger_source, logger_min=shipment.logger_min, logger_max=shipment.logger_max,
        logger_readings=custody.reading_count(session, shipment), transit_minutes=shipment.transit_minutes,
        receipt_problems=custody.problems_of(shipment), qa_decision=shipment.qa_decision,
        qa_reason=shipment.qa_reason,
        qa_signature=SignatureOut(signer_name=sig.signer_name, at=sig.at, meaning=Meaning(sig.meaning),
                                  content_hash=sig.content_hash) if sig else None,
        kits=[ManifestLineOut(kit_number=line.kit_number, blinded_lot=line.blinded_lot, state=line.state,
                              state_label=line.state_label, location=line.location,
                              packed_at=_seconds(line.packed_at), received_at=_seconds(line.received_at))
              for line in lines],
        scanned=sum(1 for line in lines if line.received_at), total=len(lines),
        allowed_actions=custody.allowed_actions(shipment, viewer.actor), shipment_version=shipment.row_version)


# --- bodies -----------------------------------------------------------------------------------------


class NewShipment(BaseModel):
    study: str = Field(description="Study code, e.g. NCT07290946")
    site: str = Field(description="Site code, e.g. RH-ENT")


class CodeIn(BaseModel):
    code: str = Field(description="The label's QR payload as scanned (packing and storing take only that)")


class DispatchIn(BaseModel):
    shipper_id: str | None = Field(None, description="The dry shipper's id")
    seal_number: str | None = None
    logger_id: str | None = Field(None, description="The temperature logger's id")
    shipment_version: int | None = Field(None, description="The version you saw; a changed shipment is a conflict")


class ReceiptScanOut(BaseModel):
    shipment: str
    kit: dict = Field(description="The kit's blinded view (kit_number, study, blinded_lot, expiry, state, "
                                  "state_label, location, kit_version)")
    scanned: int
    total: int
    remaining: int
    progress: str = Field(description="e.g. '12 of 16 scanned'")
    received_at: str
    position: dict | None = Field(None, description="Where the kit was put away (site, tank, rack, box, "
                                                     "position), when the scan named a box")


class ReceiptScanIn(ManualEntryIn):
    code: str = Field(description=CODE_DESCRIPTION)
    box: str | None = Field(None, max_length=40, description="Put the kit away at receipt into this storage box "
                                                             "(its label's code), in one transaction")
    position: int | None = Field(None, ge=1, le=custody.MAX_CAPACITY,
                                 description="The position in the box; the box's next free one when left out")


class ReceiptIn(BaseModel):
    seal_intact: bool | None = Field(None, description="Was the shipper's seal intact on arrival?")
    logger_source: str | None = Field(None, description="csv (logger_csv holds the file) | manual (min and max) | "
                                                        "missing")
    logger_csv: str | None = Field(None, description="The logger export: one 'timestamp,temperature' a line, "
                                                     "ISO 8601 times with offset, °C")
    logger_min: float | None = None
    logger_max: float | None = None
    missing_reason: str | None = Field(None, description="Required when some kits on the manifest were not scanned: "
                                                         "they are recorded as missing")
    shipment_version: int | None = None


class ReasonIn(BaseModel):
    reason: str | None = None
    shipment_version: int | None = None


class AssessmentIn(BaseModel):
    decision: str = Field(description="accept (every kit into the site's stock) | reject (every kit withdrawn)")
    reason: str | None = None
    password: str = Field(description="QA's password: the assessment is signed (released or rejected)")
    shipment_version: int | None = None


class LocationIn(BaseModel):
    site: str | None = Field(None, description="Site code; empty for the cell bench")
    code: str
    name: str
    kind: str = Field(description="tank | freezer")


class LocationOut(BaseModel):
    code: str
    name: str
    kind: str
    place: str = Field(description="How a kit's location reads, e.g. 'RH-ENT · Freezer 1'")
    site: str | None


class KitPlaceOut(BaseModel):
    kit_number: str
    study: str
    blinded_lot: str | None
    expiry: date | None
    state: str
    state_label: str
    location: str
    kit_version: int


def location_out(session: Session, row: StorageLocation) -> LocationOut:
    site = session.get(Site, row.site_id) if row.site_id else None
    return LocationOut(code=row.code, name=row.name, kind=row.kind, place=custody.place_name(session, row),
                       site=site.code if site else None)


# --- shipments --------------------------------------------------------------------------------------


# The hot path first: FastAPI tries a router's routes in the order they were added.
@router.post("/shipments/{number}/receipt-scans", response_model=ReceiptScanOut)
def receipt_scan(number: str, body: ReceiptScanIn, request: Request, viewer: Viewer = Depends(receivers),
                 db: Database = Depends(get_db)):
    """One kit scanned out of the dry shipper: on this shipment's manifest and not scanned before,
    or refused (nothing recorded). With a box, the kit is also put away into it (the position given,
    or the box's next free one) in the same transaction. A plain (sync) route: its reads, writes and
    commit run in the thread pool, never on the event loop, where a PostgreSQL round trip or a
    SQLite lock wait would hold every other request (the scan endpoint's own writes run on its
    writer thread, api/scan.py)."""
    if body.box:
        with db.write() as session:
            return custody.receive_into_box(session, viewer.actor, number, body.code,
                                            request.app.state.settings.secret_key, box=body.box,
                                            position=body.position, manual=body.manual,
                                            reason=body.manual_reason).as_json()
    with db.write_connection() as conn:
        return custody.receipt_scan(conn, viewer.actor, number, body.code, request.app.state.settings.secret_key,
                                    manual=body.manual, reason=body.manual_reason).as_json()


ShipmentPageOut = paging.page_model("ShipmentPageOut", "shipments", ShipmentSummaryOut, "Newest first")


@router.get("/shipments", response_model=ShipmentPageOut)
def list_shipments(state: str | None = None, site: str | None = None, ask: Ask = Depends(paging.ask),
                   viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    where = custody.site_by_code(session, site) if site else None
    found = custody.shipment_page(session, ask, state=state, site=where, reader=viewer.actor)
    rows = found.rows
    counts = custody.kit_counts(session, [r.id for r in rows])
    studies, sites = custody.study_codes(session), custody.site_codes(session)
    return ShipmentPageOut(next=found.next, shipments=[
        ShipmentSummaryOut(number=r.number, study=studies[r.study_id], site=sites[r.site_id], state=r.state,
                               state_label=custody.state_label(r.state), kits=counts.get(custody.key(r), (0, 0))[0],
                               scanned=counts.get(custody.key(r), (0, 0))[1], dispatched_at=_seconds(r.dispatched_at),
                               received_at=_seconds(r.received_at)) for r in rows])


@router.post("/shipments", response_model=ShipmentOut, status_code=201)
def create_shipment(body: NewShipment, viewer: Viewer = Depends(shippers), db: Database = Depends(get_db)):
    with db.write() as session:
        shipment = custody.create(session, viewer.actor, body.study, body.site)
        return shipment_out(session, shipment, viewer)


@router.get("/shipments/{number}", response_model=ShipmentOut)
def get_shipment(number: str, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    return shipment_out(session, custody.by_number(session, number, reader=viewer.actor), viewer)


@router.post("/shipments/{number}/kits", response_model=ShipmentOut)
def pack_kit(number: str, body: CodeIn, request: Request, viewer: Viewer = Depends(shippers),
             db: Database = Depends(get_db)):
    with db.write() as session:
        shipment = custody.by_number(session, number, reader=viewer.actor)
        custody.pack(session, viewer.actor, shipment, body.code, request.app.state.settings.secret_key)
        return shipment_out(session, shipment, viewer)


@router.delete("/shipments/{number}/kits/{kit_number}", response_model=ShipmentOut)
def unpack_kit(number: str, kit_number: str, viewer: Viewer = Depends(shippers), db: Database = Depends(get_db)):
    with db.write() as session:
        shipment = custody.by_number(session, number, reader=viewer.actor)
        custody.unpack(session, viewer.actor, shipment, kit_number)
        return shipment_out(session, shipment, viewer)


@router.post("/shipments/{number}/dispatch", response_model=ShipmentOut)
def dispatch(number: str, body: DispatchIn, viewer: Viewer = Depends(shippers), db: Database = Depends(get_db)):
    with db.write() as session:
        shipment = custody.by_number(session, number, reader=viewer.actor)
        custody.dispatch(session, viewer.actor, shipment, shipper_id=body.shipper_id, seal_number=body.seal_number,
                         logger_id=body.logger_id, seen_version=body.shipment_version)
        return shipment_out(session, shipment, viewer)


def _complete(db: Database, viewer: Viewer, number: str, *, seal_intact, logger: custody.LoggerRecord,
              missing_reason: str | None, shipment_version: int | None) -> ShipmentOut:
    with db.write() as session:
        shipment = custody.by_number(session, number, reader=viewer.actor)
        custody.complete_receipt(session, viewer.actor, shipment, seal_intact=seal_intact, logger=logger,
                                 missing_reason=missing_reason, seen_version=shipment_version)
        return shipment_out(session, shipment, viewer)


@router.post("/shipments/{number}/receipt", response_model=ShipmentOut)
def complete_receipt(number: str, body: ReceiptIn, viewer: Viewer = Depends(receivers),
                     db: Database = Depends(get_db)):
    """The receipt check. A missing record, a broken seal or a reading above −150 °C during transit
    holds the whole shipment in quarantine for QA (state `quarantined`); otherwise `received`."""
    logger = custody.logger_record(body.logger_source, csv_content=body.logger_csv, minimum=body.logger_min,
                                   maximum=body.logger_max)
    return _complete(db, viewer, number, seal_intact=body.seal_intact, logger=logger,
                     missing_reason=body.missing_reason, shipment_version=body.shipment_version)


@router.post("/shipments/{number}/receipt/logger-csv", response_model=ShipmentOut)
def complete_receipt_with_file(number: str, logger_csv: UploadFile = File(description="The logger export (CSV)"),
                               seal_intact: bool = Form(), missing_reason: str | None = Form(None),
                               shipment_version: int | None = Form(None), viewer: Viewer = Depends(receivers),
                               db: Database = Depends(get_db)):
    """The receipt check with the logger file uploaded as multipart form data (field `logger_csv`)."""
    logger = custody.logger_record("csv", csv_content=logger_csv.file.read())
    return _complete(db, viewer, number, seal_intact=seal_intact, logger=logger, missing_reason=missing_reason,
                     shipment_version=shipment_version)


@router.post("/shipments/{number}/lost", response_model=ShipmentOut)
def report_lost(number: str, body: ReasonIn, viewer: Viewer = Depends(shippers), db: Database = Depends(get_db)):
    with db.write() as session:
        shipment = custody.by_number(session, number, reader=viewer.actor)
        custody.report_lost(session, viewer.actor, shipment, body.reason, seen_version=body.shipment_version)
        return shipment_out(session, shipment, viewer)


@router.post("/shipments/{number}/assessment", response_model=ShipmentOut)
def assess(number: str, body: AssessmentIn, viewer: Viewer = Depends(assessors), db: Database = Depends(get_db)):
    with db.write() as session:
        shipment = custody.by_number(session, number, reader=viewer.actor)
        custody.assess(session, session.merge(viewer.user), shipment, body.decision, body.reason, body.password,
                       seen_version=body.shipment_version)
        return shipment_out(session, shipment, viewer)


# --- storage and damaged kits ----------------------------------------------------------------------


@router.get("/storage-locations", response_model=list[LocationOut])
def list_locations(site: str | None = None, viewer: Viewer = Depends(readers),
                   session: Session = Depends(read_session)):
    """Active locations of one site (`site=RH-ENT`), of the cell bench (`site=bench`), or everywhere."""
    mine = viewer.actor  # a site role: its own sites' locations only (custody.storage_places)
    if site is None:
        rows = custody.locations(session, None, everywhere=True, reader=mine)
    elif site.strip().lower() == "bench":
        rows = custody.locations(session, None, reader=mine)
    else:
        rows = custody.locations(session, custody.site_by_code(session, site), reader=mine)
    return [location_out(session, row) for row in rows]


@router.post("/storage-locations", response_model=LocationOut, status_code=201)
def add_location(body: LocationIn, viewer: Viewer = Depends(require(*custody.KEEPERS)),
                 db: Database = Depends(get_db)):
    with db.write() as session:
        row = custody.add_location(session, viewer.actor, site_code=body.site, code=body.code, name=body.name,
                                   kind=body.kind)
        return location_out(session, row)


@router.post("/storage-locations/{code}/kits", response_model=KitPlaceOut)
def store_kit(code: str, body: CodeIn, request: Request, viewer: Viewer = Depends(require(*custody.KEEPERS)),
              db: Database = Depends(get_db)):
    """Put the scanned kit away in this location."""
    with db.write() as session:
        kit = kits.scan_code(session, body.code, request.app.state.settings.secret_key, reader=viewer.actor,
                             manual_allowed=False)
        custody.store(session, viewer.actor, kit, code)
        return KitPlaceOut(**kits.view(session, kit).as_json())


@router.post("/kits/{number}/damage", response_model=KitPlaceOut)
def report_damaged(number: str, body: ReasonIn, viewer: Viewer = Depends(require(*custody.DAMAGE_REPORTERS)),
                   db: Database = Depends(get_db)):
    with db.write() as session:
        kit = kits.by_number(session, number, field="number", reader=viewer.actor)
        custody.report_damaged(session, viewer.actor, kit, body.reason)
        return KitPlaceOut(**kits.view(session, kit).as_json())
