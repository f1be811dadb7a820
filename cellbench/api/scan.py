"""JSON API: the scan endpoint (a label code or a kit number in, a verdict out).

The hot path of the pharmacy (bench/scan.py). Scanners authenticate with API tokens, and their
scans go through scanning.GroupCommit: one savepoint each, one commit for the scans that arrived
together, written on one writer thread while the event loop reads the next requests. Measured on
the 2-core machine, 16 clients: under the same background load, one commit per scan inline in the
loop gave 195-302 scans/s (p99 131-142 ms) and grouped commits 479-498 (p99 61-66 ms); on a quiet
machine with 100,000 kits and 1,000,000 audit events (bench/scan.py), grouped commits with the
token looked up once a group gave 667-862 scans/s, p99 27-37 ms. The gate (gate.py) now identifies
the scanner before the body is read, so the group gets actors, not tokens (on PostgreSQL in the
thread pool: the token's query is a round trip, which in the loop held every other request). A signed-in page
session (for scripts; the scan station's form posts elsewhere) takes the plain path.
"""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .. import kits
from ..custody import scanning
from ..db import Database
from ..deps import Viewer, get_db, require
from .codes import CODE_DESCRIPTION, ManualEntryIn

router = APIRouter(prefix="/api/v1", tags=["scan"])
scanners = require(*kits.READERS)  # a monitor's scan is a lookup (custody.scanning)


class ScanIn(ManualEntryIn):
    code: str = Field(description=CODE_DESCRIPTION)
    station: str = Field(default="", max_length=200, description="Where the scan happened, e.g. 'RH-ENT pharmacy'")


class VerdictOut(BaseModel):
    ok: bool
    kit_number: str
    state: str
    state_label: str
    blinded_lot: str | None
    expiry: str | None
    location: str
    next_step: str


@router.post("/scan", response_model=VerdictOut)
async def scan(body: ScanIn, request: Request, viewer: Viewer = Depends(scanners), db: Database = Depends(get_db)):
    secret = request.app.state.settings.secret_key
    if viewer.web_session is not None:  # a signed-in page session: the ordinary (slower) way
        with db.write_connection() as conn:
            return scanning.scan(conn, viewer.actor, body.code, secret, station=body.station, manual=body.manual,
                                 reason=body.manual_reason).as_json()
    verdict = await _group_commit(request, db, secret).scan(viewer.actor, body.code, body.station, body.manual,
                                                            body.manual_reason)
    return JSONResponse(verdict.as_json())  # already the response model's shape: no second validation


def _group_commit(request: Request, db: Database, secret: str) -> scanning.GroupCommit:
    """The app's scan writer, made in the event loop that serves it (a test client brings its own)."""
    writer = getattr(request.app.state, "scan_writer", None)
    if writer is None or writer.loop is not asyncio.get_running_loop():
        writer = request.app.state.scan_writer = scanning.GroupCommit(db, secret)
    return writer
