"""The blinded lot's evidence packet for the trial site (cellbench.evidence.site): what blinded
roles may read, signed. Blind-safe: nothing here reaches the sealed compartment."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from .. import pdf
from ..db import Database
from ..deps import Viewer, get_db, require
from ..evidence import Built, site

router = APIRouter(include_in_schema=False)


def download(built: Built) -> Response:
    """A packet as a download (never shown inline: it is an archive to keep as it is)."""
    return Response(built.data, media_type="application/zip",
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(built.name)}"})


@router.get("/blinded-lots/{code}/evidence.zip")
async def blinded_lot_evidence(request: Request, code: str, viewer: Viewer = Depends(require(*site.REQUESTERS)),
                               db: Database = Depends(get_db)):
    def make() -> Built:
        return site.build(db, viewer.actor, code)

    return download(await pdf.render_for(request, f"evidence packet of blinded lot {code[:40]}", make))
