"""Search and scan-anything: the field in every page's top bar. One match opens its page; anything
else shows what was found, or "Nothing found for …" in the same words whatever lies outside the
reader's permissions (cellbench/search.py)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from .. import search
from ..deps import Viewer, current_viewer, read_session
from ..templating import render

router = APIRouter(include_in_schema=False)


@router.get("/search")
def search_page(request: Request, q: str = "", viewer: Viewer = Depends(current_viewer),
                session: Session = Depends(read_session)) -> Response:
    answer = search.resolve(session, viewer.actor, q, request.app.state.settings.secret_key)
    if answer.only is not None:
        return RedirectResponse(answer.only.href, status_code=303)
    return render(request, "search/results.html", answer=answer)
