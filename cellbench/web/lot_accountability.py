"""Accountability by manufacturing lot, for the supply manager and QA (unblinded): which kits hold
the lot's units, where they are and in which state. Reads the sealed compartment, so every page
view is a write transaction (each look is an audit event), and no blinded role reaches it."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from .. import accountability
from ..accountability import by_lot as lot_accountability
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..templating import render
from . import paging

router = APIRouter(include_in_schema=False)
readers = require(*lot_accountability.READERS)


@router.get("/accountability/lots")
def lot_index(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    wanted = (request.query_params.get("lot") or "").strip()
    if wanted:
        return RedirectResponse(f"/accountability/lots/{quote(wanted.upper(), safe='')}", status_code=303)
    found = lot_accountability.lots_with_units(session, paging.ask(request))
    return render(request, "accountability/lots.html", lots=found.rows,
                  pager=paging.pager("/accountability/lots", {}, found))


@router.get("/accountability/lots/{number}")
def lot_page(request: Request, number: str, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    with db.write() as session:
        data = lot_accountability.for_lot(session, viewer.actor, lot_accountability.lot_by_number(session, number))
    return render(request, "accountability/lot.html", data=data, categories=accountability.CATEGORIES)
