"""JSON API of blind-preserving kit quarantines (unblinded): the list, one with its kits' arms,
opening one by hand, and QA's signed decision to lift or withdraw it. Blinded roles get 403.

The routes that return members' arms run in a write transaction: the sealed read is logged."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlmodel import Session, col

from .. import lots, studies
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..models import KitQuarantine, KitState, Signature, User, saved_id
from ..pagination import Ask
from ..supply import quarantine
from ..supply.views import READERS, lots_of_quarantines, quarantine_kits, quarantines_page
from . import paging
from .supply import SignatureOut, SignedReason, signature_out

router = APIRouter(prefix="/api/v1/supply", tags=["supply (unblinded)"])
readers = require(*READERS)
openers = require(*quarantine.OPENERS)
deciders = require(*quarantine.DECIDERS)


class QuarantineOut(BaseModel):
    number: str
    study: str
    state: str = Field(description="open | lifted | withdrawn")
    cause: str = Field(description=" | ".join(quarantine.CAUSES))
    lot: str | None
    policy: str
    reason: str
    kit_count: int
    opened_by: str | None
    opened_at: datetime
    closed_at: datetime | None
    closure_reason: str | None
    closure: SignatureOut | None


class MemberOut(BaseModel):
    kit_number: str
    arm: str | None
    state: KitState


class QuarantineDetailOut(QuarantineOut):
    actions: list[str] = Field(description="The decisions you may take now, by its lifecycle: lift, withdraw")
    kits: list[MemberOut]


class NewQuarantine(BaseModel):
    lot: str
    policy: str | None = Field(None, description="Empty: the study's policy")
    reason: str


@dataclass(frozen=True)
class Named:
    """What a page of quarantines names, read once for the page (not once per row)."""

    lots: dict[int, str]
    people: dict[int, str]
    studies: dict[int, str]
    closures: dict[int, Signature]


def named(session: Session, rows: list[KitQuarantine]) -> Named:
    openers = {kq.opened_by for kq in rows if kq.opened_by}
    people = {saved_id(u): u.full_name for u in session.scalars(select(User).where(col(User.id).in_(openers)))}
    signed = {kq.closure_signature_id for kq in rows if kq.closure_signature_id}
    closures = {saved_id(sig): sig for sig in session.scalars(select(Signature).where(col(Signature.id).in_(signed)))}
    return Named({i: lot.number for i, lot in lots_of_quarantines(session, rows).items()}, people,
                 {saved_id(s): s.code for s in studies.all_studies(session)}, closures)


def quarantine_out(session: Session, kq: KitQuarantine, names: Named | None = None) -> QuarantineOut:
    names = names or named(session, [kq])
    return QuarantineOut(number=kq.number, study=names.studies[kq.study_id], state=kq.state, cause=kq.cause,
                         lot=names.lots.get(kq.lot_id) if kq.lot_id else None, policy=kq.policy, reason=kq.reason,
                         kit_count=kq.kit_count, opened_by=names.people.get(kq.opened_by) if kq.opened_by else None,
                         opened_at=kq.opened_at, closed_at=kq.closed_at, closure_reason=kq.closure_reason,
                         closure=signature_out(names.closures.get(kq.closure_signature_id or 0)))


def quarantine_detail(session: Session, viewer: Viewer, kq: KitQuarantine) -> QuarantineDetailOut:
    return QuarantineDetailOut(**quarantine_out(session, kq).model_dump(),
                               actions=quarantine.allowed_decisions(kq, viewer.actor),
                               kits=[MemberOut(kit_number=kit.number, arm=arm, state=KitState(kit.state))
                                     for kit, arm in quarantine_kits(session, viewer.actor, kq)])


QuarantinePageOut = paging.page_model("QuarantinePageOut", "quarantines", QuarantineOut,
                                      "Open quarantines first, then the others; newest first within each")


@router.get("/quarantines", response_model=QuarantinePageOut)
def list_quarantines(state: str | None = Query(None, pattern="^(open|lifted|withdrawn)$"),
                     ask: Ask = Depends(paging.ask), viewer: Viewer = Depends(readers),
                     session: Session = Depends(read_session)):
    found = quarantines_page(session, ask, state)
    names = named(session, found.rows)
    return QuarantinePageOut(quarantines=[quarantine_out(session, kq, names) for kq in found.rows], next=found.next)


@router.post("/quarantines", response_model=list[QuarantineDetailOut], status_code=201)
def open_quarantine(body: NewQuarantine, viewer: Viewer = Depends(openers), db: Database = Depends(get_db)):
    """A manual quarantine of the lot's kits: one record per study its kits are in."""
    with db.write() as session:
        opened = quarantine.open_manual(session, viewer.actor, lots.by_number(session, body.lot), body.policy,
                                        body.reason)
        return [quarantine_detail(session, viewer, kq) for kq in opened]


@router.get("/quarantines/{number}", response_model=QuarantineDetailOut)
def get_quarantine(number: str, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    with db.write() as session:
        return quarantine_detail(session, viewer, quarantine.by_number(session, number))


@router.post("/quarantines/{number}/lift", response_model=QuarantineDetailOut)
def lift_quarantine(number: str, body: SignedReason, viewer: Viewer = Depends(deciders),
                    db: Database = Depends(get_db)):
    with db.write() as session:
        kq = quarantine.by_number(session, number)
        quarantine.lift(session, session.merge(viewer.user), kq, body.reason, body.password)
        return quarantine_detail(session, viewer, kq)


@router.post("/quarantines/{number}/withdraw", response_model=QuarantineDetailOut)
def withdraw_quarantine(number: str, body: SignedReason, viewer: Viewer = Depends(deciders),
                        db: Database = Depends(get_db)):
    with db.write() as session:
        kq = quarantine.by_number(session, number)
        quarantine.withdraw(session, session.merge(viewer.user), kq, body.reason, body.password)
        return quarantine_detail(session, viewer, kq)
