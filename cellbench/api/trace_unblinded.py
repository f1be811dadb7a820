"""JSON API, unblinded (supply manager, QA, QP): the trace from any identifier, donor to recipient
and back, in one call."""
from __future__ import annotations

from fastapi import APIRouter, Depends

from ..db import Database
from ..deps import Viewer, get_db, require
from ..trace import unblinded as trace_unblinded

router = APIRouter(prefix="/api/v1", tags=["trace"])


@router.get("/trace")
def full_trace(q: str, viewer: Viewer = Depends(require(*trace_unblinded.READERS)),
               db: Database = Depends(get_db)) -> dict:
    """`q`: a donor code, donation identification, lot number, vial code, kit number or participant number.
    Returns donors, donations, lots, vials, kits (with arm) and recipients linked to it, both ways."""
    with db.write() as session:  # every look into the sealed compartment is an audit event
        return trace_unblinded.trace(session, viewer.actor, q).as_json()
