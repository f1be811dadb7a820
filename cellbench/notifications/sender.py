"""The sender: claims due messages, talks to the transport with no transaction open, and records the
outcome; in the server as a background thread, and once from `cellbench send-notifications` (cron).

Three short transactions per message and none while the transport talks: (1) claim — a conditional
UPDATE that only one sender can win (its token and a lease on the row), then the message is read
and the transaction ends; (2) the transport, which may take the SMTP timeout; (3) the outcome,
written only if the claim is still this sender's. A sender that dies between (1) and (3) leaves a
claim that lapses after the lease, and the message is sent again by the next: at least once, and
never twice by two live senders.

A failed attempt waits backoff * 2^(attempts-1) seconds, at most the cap; the attempt that reaches
the maximum makes the message dead, and it is listed on the notifications page until someone
retries it.
"""
from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import CursorResult, or_, select, update
from sqlmodel import col

from .. import audit
from ..audit import Actor
from ..clock import utcnow
from ..config import Settings
from ..db import Database
from ..models import Notification
from .queue import MACHINE, NotificationState, trail_visibility
from .transports import Outgoing, Transport, email_of, transport_from

log = logging.getLogger("cellbench.notifications")
SENDER = Actor(None, "notification sender")
PENDING = NotificationState.pending.value


@dataclass(frozen=True)
class Policy:
    backoff_seconds: int = 60
    cap_seconds: int = 3600
    max_attempts: int = 8
    lease_seconds: int = 300  # longer than any SMTP conversation (timeouts are 30 s)
    sender_address: str = "cellbench@localhost"

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(settings.notify_backoff_seconds, settings.notify_backoff_cap_seconds,
                   settings.notify_max_attempts, sender_address=settings.smtp_from)

    def wait_after(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt: 1, 2, 4 ... backoff units, capped."""
        return timedelta(seconds=min(self.cap_seconds, self.backoff_seconds * 2 ** max(0, attempts - 1)))


@dataclass
class Report:
    sent: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    lost_claims: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"{len(self.sent)} sent, {len(self.deferred)} to retry, {len(self.dead)} dead"
                + (f", {len(self.lost_claims)} taken over by another sender" if self.lost_claims else ""))


def _due(now: datetime):
    return (col(Notification.state) == PENDING,
            or_(col(Notification.next_attempt_at).is_(None), col(Notification.next_attempt_at) <= now),
            or_(col(Notification.claimed_until).is_(None), col(Notification.claimed_until) < now))


def claim(db: Database, token: str, policy: Policy, *, limit: int = 20) -> list[Outgoing]:
    """Due messages this sender now holds, oldest first: each by a conditional UPDATE that names
    the state and the lapsed claim, so of two senders exactly one gets each message."""
    with db.write() as session:
        now = utcnow()
        ids = list(session.scalars(select(col(Notification.id)).where(*_due(now))
                                   .order_by(col(Notification.id)).limit(limit)))
        held = []
        for note_id in ids:
            changed = cast(CursorResult, session.execute(
                update(Notification).where(col(Notification.id) == note_id, *_due(now))
                .values(claimed_by=token, claimed_until=now + timedelta(seconds=policy.lease_seconds))))
            if changed.rowcount == 1:
                held.append(note_id)
        notes: list[Notification] = list(session.scalars(
            select(Notification).where(col(Notification.id).in_(held)).order_by(col(Notification.id)))) if held else []
        return [Outgoing(n.id or 0, n.kind, tuple(a.strip() for a in n.recipients.split(",") if a.strip()),
                         n.subject, n.body, n.attempts) for n in notes]


def record_outcome(db: Database, token: str, outgoing: Outgoing, error: str | None, policy: Policy,
                   report: Report, via: str) -> None:
    """The attempt's outcome, if this sender still holds the claim; audited in the same transaction."""
    attempts = outgoing.attempts + 1
    with db.write() as session:
        now = utcnow()
        values: dict[str, object]
        if error is None:
            action, values = "deliver", {"sent_at": now, "last_error": None}
        elif attempts >= policy.max_attempts:
            action, values = "give_up", {"last_error": error}
        else:
            action, values = "defer", {"last_error": error, "next_attempt_at": now + policy.wait_after(attempts)}
        target = MACHINE.transition(action).target
        assert target is not None, "the sender's moves name their target"
        changed = cast(CursorResult, session.execute(
            update(Notification).where(col(Notification.id) == outgoing.id, col(Notification.state) == PENDING,
                                       col(Notification.claimed_by) == token)
            .values(state=target.value, attempts=attempts, claimed_by=None, claimed_until=None, **values)))
        if changed.rowcount != 1:  # marked sent by hand meanwhile, or the lease lapsed and another took it
            report.lost_claims.append(outgoing.id)
            log.warning("notification %s: the claim was lost before the outcome was recorded", outgoing.id)
            return
        note = session.get(Notification, outgoing.id)
        assert note is not None
        visibility = trail_visibility(note)
        if action == "deliver":
            report.sent.append(outgoing.id)
            audit.record(session, SENDER, "notification sent", "notification", outgoing.id, field="state",
                         old=PENDING, new=target.value, visibility=visibility,
                         reason=f"delivered by {via} to {len(outgoing.recipients)} recipient(s), attempt {attempts}")
        elif action == "defer":
            report.deferred.append(outgoing.id)
            audit.record(session, SENDER, "notification attempt failed", "notification", outgoing.id,
                         field="next_attempt_at", new=values["next_attempt_at"], visibility=visibility,
                         reason=f"attempt {attempts} of {policy.max_attempts} by {via}: {error}")
        else:
            report.dead.append(outgoing.id)
            audit.record(session, SENDER, "notification dead", "notification", outgoing.id, field="state",
                         old=PENDING, new=target.value, visibility=visibility,
                         reason=f"attempt {attempts} of {policy.max_attempts} by {via} failed: {error}")


def send_due(db: Database, transport: Transport, policy: Policy | None = None, *, limit: int = 100) -> Report:
    """Send every message due now, once each (the CLI's `send-notifications`, and each tick of the
    background sender)."""
    policy = policy or Policy()
    token = secrets.token_hex(8)
    report = Report()
    remaining = limit
    while remaining > 0:
        batch = claim(db, token, policy, limit=min(20, remaining))
        if not batch:
            break
        remaining -= len(batch)
        for outgoing in batch:
            try:
                transport.send(email_of(outgoing, policy.sender_address))
                error = None
            except Exception as failure:  # any failure of the transport is an attempt that failed
                error = f"{type(failure).__name__}: {failure}"[:1000]
            record_outcome(db, token, outgoing, error, policy, report, transport.name)
    return report


class BackgroundSender:
    """The server's sender: a daemon thread that sends what is due every interval until stopped."""

    def __init__(self, db: Database, transport: Transport, policy: Policy, interval: float):
        self.db, self.transport, self.policy, self.interval = db, transport, policy, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cellbench-notifications", daemon=True)

    def start(self) -> BackgroundSender:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                report = send_due(self.db, self.transport, self.policy)
                if report.sent or report.deferred or report.dead:
                    log.info("notifications: %s", report)
            except Exception:  # the database away for a moment must not end the thread
                log.exception("the notification sender failed; it tries again in %s s", self.interval)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)  # at most one SMTP conversation (its timeout) and a write


def background(db: Database, settings: Settings) -> BackgroundSender | None:
    """The server's sender, started, when the settings choose a transport; else None."""
    transport = transport_from(settings)
    if transport is None:
        return None
    return BackgroundSender(db, transport, Policy.of(settings), settings.notify_interval_seconds).start()
