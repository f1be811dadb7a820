"""Authentication and page sessions.

Passwords are argon2id hashes. Five failed sign-ins (or failed signature passwords) lock an account
until an administrator unlocks it, and every sign-in, failure and lock is audited.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit
from ..audit import Actor
from ..clock import utcnow
from ..errors import AuthenticationFailed, Forbidden, NotAuthenticated
from ..models import Role, User, WebSession, saved_id
from .rules import POLICY, actor, by_id

# --- authentication ---------------------------------------------------------------------------


def _password_matches(user: User, password: str) -> bool:
    try:
        return POLICY.hasher.verify(user.password_hash, password or "")
    except (VerificationError, InvalidHashError):
        return False


def _count_failure(user_id: int, what: str) -> Callable[[Session], None]:
    """What a wrong password leaves behind, run after the interrupted use case is rolled back."""

    def record(session: Session) -> None:
        user = by_id(session, user_id)
        user.failed_logins += 1
        who = actor(session, user)
        audit.record(session, who, what, "user", user.username, field="failed_logins",
                     old=user.failed_logins - 1, new=user.failed_logins)
        if user.failed_logins >= POLICY.max_failed and not user.locked:
            user.locked = True
            end_sessions(session, user, "locked")
            audit.record(session, who, "user locked", "user", user.username, field="locked", old=False, new=True,
                         reason=f"{user.failed_logins} failed password attempts")
        session.flush()

    return record


def _refuse_unusable(user: User, field: str) -> None:
    """A deactivated or locked account cannot authenticate; the attempt is still audited."""
    if user.active and not user.locked:
        return
    state = "deactivated" if not user.active else "locked"
    message = ("This account is deactivated." if not user.active else
               "This account is locked after too many failed password attempts; an administrator must unlock it.")
    user_id = saved_id(user)

    def record(session: Session) -> None:
        refused = by_id(session, user_id)
        audit.record(session, actor(session, refused), "authentication refused", "user", refused.username,
                     reason=f"account {state}")

    raise AuthenticationFailed(message, field, record)


def login(session: Session, username: str, password: str) -> User:
    username = (username or "").strip()
    user = session.scalars(select(User).where(col(User.username) == username)).first()
    if user is None:
        def record_unknown(s: Session) -> None:
            audit.record(s, Actor(None, "anonymous"), "sign-in failed", "user", username[:64] or "(blank)",
                         reason="unknown username")
        raise AuthenticationFailed("Unknown username or wrong password.", "password", record_unknown)
    _refuse_unusable(user, "username")
    if not _password_matches(user, password):
        raise AuthenticationFailed("Unknown username or wrong password.", "password",
                                   _count_failure(saved_id(user), "sign-in failed"))
    if user.failed_logins:
        user.failed_logins = 0
    audit.record(session, actor(session, user), "signed in", "user", user.username)
    session.flush()
    return user


def reauthenticate(session: Session, user: User, password: str, field: str = "password") -> None:
    """Signing and other critical acts ask for the password again (21 CFR 11.200)."""
    _refuse_unusable(user, field)
    if not _password_matches(user, password):
        raise AuthenticationFailed("Wrong password.", field, _count_failure(saved_id(user), "password check failed"))
    if user.failed_logins:
        user.failed_logins = 0


# The answer to a second person's wrong username or password: the same words either way, so the
# form on someone else's tablet never tells whether a username exists.
COSIGN_REFUSED = "Unknown username or wrong password."


def cosigner(session: Session, username: str, password: str, field: str = "password") -> User:
    """The second person signing on someone else's signed-in device: both components of their
    signature, username and password (21 CFR 11.200(a)(1)), checked without touching the device's
    session. A wrong password counts toward their lock-out exactly as a failed sign-in does."""
    username = (username or "").strip()
    user = session.scalars(select(User).where(col(User.username) == username)).first() if username else None
    if user is None:
        POLICY.hasher.hash(password or "-")  # as slow as a password check: the timing tells nothing either

        def record_unknown(s: Session) -> None:
            audit.record(s, Actor(None, "anonymous"), "signature failed", "user", username[:64] or "(blank)",
                         reason="unknown username")
        raise AuthenticationFailed(COSIGN_REFUSED, field, record_unknown)
    if not _password_matches(user, password):
        raise AuthenticationFailed(COSIGN_REFUSED, field, _count_failure(saved_id(user), "password check failed"))
    _refuse_unusable(user, field)  # only once the password is right: a locked account is no secret to its owner
    return user


# --- page sessions ----------------------------------------------------------------------------


def token_digest(token: str) -> str:
    """What is stored for a cookie or API token: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(session: Session, user: User) -> str:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(WebSession(id=token_digest(token), user_id=saved_id(user), csrf_token=secrets.token_urlsafe(32),
                           created_at=now, last_seen_at=now))
    session.flush()
    return token


def session_and_user(session: Session, token: str | None) -> tuple[WebSession, User] | None:
    """The live page session of a cookie token and its user, in one query (every page asks)."""
    if not token:
        return None
    row = session.execute(select(WebSession, User).join(User, col(User.id) == col(WebSession.user_id))
                          .where(col(WebSession.id) == token_digest(token), col(WebSession.ended_at).is_(None))).first()
    return (row[0], row[1]) if row else None


def is_idle(ws: WebSession, idle: timedelta, now: datetime) -> bool:
    return now - ws.last_seen_at > idle


def idle_limit(roles: frozenset[Role], default_minutes: int, by_role: Mapping[str, int]) -> timedelta:
    """How long a page session may sit unused: the default, lengthened for a role whose work needs
    it (an operator's page must outlast a 45-minute digestion); with several roles, the longest."""
    return timedelta(minutes=max([default_minutes, *(by_role.get(role.value, 0) for role in roles)]))


IDLE_ENDED = "idle timeout"


def renew_session(session: Session, token: str | None, csrf_token: str, password: str) -> tuple[str, str]:
    """A page session that ended only because it sat idle, renewed in place by its own user's
    password: the page's pending save then goes through. The caller proves it holds the page (the
    ended session's cookie and its form token); the password proves who is at the device. Any other
    ending (signed out, locked, deactivated) is final. Returns the new cookie token and form token."""
    ws = session.get(WebSession, token_digest(token)) if token else None
    if ws is None:
        raise NotAuthenticated("Please sign in again.")
    if not csrf_token or not hmac.compare_digest(ws.csrf_token, csrf_token):
        raise Forbidden("This page did not come from this session. Reload it and sign in again.", field="csrf_token")
    if ws.ended_at is not None and ws.end_reason != IDLE_ENDED:
        raise NotAuthenticated("This session was ended; please sign in again.")
    user = by_id(session, ws.user_id)
    _refuse_unusable(user, "password")
    if not _password_matches(user, password):
        raise AuthenticationFailed("Wrong password.", "password", _count_failure(saved_id(user), "sign-in failed"))
    if user.failed_logins:
        user.failed_logins = 0
    if ws.ended_at is None:  # renewed before anything noticed the idle time: end it as a timeout would
        ws.ended_at, ws.end_reason = utcnow(), IDLE_ENDED
    new_token = start_session(session, user)
    renewed = session.get(WebSession, token_digest(new_token))
    assert renewed is not None  # just added
    audit.record(session, actor(session, user), "session renewed", "user", user.username,
                 reason="password re-entered after an idle timeout")
    session.flush()
    return new_token, renewed.csrf_token


def end_session(session: Session, ws: WebSession, reason: str) -> None:
    ws.ended_at, ws.end_reason = utcnow(), reason
    user = by_id(session, ws.user_id)
    action = "signed out" if reason == "signed out" else f"session ended ({reason})"
    audit.record(session, actor(session, user), action, "user", user.username)
    session.flush()


def end_sessions(session: Session, user: User, reason: str) -> None:
    """End every live page session of a user (locked, deactivated, password reset)."""
    now = utcnow()
    live = select(WebSession).where(col(WebSession.user_id) == user.id, col(WebSession.ended_at).is_(None))
    for ws in session.scalars(live):
        ws.ended_at, ws.end_reason = now, reason
