"""JSON API, blinded: which participant received which kit at which visit, and a kit's chain of
custody. The same for both arms: nothing here reaches the sealed compartment."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlmodel import Session

from .. import trace
from ..deps import Viewer, read_session, require

router = APIRouter(prefix="/api/v1", tags=["trace"])
readers = require(*trace.READERS)


@router.get("/trace/kits")
def kit_trace(q: str, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)) -> dict:
    """`q`: a kit number or a participant (randomisation or screening) number."""
    result = trace.kit_participants(session, viewer.actor, q)
    return {"query": result.query, "found": result.found, "kit_without_participant": result.kit_without_participant,
            "lines": [line.as_json() for line in result.lines]}


@router.get("/kits/{number}/custody")
def custody_chain(number: str, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)) -> dict:
    """The kit's chain from packaging to administration or destruction, oldest first."""
    kit = trace.kit_for_chain(session, number)
    links = trace.custody_chain(session, viewer.actor, kit)
    return {"kit_number": kit.number, "links": [link.as_json() for link in links]}
