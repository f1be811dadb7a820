"""Emergency unblinding of one participant, and the notification outbox.

An investigator, at any hour, names the participant, a coded reason and a free-text reason, and
re-enters her password. Only then does the sealed compartment's one arm-returning door
(`sealed.unblind_participant`) give the arm of that participant, which is shown to her once. In the
same transaction: the unblinding record, a signature meaning "unblinded", the participant's
unblinded_at, audit events (who/when/why for everyone, the arm for unblinded roles only), the
and a message to the sponsor's emergency contact.

Which other participants' arms this makes certain or more probable (block-mates in the sealed
randomisation list above all) is not worked out here: it needs the sealed lists beyond this one
participant, and the investigator must not be handed it. unblinding_impact.py does it for QA and
the supply manager, who send it to the sponsor; the message queued here says it follows.

A wrong password reveals nothing and still leaves its trace: the failed attempt is counted on the
account and written to the participant's audit trail.

The sponsor's message holds the arm, because the sponsor's medical monitor needs it for SUSAR
reporting; so it is read in full by unblinded roles only (cellbench.notifications, which also sends
the site's investigators and monitors a blinded notice). The investigator who unblinded sees her own
messages listed (to whom, when, sent or not), not their text.

This module serves blinded roles: it reaches the sealed compartment through the blind-safe door
alone, and the arm it returns leaves it only in the investigator's result and the sponsor's message.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from . import audit, notifications, pagination, pharmacy, sealed, signatures, studies, users
from .audit import Actor
from .clock import utcnow
from .custody import fetch, key
from .errors import AuthenticationFailed, InvalidInput, NotFound
from .models import (
    Kit,
    Meaning,
    Notification,
    Participant,
    Role,
    Signature,
    Site,
    Study,
    Unblinding,
    User,
    Visibility,
    Visit,
)
from .statemachine import claim

UNBLINDERS = (Role.investigator,)
# Who reads unblinding records (who, when, why; never the arm).
READERS = (Role.investigator, Role.monitor, Role.supply_manager, Role.qa, Role.qp)
# Who reads the outbox in full, and marks messages sent for the mail transport.
OUTBOX_READERS = notifications.READERS_IN_FULL
REASON_CODES = {
    "serious_adverse_event": "Serious adverse event",
    "overdose": "Overdose",
    "pregnancy": "Pregnancy",
    "interaction": "Treatment of an interacting condition",
    "other": "Other",
}
NOTIFICATION_KIND = "emergency_unblinding"


def reason_label(code: str) -> str:
    return REASON_CODES.get(code, code)


def participant_key(study: Study, participant: Participant) -> str:
    """The participant's id in the audit trail, as the pharmacy writes it."""
    return pharmacy.participant_ref(study, participant)


def participant_by_number(session: Session, study: Study, number: str | None, *,
                          field: str = "participant") -> Participant:
    """A participant of the study by randomisation number, or screening number."""
    text = (number or "").strip().upper()
    if not text:
        raise InvalidInput("Give the participant's randomisation number.", field=field)
    found = session.scalars(select(Participant).where(
        col(Participant.study_id) == study.id,
        or_(col(Participant.randomisation_number) == text, col(Participant.screening_number) == text))).first()
    if found is None:
        raise NotFound(f"No participant {text} in {study.code}.", field=field)
    return found


# --- this participant's kits (unblinding_impact reads them) -------------------------------------


def kits_of_participant(session: Session, participant: Participant) -> list[Kit]:
    """Every kit assigned to the participant's visits, replaced ones included (same arm)."""
    ids: set[int] = set()
    for kit_id, replaced in session.execute(select(col(Visit.kit_id), col(Visit.replaced_kit_ids))
                                            .where(col(Visit.participant_id) == participant.id)):
        if kit_id:
            ids.add(kit_id)
        ids.update(_replaced_ids(replaced))
    if not ids:
        return []
    return list(session.scalars(select(Kit).where(col(Kit.id).in_(ids)).order_by(col(Kit.number))))


def _replaced_ids(text: str | None) -> set[int]:
    if not text:
        return set()
    try:
        values = json.loads(text)
    except ValueError:
        values = text.replace(";", ",").split(",")
    if not isinstance(values, list):
        values = [values]
    return {int(v) for v in values if str(v).strip().isdigit()}


# --- the unblinding ------------------------------------------------------------------------------


@signatures.content_rule("unblinding")
def _content(session: Session, unblinding_id: str) -> dict:
    row = session.get(Unblinding, int(unblinding_id))
    if row is None:
        raise NotFound("No such unblinding.")
    participant = fetch(session, Participant, row.participant_id, "participant")
    study = fetch(session, Study, participant.study_id, "study")
    # The arm is not part of what is signed: the signature is readable where the arm is not. Nor is
    # the impact: `inferable` is empty since it moved to unblinding_impact, and stays in the content
    # so that unblindings signed before still verify.
    return {"study": study.code, "participant": participant.randomisation_number, "reason_code": row.reason_code,
            "reason": row.reason, "by_user": row.by_user, "at": row.at, "inferable": row.inferable}


@dataclass(frozen=True)
class Unblinded:
    """What the investigator is shown once: the record and the arm of that one participant."""

    record: Unblinding
    participant: Participant
    study: Study
    arm: str
    arm_name: str
    notification: Notification
    signature: Signature


def _refused_attempt(original, user_id: int, trail: str, code: str, reason: str):
    """A wrong password: the account's failure count (as for any signing), and the attempt itself
    on the participant's trail, so nobody can try unblindings without a trace."""

    def record(session: Session) -> None:
        original(session)
        user = fetch(session, User, user_id, "user")
        audit.record(session, users.actor(session, user), "emergency unblinding refused", "participant", trail,
                     reason=f"wrong password; requested for: {reason_label(code)}: {reason}")

    return record


def unblind(session: Session, user: User, password: str | None, study: Study, participant_number: str | None,
            reason_code: str | None, reason: str | None) -> Unblinded:
    actor = users.actor(session, user)
    users.require_role(actor, *UNBLINDERS)
    participant = participant_by_number(session, study, participant_number)
    users.require_scope(actor, participant.site_id, participant.study_id, field="participant")
    # Each request is an unblinding of its own, signed; taking the participant first numbers two at
    # once "1 of" and "2 of", never both the first.
    claim(session, participant)
    if participant.randomisation_number is None:
        raise InvalidInput(f"Participant {participant.screening_number} is not randomised: there is no arm to reveal.",
                           field="participant")
    code = (reason_code or "").strip()
    if code not in REASON_CODES:
        raise InvalidInput(f"Choose a coded reason: {', '.join(REASON_CODES)}.", field="reason_code")
    reason = audit.require_reason(reason)
    trail = participant_key(study, participant)
    now = utcnow()
    row = Unblinding(participant_id=key(participant), reason_code=code, reason=reason, by_user=key(user), at=now)
    session.add(row)
    session.flush()
    why = f"{reason_label(code)}: {reason}"
    try:
        signature = signatures.sign(session, user, password or "", Meaning.unblinded, "unblinding", str(row.id),
                                    reason=why, visibility=Visibility.unblinded)
    except AuthenticationFailed as failed:
        raise AuthenticationFailed(failed.message, failed.field,
                                   _refused_attempt(failed.record, key(user), trail, code, reason)) from None
    row.signature_id = signature.id
    arm = sealed.unblind_participant(session, actor, study, participant.randomisation_number)
    before = participant.unblinded_at
    if before is None:
        participant.unblinded_at = now
    session.flush()
    count = session.scalar(select(func.count()).select_from(Unblinding)
                           .where(col(Unblinding.participant_id) == participant.id)) or 0
    audit.record(session, actor, "emergency unblinding", "participant", trail, field="unblinded_at", old=before,
                 new=participant.unblinded_at,
                 reason=why if count == 1 else f"{why} (unblinding {count} of this participant)")
    audit.record(session, actor, "arm revealed", "participant", trail, field="arm", new=arm, reason=why,
                 visibility=Visibility.unblinded)
    notification = _notify(session, actor, user, study, participant, row, arm, count)
    return Unblinded(row, participant, study, arm, arm_name(study, arm), notification, signature)


def arm_name(study: Study, arm: str) -> str:
    return next((a.name for a in studies.definition(study).arms if a.code == arm), arm)


def _notify(session: Session, actor: Actor, user: User, study: Study, participant: Participant, row: Unblinding,
            arm: str, count: int) -> Notification:
    """The sponsor's message with the arm (returned), and the site's blinded notice (notifications)."""
    return notifications.emergency_unblinding(
        session, actor, study=study, site=session.get(Site, participant.site_id), participant=participant, at=row.at,
        reason_label=reason_label(row.reason_code), reason=row.reason, by_name=user.full_name,
        by_username=user.username, arm=arm, count=count)


# --- reading unblinding records (who, when, why; no arm) -------------------------------------------


@dataclass(frozen=True)
class Record:
    id: int
    study: str
    participant: str
    screening_number: str
    site: str
    reason_code: str
    reason_label: str
    reason: str
    by_name: str
    at: datetime
    signature: Signature | None

    def as_json(self) -> dict:
        sig = self.signature
        return {"study": self.study, "participant": self.participant, "screening_number": self.screening_number,
                "site": self.site, "reason_code": self.reason_code, "reason": self.reason, "by": self.by_name,
                "at": self.at,
                "signature": {"signer_name": sig.signer_name, "at": sig.at, "meaning": Meaning(sig.meaning).value,
                              "content_hash": sig.content_hash} if sig else None}


# Newest first. The cursor holds the record's time and id, sealed (pagination).
RECORD_ORDER = pagination.Order("unblindings", (col(Unblinding.at), col(Unblinding.id)), newest_first=True)


def _records(session: Session, query) -> list[Record]:
    return _as_records(session, session.execute(query.order_by(*(c.desc() for c in RECORD_ORDER.columns))).all())


def _as_records(session: Session, rows: Sequence[Any]) -> list[Record]:
    sig_ids = [u.signature_id for u, *_ in rows if u.signature_id]
    sigs = ({s.id: s for s in session.scalars(select(Signature).where(col(Signature.id).in_(sig_ids)))}
            if sig_ids else {})
    return [Record(u.id, study_code, p.randomisation_number, p.screening_number, site_code, u.reason_code,
                   reason_label(u.reason_code), u.reason, name, u.at, sigs.get(u.signature_id))
            for u, p, study_code, site_code, name in rows]


def _base():
    return (select(Unblinding, Participant, col(Study.code), col(Site.code), col(User.full_name))
            .join(Participant, col(Participant.id) == col(Unblinding.participant_id))
            .join(Study, col(Study.id) == col(Participant.study_id))
            .join(Site, col(Site.id) == col(Participant.site_id))
            .join(User, col(User.id) == col(Unblinding.by_user)))


def records(session: Session, study: Study | None = None, limit: int = 200) -> list[Record]:
    query = _base() if study is None else _base().where(col(Participant.study_id) == study.id)
    return _records(session, query.limit(limit))


def is_latest() -> Any:
    """The condition that an unblinding is its participant's latest."""
    later = aliased(Unblinding)
    return ~exists().where(col(later.participant_id) == col(Unblinding.participant_id),
                           col(later.id) > col(Unblinding.id))


def latest_records_where(session: Session, *conditions: Any) -> list[Record]:
    """Every participant's latest unblinding that meets these conditions, newest first (no limit:
    a queue built on it must not lose its oldest entries)."""
    return _records(session, _base().where(is_latest(), *conditions))


def record_page(session: Session, ask: pagination.Ask, study: Study | None = None) -> pagination.Page[Record]:
    """A page of unblinding records, newest first; one study's when given."""
    query = _base() if study is None else _base().where(col(Participant.study_id) == study.id)
    found = pagination.page(session, query, RECORD_ORDER, ask, key=lambda row: (row[0].at, row[0].id))
    return pagination.Page(_as_records(session, found.rows), found.next, found.first)


def records_of(session: Session, participant: Participant) -> list[Record]:
    return _records(session, _base().where(col(Unblinding.participant_id) == participant.id))


# --- the outbox: now the notifications queue (cellbench.notifications); these names stay for the API


def reads_full_outbox(actor: Actor) -> bool:
    return notifications.reads_in_full(actor)


def outbox(session: Session, actor: Actor, ask: pagination.Ask, *,
           state: str = "pending") -> pagination.Page[Notification]:
    """A page of messages. Unblinded roles: every message. The investigator who unblinded: the
    messages her unblindings queued, and the blinded ones of her sites. Anyone else: a refusal."""
    return notifications.message_page(session, actor, ask, state=state)


def mark_sent(session: Session, actor: Actor, notification_id: int | str) -> Notification:
    return notifications.mark_sent(session, actor, notification_id)
