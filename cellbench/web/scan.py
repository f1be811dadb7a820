"""The scan station: built for a USB or Bluetooth scanner that types the label code and Enter.
Every scan answers at once, in large type, and the field is ready for the next one."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlmodel import Session

from .. import custody, kits
from ..custody import scanning
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError
from ..models import CustodyEvent
from ..templating import render

router = APIRouter(include_in_schema=False)
STATION_COOKIE = "cellbench_station"


def _recent(session: Session, viewer: Viewer) -> list[tuple[CustodyEvent, str]]:
    return custody.recent(session, viewer.user.id, "scanned", 8)


def _page(request: Request, session: Session, viewer: Viewer, station: str, verdict=None,
          error: DomainError | None = None, code: str = ""):
    return render(request, "scan/station.html", status_code=error.status if error else 200, station=station,
                  verdict=verdict, error=error, code=code, recent=_recent(session, viewer))


@router.get("/scan")
def station_page(request: Request, viewer: Viewer = Depends(require(*kits.READERS)),
                 session: Session = Depends(read_session)):
    return _page(request, session, viewer, request.cookies.get(STATION_COOKIE, ""))


@router.post("/scan")
def station_scan(request: Request, viewer: Viewer = Depends(form_by(*kits.READERS)), db: Database = Depends(get_db),
                 form=Depends(form_data)):
    code, station = form.get("code", ""), (form.get("station") or "").strip()[:200]
    verdict = error = None
    try:
        with db.write() as session:
            verdict = scanning.scan(session, viewer.actor, code, request.app.state.settings.secret_key,
                                    station=station, manual=form.get("manual"), reason=form.get("manual_reason"))
    except DomainError as refused:
        error = refused
    with db.read() as session:
        response = _page(request, session, viewer, station, verdict, error, code if error else "")
    if station:
        response.set_cookie(STATION_COOKIE, station, max_age=60 * 60 * 24 * 365, httponly=True, samesite="strict")
    return response
