"""JSON API: accountability by manufacturing lot (supply manager, QA; unblinded)."""
from __future__ import annotations

from fastapi import APIRouter, Depends

from ..accountability import by_lot as lot_accountability
from ..db import Database
from ..deps import Viewer, get_db, require

router = APIRouter(prefix="/api/v1", tags=["accountability and destruction"])


@router.get("/lots/{number}/accountability")
def lot_balance(number: str, viewer: Viewer = Depends(require(*lot_accountability.READERS)),
                db: Database = Depends(get_db)) -> dict:
    """The lot's vials by state, and the kits holding its units by place and category, each listed."""
    with db.write() as session:  # every look into the sealed compartment is an audit event
        lot = lot_accountability.lot_by_number(session, number)
        return lot_accountability.for_lot(session, viewer.actor, lot).as_json()
