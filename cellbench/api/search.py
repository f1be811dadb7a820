"""JSON API: search by code (the same look-up as the top bar's field, cellbench/search.py)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlmodel import Session

from .. import search
from ..deps import Viewer, current_viewer, read_session

router = APIRouter(prefix="/api/v1", tags=["search"])


class MatchOut(BaseModel):
    kind: str
    reference: str
    label: str
    href: str


class SearchOut(BaseModel):
    query: str
    matches: list[MatchOut]
    message: str | None
    label_refusal: str | None


@router.get("/search", response_model=SearchOut)
def search_api(request: Request, q: str = "", viewer: Viewer = Depends(current_viewer),
               session: Session = Depends(read_session)) -> dict:
    """What a typed code or a scanned kit label names, within the caller's permissions: every match
    (usually one) with its page, or the message "Nothing found for …" whether the thing exists
    elsewhere or not at all."""
    return search.resolve(session, viewer.actor, q, request.app.state.settings.secret_key).as_json()
