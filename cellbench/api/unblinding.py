"""JSON API: emergency unblinding (the arm of one participant, in this response only), unblinding
records (who, when, why), and the outbox for a mail transport (pending messages, mark sent).
What an unblinding reveals about other participants is not here: api/unblinding_impact.py, for
unblinded roles only."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import studies, unblinding
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..errors import InvalidInput
from ..models import Meaning, Notification
from ..pagination import Ask
from . import paging

router = APIRouter(prefix="/api/v1", tags=["emergency unblinding"])
readers = require(*unblinding.READERS)


class UnblindingIn(BaseModel):
    study: str
    participant: str = Field(description="The participant's randomisation number")
    reason_code: str = Field(description=" | ".join(unblinding.REASON_CODES))
    reason: str = Field(description="What happened and why the arm is needed (required)")
    password: str = Field(description="The investigator's password: re-authentication, and the signature 'unblinded'")


class SignatureOut(BaseModel):
    signer_name: str
    at: datetime
    meaning: Meaning
    content_hash: str


class UnblindedOut(BaseModel):
    study: str
    participant: str
    arm: str = Field(description="The arm of this participant: returned once, here")
    arm_name: str
    reason_code: str
    reason: str
    at: datetime
    signature: SignatureOut
    notified: str = Field(description="The address the sponsor's notification is queued for")


class RecordOut(BaseModel):
    study: str
    participant: str
    screening_number: str
    site: str
    reason_code: str
    reason: str
    by: str
    at: datetime
    signature: SignatureOut | None


class NotificationOut(BaseModel):
    id: int | None = Field(description="The message's number; null for a caller who reads the blinded messages only: "
                                       "numbers count every message, and their gaps would tell when one she may not "
                                       "see was sent")
    kind: str
    to_address: str
    subject: str
    body: str | None = Field(description="The message; null for a caller who may not read it (it reveals an arm)")
    created_at: datetime
    sent_at: datetime | None
    state: str = Field(description="pending, sent or dead (cellbench.notifications)")
    audience: str = Field(description="blinded or unblinded")
    attempts: int
    last_error: str | None


def _sig(sig) -> SignatureOut:
    return SignatureOut(signer_name=sig.signer_name, at=sig.at, meaning=Meaning(sig.meaning),
                        content_hash=sig.content_hash)


@router.post("/unblindings", response_model=UnblindedOut, status_code=201)
def unblind(body: UnblindingIn, viewer: Viewer = Depends(require(*unblinding.UNBLINDERS)),
            db: Database = Depends(get_db)):
    with db.write() as session:
        study = studies.by_code(session, body.study)
        r = unblinding.unblind(session, session.merge(viewer.user), body.password, study, body.participant,
                               body.reason_code, body.reason)
        return UnblindedOut(study=study.code, participant=r.participant.randomisation_number, arm=r.arm,
                            arm_name=r.arm_name, reason_code=r.record.reason_code, reason=r.record.reason,
                            at=r.record.at, signature=_sig(r.signature), notified=r.notification.to_address)


RecordPageOut = paging.page_model("RecordPageOut", "unblindings", RecordOut, "Newest first")


@router.get("/unblindings", response_model=RecordPageOut)
def list_unblindings(study: str | None = None, participant: str | None = None, ask: Ask = Depends(paging.ask),
                     viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    """Unblinding records, newest first; with `participant` (and its `study`), that participant's
    records only, on one page (a participant is unblinded a handful of times at most)."""
    chosen = studies.by_code(session, study) if study else None
    next_cursor = None
    if participant:
        if chosen is None:
            raise InvalidInput("Name the study of the participant.", field="study")
        rows = unblinding.records_of(session, unblinding.participant_by_number(session, chosen, participant))
    else:
        found = unblinding.record_page(session, ask, chosen)
        rows, next_cursor = found.rows, found.next
    return RecordPageOut(unblindings=[RecordOut(**{**r.as_json(), "signature": _sig(r.signature) if r.signature
                                                   else None}) for r in rows], next=next_cursor)


def _note(n: Notification, full: bool) -> NotificationOut:
    return NotificationOut(id=n.id if full else None, kind=n.kind, to_address=n.to_address, subject=n.subject,
                           body=n.body if full else None, created_at=n.created_at, sent_at=n.sent_at, state=n.state,
                           audience=n.audience, attempts=n.attempts, last_error=n.last_error)


OutboxPageOut = paging.page_model("OutboxPageOut", "messages", NotificationOut, "Newest first")


@router.get("/outbox", response_model=OutboxPageOut)
def outbox(state: str = "pending", ask: Ask = Depends(paging.ask),
           viewer: Viewer = Depends(require(*unblinding.OUTBOX_READERS, *unblinding.UNBLINDERS)),
           session: Session = Depends(read_session)):
    """Messages for the mail transport: `pending` (default), `sent` or `all`."""
    full = unblinding.reads_full_outbox(viewer.actor)
    found = unblinding.outbox(session, viewer.actor, ask, state=state)
    return OutboxPageOut(messages=[_note(n, full) for n in found.rows], next=found.next)


@router.post("/outbox/{notification_id}/sent", response_model=NotificationOut)
def mark_sent(notification_id: str, viewer: Viewer = Depends(require(*unblinding.OUTBOX_READERS)),
              db: Database = Depends(get_db)):
    with db.write() as session:
        return _note(unblinding.mark_sent(session, viewer.actor, notification_id), True)

