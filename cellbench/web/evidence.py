"""The lot's evidence packet for QA and the QP: one ZIP with the record, the proof and its verifier
(cellbench.evidence.lot). Unblinded only: it names the kits a lot filled."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from .. import pdf
from ..db import Database
from ..deps import Viewer, get_db, require
from ..evidence import Built
from ..evidence import lot as lot_packet
from .evidence_site import download

router = APIRouter(include_in_schema=False)


@router.get("/lots/{number}/evidence.zip")
async def lot_evidence(request: Request, number: str, viewer: Viewer = Depends(require(*lot_packet.REQUESTERS)),
                       db: Database = Depends(get_db)):
    settings = request.app.state.settings

    def make() -> Built:  # audited, then read and rendered off the event loop, within the PDF time limit
        return lot_packet.build(db, viewer.actor, number, zone=settings.zone,
                                authorisation=settings.manufacturing_authorisation)

    return download(await pdf.render_for(request, f"evidence packet of lot {number[:40]}", make))
