"""Users, roles, passwords, page sessions and API tokens.

Users are never deleted, only deactivated. Passwords are argon2id hashes. Five failed sign-ins
(or failed signature passwords) lock an account until an administrator unlocks it, and every
sign-in, failure and lock is audited.
"""
from __future__ import annotations

import getpass
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, bindparam, delete, select
from sqlmodel import Session

from . import audit
from .audit import Actor
from .clock import utcnow
from .errors import AuthenticationFailed, Conflict, Forbidden, InvalidInput, NotFound
from .models import BLINDED_ROLES, ApiToken, Role, User, UserRole, WebSession


@dataclass
class Policy:
    min_length: int = 12
    max_failed: int = 5
    hasher: PasswordHasher = PasswordHasher()  # argon2id with the library's recommended costs


_policy = Policy()


def configure(min_length: int, max_failed: int, hasher: PasswordHasher | None = None) -> None:
    global _policy
    _policy = Policy(min_length, max_failed, hasher or PasswordHasher())


def cli_actor() -> Actor:
    """The command line acts for whoever runs it on the server: the system administrator."""
    return Actor(None, f"command line ({getpass.getuser()})", frozenset({Role.admin}))


# --- rules ----------------------------------------------------------------------------------


def parse_roles(values: Iterable[str], field: str = "roles") -> frozenset[Role]:
    roles = set()
    for value in values:
        try:
            roles.add(Role(value.strip()))
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise InvalidInput(f"Unknown role '{value}'. Known roles: {known}.", field=field) from None
    return frozenset(roles)


def role_combination_problem(roles: frozenset[Role]) -> str | None:
    """Segregation of duties: nobody may be blinded and unblinded at once."""
    blinded = sorted(r.value for r in roles & BLINDED_ROLES)
    unblinded = sorted(r.value for r in roles - BLINDED_ROLES)
    if blinded and unblinded:
        return (f"A user cannot hold a blinded role ({', '.join(blinded)}) together with an unblinded "
                f"role ({', '.join(unblinded)}): create separate accounts.")
    return None


def password_problem(password: str, username: str) -> str | None:
    if len(password) < _policy.min_length:
        return f"The password must be at least {_policy.min_length} characters long."
    if username and username.lower() in password.lower():
        return "The password must not contain the username."
    return None


def require_role(actor: Actor, *roles: Role) -> None:
    if not actor.roles & set(roles):
        names = " or ".join(r.value for r in roles)
        raise Forbidden(f"This needs the {names} role.")


# --- reading ----------------------------------------------------------------------------------


def roles_of(session: Session, user_id: int) -> frozenset[Role]:
    return frozenset(Role(r) for r in session.scalars(select(UserRole.role).where(UserRole.user_id == user_id)))


def actor(session: Session, user: User) -> Actor:
    return Actor(user.id, user.full_name, roles_of(session, user.id))


def by_username(session: Session, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(f"No user '{username}'.", field="username")
    return user


def all_users(session: Session) -> list[tuple[User, frozenset[Role]]]:
    users = list(session.scalars(select(User).order_by(User.username)))
    roles: dict[int, set[Role]] = {}
    for user_id, role in session.execute(select(UserRole.user_id, UserRole.role)):
        roles.setdefault(user_id, set()).add(Role(role))
    return [(u, frozenset(roles.get(u.id, ()))) for u in users]


# --- account management (admin) ---------------------------------------------------------------


def create_user(session: Session, by: Actor, username: str, full_name: str, password: str,
                roles: Iterable[str]) -> User:
    require_role(by, Role.admin)
    username, full_name = (username or "").strip(), (full_name or "").strip()
    if not username or not username.replace(".", "").replace("-", "").replace("_", "").isalnum():
        raise InvalidInput("The username is required: letters, digits, '.', '-' and '_' only.", field="username")
    if len(username) > 64:
        raise InvalidInput("The username is at most 64 characters.", field="username")
    if not full_name:
        raise InvalidInput("The printed name is required: it appears on every signature.", field="full_name")
    role_set = parse_roles(roles)
    if not role_set:
        raise InvalidInput("Give the user at least one role.", field="roles")
    if why := role_combination_problem(role_set):
        raise InvalidInput(why, field="roles")
    if why := password_problem(password, username):
        raise InvalidInput(why, field="password")
    if session.scalars(select(User.id).where(User.username == username)).first() is not None:
        raise Conflict(f"The username '{username}' is taken.", field="username")
    now = utcnow()
    user = User(username=username, full_name=full_name, password_hash=_policy.hasher.hash(password),
                created_at=now, password_changed_at=now)
    session.add(user)
    session.flush()
    session.add_all(UserRole(user_id=user.id, role=r.value) for r in role_set)
    audit.record(session, by, "user created", "user", username, field="full_name", new=full_name)
    audit.record(session, by, "roles changed", "user", username, field="roles", new=role_set)
    session.flush()
    return user


def set_roles(session: Session, by: Actor, user: User, roles: Iterable[str], reason: str | None) -> None:
    require_role(by, Role.admin)
    new = parse_roles(roles)
    old = roles_of(session, user.id)
    if new == old:
        return
    reason = audit.require_reason(reason)
    if not new:
        raise InvalidInput("Give the user at least one role; deactivate the account instead.", field="roles")
    if why := role_combination_problem(new):
        raise InvalidInput(why, field="roles")
    if by.user_id == user.id:
        raise Forbidden("Nobody may change their own roles.")
    session.execute(delete(UserRole).where(UserRole.user_id == user.id))
    session.add_all(UserRole(user_id=user.id, role=r.value) for r in new)
    audit.record(session, by, "roles changed", "user", user.username, field="roles", old=old, new=new, reason=reason)
    session.flush()


def deactivate(session: Session, by: Actor, user: User, reason: str | None) -> None:
    require_role(by, Role.admin)
    reason = audit.require_reason(reason)
    if by.user_id == user.id:
        raise Forbidden("Nobody may deactivate their own account.")
    if not user.active:
        raise InvalidInput("The account is already deactivated.", field="username")
    user.active = False
    _end_sessions(session, user, "deactivated")
    _revoke_tokens(session, user)
    audit.record(session, by, "user deactivated", "user", user.username, field="active", old=True, new=False, reason=reason)
    session.flush()


def reactivate(session: Session, by: Actor, user: User, reason: str | None) -> None:
    require_role(by, Role.admin)
    reason = audit.require_reason(reason)
    if user.active:
        raise InvalidInput("The account is already active.", field="username")
    user.active = True
    audit.record(session, by, "user reactivated", "user", user.username, field="active", old=False, new=True, reason=reason)
    session.flush()


def unlock(session: Session, by: Actor, user: User, reason: str | None) -> None:
    require_role(by, Role.admin)
    reason = audit.require_reason(reason)
    if not user.locked:
        raise InvalidInput("The account is not locked.", field="username")
    user.locked, user.failed_logins = False, 0
    audit.record(session, by, "user unlocked", "user", user.username, field="locked", old=True, new=False, reason=reason)
    session.flush()


def reset_password(session: Session, by: Actor, user: User, new_password: str, reason: str | None) -> None:
    """An administrator sets a one-off password, e.g. after a forgotten one."""
    require_role(by, Role.admin)
    reason = audit.require_reason(reason)
    if why := password_problem(new_password, user.username):
        raise InvalidInput(why, field="password")
    user.password_hash = _policy.hasher.hash(new_password)
    user.password_changed_at = utcnow()
    _end_sessions(session, user, "password reset")
    audit.record(session, by, "password reset", "user", user.username, field="password", reason=reason)
    session.flush()


def change_own_password(session: Session, user: User, current: str, new_password: str, repeat: str) -> None:
    reauthenticate(session, user, current, field="current_password")
    if new_password != repeat:
        raise InvalidInput("The two new passwords differ.", field="repeat_password")
    if why := password_problem(new_password, user.username):
        raise InvalidInput(why, field="new_password")
    if current == new_password:
        raise InvalidInput("Choose a password different from the current one.", field="new_password")
    user.password_hash = _policy.hasher.hash(new_password)
    user.password_changed_at = utcnow()
    audit.record(session, actor(session, user), "password changed", "user", user.username, field="password")
    session.flush()


# --- authentication ---------------------------------------------------------------------------


def _password_matches(user: User, password: str) -> bool:
    try:
        return _policy.hasher.verify(user.password_hash, password or "")
    except (VerificationError, InvalidHashError):
        return False


def _count_failure(user_id: int, what: str) -> callable:
    """What a wrong password leaves behind, run after the interrupted use case is rolled back."""

    def record(session: Session) -> None:
        user = session.get(User, user_id)
        user.failed_logins += 1
        who = actor(session, user)
        audit.record(session, who, what, "user", user.username, field="failed_logins",
                     old=user.failed_logins - 1, new=user.failed_logins)
        if user.failed_logins >= _policy.max_failed and not user.locked:
            user.locked = True
            _end_sessions(session, user, "locked")
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
    user_id = user.id

    def record(session: Session) -> None:
        refused = session.get(User, user_id)
        audit.record(session, actor(session, refused), "authentication refused", "user", refused.username,
                     reason=f"account {state}")

    raise AuthenticationFailed(message, field, record)


def login(session: Session, username: str, password: str) -> User:
    username = (username or "").strip()
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        def record_unknown(s: Session) -> None:
            audit.record(s, Actor(None, "anonymous"), "sign-in failed", "user", username[:64] or "(blank)",
                         reason="unknown username")
        raise AuthenticationFailed("Unknown username or wrong password.", "password", record_unknown)
    _refuse_unusable(user, "username")
    if not _password_matches(user, password):
        raise AuthenticationFailed("Unknown username or wrong password.", "password",
                                   _count_failure(user.id, "sign-in failed"))
    if user.failed_logins:
        user.failed_logins = 0
    audit.record(session, actor(session, user), "signed in", "user", user.username)
    session.flush()
    return user


def reauthenticate(session: Session, user: User, password: str, field: str = "password") -> None:
    """Signing and other critical acts ask for the password again (21 CFR 11.200)."""
    _refuse_unusable(user, field)
    if not _password_matches(user, password):
        raise AuthenticationFailed("Wrong password.", field, _count_failure(user.id, "password check failed"))
    if user.failed_logins:
        user.failed_logins = 0


# --- page sessions ----------------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(session: Session, user: User) -> str:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(WebSession(id=_digest(token), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
                           created_at=now, last_seen_at=now))
    session.flush()
    return token


def session_and_user(session: Session, token: str | None) -> tuple[WebSession, User] | None:
    """The live page session of a cookie token and its user, in one query (every page asks)."""
    if not token:
        return None
    row = session.execute(select(WebSession, User).join(User, User.id == WebSession.user_id)
                          .where(WebSession.id == _digest(token), WebSession.ended_at.is_(None))).first()
    return (row[0], row[1]) if row else None


def is_idle(ws: WebSession, idle: timedelta, now: datetime) -> bool:
    return now - ws.last_seen_at > idle


def end_session(session: Session, ws: WebSession, reason: str) -> None:
    ws.ended_at, ws.end_reason = utcnow(), reason
    user = session.get(User, ws.user_id)
    action = "signed out" if reason == "signed out" else f"session ended ({reason})"
    audit.record(session, actor(session, user), action, "user", user.username)
    session.flush()


def _end_sessions(session: Session, user: User, reason: str) -> None:
    now = utcnow()
    for ws in session.scalars(select(WebSession).where(WebSession.user_id == user.id, WebSession.ended_at.is_(None))):
        ws.ended_at, ws.end_reason = now, reason


# --- API tokens -------------------------------------------------------------------------------

TOKEN_PREFIX = "cbt_"


def create_token(session: Session, by: Actor, user: User, name: str) -> str:
    """Returns the token once; only its hash is kept."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("Name the token after the integration that will use it.", field="name")
    if by.user_id != user.id:
        require_role(by, Role.admin)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=name[:100], token_hash=_digest(token), prefix=token[:10],
                         created_at=utcnow()))
    audit.record(session, by, "API token created", "user", user.username, field="api_token", new=f"{name} ({token[:10]}…)")
    session.flush()
    return token


def revoke_token(session: Session, by: Actor, token_id: int) -> None:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound("No such API token.", field="token")
    owner = session.get(User, row.user_id)
    if by.user_id != owner.id:
        require_role(by, Role.admin)
    if row.revoked_at is not None:
        raise InvalidInput("The token is already revoked.", field="token")
    row.revoked_at = utcnow()
    audit.record(session, by, "API token revoked", "user", owner.username, field="api_token", old=f"{row.name} ({row.prefix}…)")
    session.flush()


def _revoke_tokens(session: Session, user: User) -> None:
    now = utcnow()
    for row in session.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))):
        row.revoked_at = now


def tokens_of(session: Session, user: User) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)))


_TOKEN_ACTOR = (select(User.id, User.full_name, UserRole.role).join(ApiToken, ApiToken.user_id == User.id)
                .outerjoin(UserRole, UserRole.user_id == User.id)
                .where(ApiToken.token_hash == bindparam("digest"), ApiToken.revoked_at.is_(None),
                       User.active.is_(True), User.locked.is_(False)))


def actor_for_token(conn: Connection, token: str) -> Actor | None:
    """The actor of a live API token in one prebuilt query, for the scan's hot path."""
    rows = conn.execute(_TOKEN_ACTOR, {"digest": _digest(token)}).all()
    if not rows:
        return None
    return Actor(rows[0][0], rows[0][1], frozenset(Role(role) for _, _, role in rows if role))


def user_for_token(session: Session, token: str) -> User | None:
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == _digest(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    user = session.get(User, row.user_id)
    return user if user.active and not user.locked else None
