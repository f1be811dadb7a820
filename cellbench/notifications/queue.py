"""The message queue: a notification is queued in the transaction of the event it tells, addressed to
the people whose roles (and, for site roles, sites and studies) may read it, and read back on the
notifications page by the same rule.

Each message has one audience. An "unblinded" message may name an arm, a count of held kits or a
kit list; it is addressed to unblinded roles only and listed in full to them only. A "blinded"
message reads the same for an active and a placebo kit (the builders in messages.py take no arm);
it may go to anyone, and site people read the blinded messages of their sites and studies.

The lifecycle is one table (MACHINE): pending -> sent (the sender delivered it, or a person marks it
sent when it went another way), pending -> pending (an attempt failed; the next waits), pending ->
dead (the last attempt failed, or nobody has an address), dead -> pending ("retry now"). The
sender's moves are made by conditional UPDATEs in sender.py; people's moves here.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from typing import cast

from sqlalchemy import ColumnElement, CursorResult, Select, Subquery, and_, exists, false, func, select, union, update
from sqlmodel import Session, col

from .. import audit, inputs, pagination, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..models import Notification, Role, User, UserRole, UserSite, UserStudy, Visibility, saved_id
from ..statemachine import Machine, Transition

BLINDED, UNBLINDED = "blinded", "unblinded"
# Who reads every message in full, retries dead ones and marks one sent by hand.
READERS_IN_FULL = (Role.supply_manager, Role.qa, Role.qp)
# Site people read the blinded messages of their sites and studies.
SITE_READERS = (Role.pharmacist, Role.investigator, Role.monitor)
# Kinds whose author follows her own messages (to whom, when, sent or not; not the text): the
# investigator who unblinded, whose unblinded message she may not otherwise read.
OWN_KINDS = ("emergency_unblinding",)
# Kinds a blinded person's audit trail shows even in their unblinded version: that an unblinding
# was told to the sponsor is known at the site (the subject names no arm).
TRAIL_KINDS = ("emergency_unblinding",)
STATES = ("pending", "sent", "dead", "all")


class NotificationState(str, Enum):
    pending = "pending"
    sent = "sent"
    dead = "dead"


_T = Transition[NotificationState]
_PENDING = frozenset({NotificationState.pending})
_NOBODY: frozenset[Role] = frozenset()  # the sender's moves: no person makes them
MOVES: dict[str, _T] = {
    "deliver": _T(_PENDING, NotificationState.sent, _NOBODY),
    "defer": _T(_PENDING, NotificationState.pending, _NOBODY),
    "give_up": _T(_PENDING, NotificationState.dead, _NOBODY),
    "mark_sent": _T(_PENDING, NotificationState.sent, frozenset(READERS_IN_FULL)),
    "retry": _T(frozenset({NotificationState.dead}), NotificationState.pending, frozenset(READERS_IN_FULL)),
}
MACHINE: Machine[Notification, NotificationState] = Machine(
    "notification", lambda n: NotificationState(n.state), MOVES)


def trail_visibility(note: Notification) -> Visibility:
    """An unblinded message's events are on unblinded trails only (their subject may count kits)."""
    if note.audience == BLINDED or note.kind in TRAIL_KINDS:
        return Visibility.everyone
    return Visibility.unblinded


# --- addressing ---------------------------------------------------------------------------------


def addresses(session: Session, roles: Iterable[Role], *, site_id: int | None = None,
              study_id: int | None = None) -> list[str]:
    """The email addresses of the active users holding any of `roles`; a site role's holders only
    where they work for the site and the study. Sorted, so a message's recipients never depend on
    anything but its audience."""
    found: set[str] = set()
    for role in set(roles):
        query = (select(col(User.email)).join(UserRole, col(UserRole.user_id) == col(User.id))
                 .where(col(UserRole.role) == role, col(User.active).is_(True), col(User.email).is_not(None)))
        if users.is_scoped([role]):
            query = query.where(
                exists().where(col(UserSite.user_id) == col(User.id), col(UserSite.site_id) == site_id),
                exists().where(col(UserStudy.user_id) == col(User.id), col(UserStudy.study_id) == study_id))
        found.update(email for email in session.scalars(query) if email)
    return sorted(found)


def queue(session: Session, actor: Actor, *, kind: str, audience: str, subject: str, body: str,
          to: Sequence[str], study_id: int | None = None, site_id: int | None = None) -> Notification:
    """One message, pending (or dead at once when nobody has an address: the dead-letter list is
    where someone sees that an address is missing). Audited in the caller's transaction."""
    if audience not in (BLINDED, UNBLINDED):
        raise ValueError(f"unknown audience {audience!r}")
    recipients = list(dict.fromkeys(a.strip() for a in to if a and a.strip()))
    now = utcnow()
    note = Notification(kind=kind, audience=audience, to_address=(recipients[0] if recipients else "")[:200],
                        recipients=", ".join(recipients), subject=subject[:300], body=body, created_at=now,
                        study_id=study_id, site_id=site_id, queued_by=actor.user_id, next_attempt_at=now,
                        state=NotificationState.pending.value)
    if not recipients:
        note.state = NotificationState.dead.value
        note.last_error = "Nobody to send it to: no user of the roles it is for has an email address."
    session.add(note)
    session.flush()
    # The event names its author, as queued_by does on the row (which the lists read).
    audit.record(session, actor, "notification queued", "notification", note.id, field="recipients",
                 new=note.recipients, reason=note.subject, visibility=trail_visibility(note))
    if not recipients:
        audit.record(session, actor, "notification dead", "notification", note.id, field="state",
                     old=NotificationState.pending.value, new=note.state, reason=note.last_error,
                     visibility=trail_visibility(note))
    return note


# --- reading ------------------------------------------------------------------------------------


def reads_in_full(actor: Actor) -> bool:
    return bool(actor.roles & set(READERS_IN_FULL))


def may_read_text(actor: Actor, note: Notification) -> bool:
    """The text of an unblinded message is for unblinded readers; a blinded one is for everyone who
    may list it."""
    return reads_in_full(actor) or note.audience == BLINDED


# Newest first. The cursor holds a message's id, sealed (pagination).
MESSAGE_ORDER = pagination.Order("notifications", (col(Notification.id),), newest_first=True)


def _branches(actor: Actor, states: Sequence[str], below: int | None, size: int) -> list[Subquery]:
    """The ids a site person may list, as branches that each walk one index in id order and stop
    after `size` rows below the cursor: her own unblindings' messages (ix_notification_author), and
    the blinded messages of each site and study of hers (ix_notification_scope), per state. A page
    costs (branches x size) index rows, however many messages and audit events the years hold."""
    wheres: list[ColumnElement[bool]] = []
    for state in states:
        in_state = col(Notification.state) == state
        if actor.user_id is not None:
            wheres += [and_(col(Notification.queued_by) == actor.user_id, col(Notification.kind) == kind, in_state)
                       for kind in OWN_KINDS]
        if actor.sites is not None:
            wheres += [and_(col(Notification.site_id) == site, col(Notification.study_id) == study,
                            col(Notification.audience) == BLINDED, in_state)
                       for site in sorted(actor.sites) for study in sorted(actor.studies or ())]
    if below is not None:
        wheres = [and_(where, col(Notification.id) < below) for where in wheres]
    return [select(col(Notification.id)).where(where).order_by(col(Notification.id).desc()).limit(size).subquery()
            for where in wheres]


def _messages(actor: Actor, state: str, ask: pagination.Ask) -> Select:
    """Unblinded readers: every message. Site people: the blinded messages of their sites and
    studies, and the messages their own unblindings queued. Anyone else: a refusal."""
    if state not in STATES:
        raise InvalidInput(f"Show {', '.join(STATES[:-1])} or all messages.", field="state")
    query = select(Notification)
    if reads_in_full(actor):
        return query if state == "all" else query.where(col(Notification.state) == state)
    users.require_role(actor, *READERS_IN_FULL, *SITE_READERS)
    below = pagination.decode(MESSAGE_ORDER, ask.after, ask.secret)[0] if ask.after else None
    states = [s.value for s in NotificationState] if state == "all" else [state]
    # each branch a subquery: SQLite takes no LIMIT on a member of a UNION
    branches = [select(branch.c.id) for branch in _branches(actor, states, below, ask.size + 1)]
    return query.where(col(Notification.id).in_(union(*branches)) if branches else false())


def message_page(session: Session, actor: Actor, ask: pagination.Ask, *,
                 state: str = "all") -> pagination.Page[Notification]:
    """A page of the messages this actor may read (see _messages), newest first."""
    return pagination.page(session, _messages(actor, state, ask), MESSAGE_ORDER, ask)


def count(session: Session, state: str) -> int:
    return session.scalar(select(func.count()).select_from(Notification)
                          .where(col(Notification.state) == state)) or 0


def by_id(session: Session, notification_id: object) -> Notification:
    note = session.get(Notification, inputs.db_id(notification_id, "notification", "message"))
    if note is None:
        raise NotFound(f"No message {notification_id}.", field="notification")
    return note


# --- people's moves -----------------------------------------------------------------------------


def _move(session: Session, actor: Actor, notification_id: object, action: str, **values: object) -> Notification:
    """Claim the row by its state (a conditional UPDATE) before anything else: of two people, or a
    person and the sender, one wins and the other gets a conflict."""
    note = by_id(session, notification_id)
    MACHINE.check(note, action, actor.roles)
    before = note.state
    target = MACHINE.target(note, action).value
    changed = cast(CursorResult, session.execute(  # an UPDATE's result counts its rows
        update(Notification).where(col(Notification.id) == note.id, col(Notification.state) == before)
        .values(state=target, claimed_by=None, claimed_until=None, **values)))
    if changed.rowcount != 1:
        raise Conflict(f"Message {note.id} changed meanwhile; look again.", field="notification")
    session.refresh(note)
    return note


def retry(session: Session, actor: Actor, notification_id: object) -> Notification:
    """A dead message back in the queue, due now: one more attempt (its attempts are kept)."""
    note = _move(session, actor, notification_id, "retry", next_attempt_at=utcnow())
    audit.record(session, actor, "notification retried", "notification", saved_id(note), field="state",
                 old=NotificationState.dead.value, new=note.state, reason=f"retry now after: {note.last_error}",
                 visibility=trail_visibility(note))
    return note


def mark_sent(session: Session, actor: Actor, notification_id: object) -> Notification:
    """A pending message that went another way (by hand, another mail client): marked sent."""
    try:
        note = _move(session, actor, notification_id, "mark_sent", sent_at=utcnow())
    except InvalidInput as refused:
        raise Conflict(f"Message {notification_id} is not pending: it is already sent or dead.",
                       field="notification") from refused
    audit.record(session, actor, "notification sent", "notification", saved_id(note), field="sent_at",
                 new=note.sent_at, reason="marked sent by hand", visibility=trail_visibility(note))
    return note
