"""Authentication and page sessions.

Passwords are argon2id hashes. Five failed sign-ins (or failed signature passwords) lock an account
for a set time (or until an administrator unlocks it sooner), and every sign-in, failure and lock is
audited. Sign-in answers every failure with the same words after the same one argon2
verification, and is rate limited per typed username and per client address (`throttle`).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, String, bindparam, cast, func, inspect, select
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import instance_state
from sqlmodel import Session, col

from .. import audit
from ..audit import Actor
from ..clock import utcnow
from ..errors import AuthenticationFailed, Forbidden, NotAuthenticated
from ..models import Role, User, UserRole, UserSite, UserStudy, WebSession, saved_id
from . import throttle
from .rules import POLICY, actor, by_id
from .scope import is_scoped

# --- authentication ---------------------------------------------------------------------------

# The one answer to every failed sign-in (unknown name, wrong password, locked, deactivated, too
# many attempts): the form tells a guesser nothing about which usernames exist or their state.
SIGNIN_REFUSED = "Sign-in failed: the username or password is wrong, or this account cannot sign in now."

_dummy: tuple[object, str] | None = None


def _dummy_hash() -> str:
    """A hash of the configured cost, made once per hasher, for unknown names to be checked
    against: an unknown name then costs the same one argon2 verification as a known one."""
    global _dummy
    if _dummy is None or _dummy[0] is not POLICY.hasher:
        _dummy = (POLICY.hasher, POLICY.hasher.hash(secrets.token_urlsafe(16)))
    return _dummy[1]


def _verify(password_hash: str, password: str) -> bool:
    try:
        return POLICY.hasher.verify(password_hash, password or "")
    except (VerificationError, InvalidHashError):
        return False


def _password_matches(user: User | None, password: str) -> bool:
    """Exactly one argon2 verification, whether or not the user exists."""
    if user is None:
        _verify(_dummy_hash(), password)
        return False
    return _verify(user.password_hash, password)


def _lock_expired(user: User, now: datetime) -> bool:
    return (user.locked and user.locked_at is not None
            and now - user.locked_at >= timedelta(minutes=POLICY.lockout_minutes))


def _lift_expired_lock(session: Session, user: User, now: datetime) -> None:
    """A lock from failed passwords lifts itself after the set time (an administrator may lift it
    sooner); the lifting is audited as the system's act."""
    if not _lock_expired(user, now):
        return
    user.locked, user.locked_at, user.failed_logins = False, None, 0
    audit.record(session, Actor(None, "system"), "user unlocked", "user", user.username, field="locked",
                 old=True, new=False, reason=f"lock expired after {POLICY.lockout_minutes} minutes")
    session.flush()


def _count_failure(user_id: int, what: str) -> Callable[[Session], None]:
    """What a wrong password leaves behind, run after the interrupted use case is rolled back."""

    def record(session: Session) -> None:
        user = by_id(session, user_id)
        now = utcnow()
        _lift_expired_lock(session, user, now)
        who = actor(session, user)
        if user.locked:  # already locked: the attempt is on the trail, the count is moot
            audit.record(session, who, what, "user", user.username, reason="account locked")
            return
        user.failed_logins += 1
        audit.record(session, who, what, "user", user.username, field="failed_logins",
                     old=user.failed_logins - 1, new=user.failed_logins)
        if user.failed_logins >= POLICY.max_failed:
            user.locked, user.locked_at = True, now
            end_sessions(session, user, "locked")
            audit.record(session, who, "user locked", "user", user.username, field="locked", old=False, new=True,
                         reason=f"{user.failed_logins} failed password attempts; lifts after "
                                f"{POLICY.lockout_minutes} minutes")
        session.flush()

    return record


def _unusable(user: User) -> str | None:
    if not user.active:
        return "account deactivated"
    return "account locked" if user.locked else None


def _refuse_unusable(session: Session, user: User, field: str) -> None:
    """A deactivated or locked account cannot authenticate; the attempt is still audited."""
    _lift_expired_lock(session, user, utcnow())
    state = _unusable(user)
    if state is None:
        return
    message = ("This account is deactivated." if not user.active else
               "This account is locked after too many failed password attempts; it unlocks after "
               f"{POLICY.lockout_minutes} minutes, or an administrator can unlock it.")
    raise AuthenticationFailed(message, field, _refused(saved_id(user), state))


def _refused(user_id: int, state: str) -> Callable[[Session], None]:
    def record(session: Session) -> None:
        refused = by_id(session, user_id)
        audit.record(session, actor(session, refused), "authentication refused", "user", refused.username,
                     reason=state)

    return record


def _failed_signin(user_id: int | None, name_key: str, addr_key: str, why: str | None,
                   limited: bool) -> Callable[[Session], None]:
    """A failed sign-in: the attempt counted for rate limiting and audited. An unknown name is
    audited by its keyed hash only: a password typed into the username field is never kept."""
    def record(session: Session) -> None:
        throttle.remember_failure(session, name_key, addr_key, utcnow())
        if limited:  # no password was checked; auditing each would let a flood grow the trail
            return
        if user_id is None:
            audit.record(session, Actor(None, "anonymous"), "sign-in failed", "user", "(unknown user)",
                         reason=f"unknown username (key {name_key[:16]})")
        elif why is None:
            _count_failure(user_id, "sign-in failed")(session)
        else:
            _refused(user_id, why)(session)

    return record


def login(session: Session, username: str, password: str, address: str | None = None) -> User:
    """The user whose username and password these are, or AuthenticationFailed with one message
    for every reason. Every attempt that is not rate limited costs exactly one argon2 verification."""
    username = (username or "").strip()
    keys = throttle.name_key(username), throttle.address_key(address)
    if throttle.limited(session, *keys, utcnow()):
        raise AuthenticationFailed(SIGNIN_REFUSED, "password", _failed_signin(None, *keys, None, limited=True))
    user = session.scalars(select(User).where(col(User.username) == username)).first() if username else None
    matches = _password_matches(user, password)
    if user is None:
        raise AuthenticationFailed(SIGNIN_REFUSED, "password", _failed_signin(None, *keys, None, limited=False))
    _lift_expired_lock(session, user, utcnow())
    why = _unusable(user)
    if not matches or why is not None:
        raise AuthenticationFailed(SIGNIN_REFUSED, "password",
                                   _failed_signin(saved_id(user), *keys, why, limited=False))
    if user.failed_logins:
        user.failed_logins = 0
    audit.record(session, actor(session, user), "signed in", "user", user.username)
    session.flush()
    return user


def reauthenticate(session: Session, user: User, password: str, field: str = "password") -> None:
    """Signing and other critical acts ask for the password again (21 CFR 11.200)."""
    _refuse_unusable(session, user, field)
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
    matches = _password_matches(user, password)  # one verification either way: the timing tells nothing
    if user is None:
        def record_unknown(s: Session) -> None:
            audit.record(s, Actor(None, "anonymous"), "signature failed", "user", "(unknown user)",
                         reason=f"unknown username (key {throttle.name_key(username)[:16]})")
        raise AuthenticationFailed(COSIGN_REFUSED, field, record_unknown)
    if not matches:
        raise AuthenticationFailed(COSIGN_REFUSED, field, _count_failure(saved_id(user), "password check failed"))
    # only once the password is right: a locked account is no secret to its owner
    _refuse_unusable(session, user, field)
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


def _aggregated(column: Any, owner: Any) -> Any:
    """The user's rows of a link table as one "a,b,c" text (NULL for none), read by its primary key."""
    return (select(func.aggregate_strings(cast(column, String), ",")).where(owner == col(WebSession.user_id))
            .scalar_subquery())


_SESSION_COLUMNS = tuple(inspect(WebSession).column_attrs)
_USER_COLUMNS = tuple(inspect(User).column_attrs)
# Every page asks: the live session of a cookie, its user, the user's roles, sites and studies, in one
# statement built once. Each part is found by an index (the session by its key, the user by its id,
# the links by their primary keys, which begin with the user id), so it costs the same with a
# thousand users as with ten, and one row comes back whatever the user holds.
_LIVE_SESSION = (select(*(a.columns[0] for a in _SESSION_COLUMNS), *(a.columns[0] for a in _USER_COLUMNS),
                        _aggregated(UserRole.role, UserRole.user_id), _aggregated(UserSite.site_id, UserSite.user_id),
                        _aggregated(UserStudy.study_id, UserStudy.user_id))
                 .join(User, col(User.id) == col(WebSession.user_id))
                 .where(col(WebSession.id) == bindparam("digest"), col(WebSession.ended_at).is_(None)))


def _detached(model: type[Any], attrs: tuple[Any, ...], values: Sequence[Any]) -> Any:
    """A row as the detached instance a closed session would have left: routes read it, and merge it
    into a session of their own to change it. Built as the ORM builds a loaded row (a new instance,
    the column values put in its state), not through the model's constructor: its pydantic set-up
    was half of the session lookup's time, on every page, for values the database already typed."""
    instance = inspect(model).class_manager.new_instance()
    instance_state(instance).dict.update(zip((attr.key for attr in attrs), values, strict=True))
    make_transient_to_detached(instance)
    return instance


LiveSession = tuple[WebSession, User, Actor]


def _ids(text: str | None) -> frozenset[int]:
    return frozenset(int(part) for part in text.split(",")) if text else frozenset()


def live_session(conn: Connection, token: str | None) -> LiveSession | None:
    """The live page session of a cookie token, its user and the user as an actor, in one read."""
    if not token:
        return None
    row = conn.execute(_LIVE_SESSION, {"digest": token_digest(token)}).first()
    if row is None:
        return None
    split = len(_SESSION_COLUMNS)
    ws = _detached(WebSession, _SESSION_COLUMNS, row[:split])
    user = _detached(User, _USER_COLUMNS, row[split:split + len(_USER_COLUMNS)])
    roles_text, sites_text, studies_text = row[-3:]
    roles = frozenset(Role(role) for role in roles_text.split(",")) if roles_text else frozenset()
    # As users.actor: the links count for a site-role user only (users.scope).
    sites, studies = (_ids(sites_text), _ids(studies_text)) if is_scoped(roles) else (None, None)
    return ws, user, Actor(user.id, user.full_name, roles, sites, studies)


def is_idle(ws: WebSession, idle: timedelta, now: datetime) -> bool:
    return now - ws.last_seen_at > idle


# Writing last_seen_at on every request would make every page view a write. It is written when it
# lags by a twentieth of the idle limit (at most a minute): a session then ends at most 5 % early
# (45 s of 15 minutes, 3 s of one), and a user active every 20 s under a one-minute limit is
# written every request and never ended. A whole minute's lag ended that user at one minute.
def touch_due(ws: WebSession, idle: timedelta, now: datetime) -> bool:
    return now - ws.last_seen_at >= min(timedelta(seconds=60), idle / 20)


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
    _refuse_unusable(session, user, "password")
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


def end_sessions(session: Session, user: User, reason: str, keep: str | None = None) -> int:
    """End every live page session of a user (locked, deactivated, password reset) but `keep`
    (the id of the session changing its own password); returns how many were ended."""
    now = utcnow()
    live = select(WebSession).where(col(WebSession.user_id) == user.id, col(WebSession.ended_at).is_(None),
                                    col(WebSession.id) != (keep or ""))
    ended = 0
    for ws in session.scalars(live):
        ws.ended_at, ws.end_reason = now, reason
        ended += 1
    return ended
