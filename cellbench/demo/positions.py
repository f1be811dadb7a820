"""Demo: receipt and put-away in one pass. The pharmacist scans the label of a box in the site's
tank (a new box when the last one is full), then each kit out of the dry shipper into it, so every
received demo kit has a tank, rack, box and position, in the order the kits were scanned."""
from __future__ import annotations

from sqlmodel import Session

from .. import custody
from ..audit import Actor
from ..models import Shipment, StorageBox

RACK = "A"
BOX_SIZE = 25  # a 5 x 5 box of kit cartons


def _box_with_room(session: Session, pharmacist: Actor, tank_code: str) -> StorageBox:
    tank = custody.location_by_code(session, tank_code)
    for box, _tank in custody.boxes(session, pharmacist):
        if box.storage_location_id == tank.id and len(custody.occupants(session, box)) < box.capacity:
            return box
    return custody.add_box(session, pharmacist, location_code=tank_code, rack=RACK, capacity=BOX_SIZE)


def scan_in(session: Session, pharmacist: Actor, shipment: Shipment, label: str, key: str, tank_code: str) -> None:
    """One kit scanned out of the shipper into the next free position of a box in the tank."""
    box = _box_with_room(session, pharmacist, tank_code)
    custody.receipt_step(session, pharmacist, shipment.number, box.code, key)  # the box's label
    custody.receipt_step(session, pharmacist, shipment.number, label, key, box=box.code)
