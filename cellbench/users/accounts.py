"""Account management: an administrator creates users and changes their roles and state; each
user changes their own password. Every change is audited, and every second thought gives a reason.
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlmodel import Session, col

from .. import audit, inputs, limits
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, Forbidden, InvalidInput
from ..models import Role, User, UserRole, saved_id
from .rules import POLICY, actor, parse_roles, password_problem, require_role, role_combination_problem, roles_of
from .signin import end_sessions, reauthenticate
from .tokens import revoke_tokens


def create_user(session: Session, by: Actor, username: str, full_name: str, password: str,
                roles: Iterable[str], *, email: str | None = None) -> User:
    require_role(by, Role.admin)
    username, full_name = (username or "").strip(), (full_name or "").strip()
    if not username or not username.replace(".", "").replace("-", "").replace("_", "").isalnum():
        raise InvalidInput("The username is required: letters, digits, '.', '-' and '_' only.", field="username")
    if len(username) > 64:
        raise InvalidInput("The username is at most 64 characters.", field="username")
    if not full_name:
        raise InvalidInput("The printed name is required: it appears on every signature.", field="full_name")
    limits.text(full_name, "full_name", "printed name", "name")
    role_set = parse_roles(roles)
    if not role_set:
        raise InvalidInput("Give the user at least one role.", field="roles")
    if why := role_combination_problem(role_set):
        raise InvalidInput(why, field="roles")
    if why := password_problem(password, username):
        raise InvalidInput(why, field="password")
    address = inputs.optional_email(email)
    if session.scalars(select(col(User.id)).where(col(User.username) == username)).first() is not None:
        raise Conflict(f"The username '{username}' is taken.", field="username")
    now = utcnow()
    user = User(username=username, full_name=full_name, password_hash=POLICY.hasher.hash(password),
                created_at=now, password_changed_at=now, email=address)
    session.add(user)
    session.flush()
    session.add_all(UserRole(user_id=saved_id(user), role=r) for r in role_set)
    audit.record(session, by, "user created", "user", username, field="full_name", new=full_name)
    audit.record(session, by, "roles changed", "user", username, field="roles", new=role_set)
    if address:
        audit.record(session, by, "email set", "user", username, field="email", new=address)
    session.flush()
    return user


def set_email(session: Session, by: Actor, user: User, email: str | None) -> None:
    """Where the notifications for the user's roles go (None: nowhere)."""
    require_role(by, Role.admin)
    address = inputs.optional_email(email)
    if address == user.email:
        return
    before, user.email = user.email, address
    session.flush()
    audit.record(session, by, "email set", "user", user.username, field="email", old=before, new=address)


def set_roles(session: Session, by: Actor, user: User, roles: Iterable[str], reason: str | None) -> None:
    require_role(by, Role.admin)
    new = parse_roles(roles)
    old = roles_of(session, saved_id(user))
    if new == old:
        return
    reason = audit.require_reason(reason)
    if not new:
        raise InvalidInput("Give the user at least one role; deactivate the account instead.", field="roles")
    if why := role_combination_problem(new):
        raise InvalidInput(why, field="roles")
    if by.user_id == user.id:
        raise Forbidden("Nobody may change their own roles.")
    session.execute(delete(UserRole).where(col(UserRole.user_id) == user.id))
    session.add_all(UserRole(user_id=saved_id(user), role=r) for r in new)
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
    end_sessions(session, user, "deactivated")
    revoke_tokens(session, user)
    audit.record(session, by, "user deactivated", "user", user.username, field="active", old=True, new=False,
                 reason=reason)
    session.flush()


def reactivate(session: Session, by: Actor, user: User, reason: str | None) -> None:
    require_role(by, Role.admin)
    reason = audit.require_reason(reason)
    if user.active:
        raise InvalidInput("The account is already active.", field="username")
    user.active = True
    audit.record(session, by, "user reactivated", "user", user.username, field="active", old=False, new=True,
                 reason=reason)
    session.flush()


def unlock(session: Session, by: Actor, user: User, reason: str | None) -> None:
    require_role(by, Role.admin)
    reason = audit.require_reason(reason)
    if not user.locked:
        raise InvalidInput("The account is not locked.", field="username")
    user.locked, user.locked_at, user.failed_logins = False, None, 0
    audit.record(session, by, "user unlocked", "user", user.username, field="locked", old=True, new=False,
                 reason=reason)
    session.flush()


def reset_password(session: Session, by: Actor, user: User, new_password: str, reason: str | None) -> None:
    """An administrator sets a one-off password, e.g. after a forgotten one."""
    require_role(by, Role.admin)
    reason = audit.require_reason(reason)
    if why := password_problem(new_password, user.username):
        raise InvalidInput(why, field="password")
    user.password_hash = POLICY.hasher.hash(new_password)
    user.password_changed_at = utcnow()
    audit.record(session, by, "password reset", "user", user.username, field="password", reason=reason)
    _end_access(session, by, user, "password reset", keep=None)
    session.flush()


def _end_access(session: Session, by: Actor, user: User, why: str, keep: str | None) -> None:
    """A new password ends every way in that the old one opened: the user's other page sessions
    and all their API tokens (a stolen token must not outlive the password it was made under)."""
    sessions, tokens = end_sessions(session, user, why, keep=keep), revoke_tokens(session, user)
    audit.record(session, by, "access ended", "user", user.username, field="sessions_and_tokens",
                 new=f"{sessions} other session(s) ended, {tokens} API token(s) revoked", reason=why)


def change_own_password(session: Session, user: User, current: str, new_password: str, repeat: str,
                        keep_session: str | None = None) -> None:
    """The user's own new password; their other page sessions (all but `keep_session`, the one
    asking) end and their API tokens are revoked."""
    reauthenticate(session, user, current, field="current_password")
    if new_password != repeat:
        raise InvalidInput("The two new passwords differ.", field="repeat_password")
    if why := password_problem(new_password, user.username):
        raise InvalidInput(why, field="new_password")
    if current == new_password:
        raise InvalidInput("Choose a password different from the current one.", field="new_password")
    user.password_hash = POLICY.hasher.hash(new_password)
    user.password_changed_at = utcnow()
    who = actor(session, user)
    audit.record(session, who, "password changed", "user", user.username, field="password")
    _end_access(session, who, user, "password changed", keep=keep_session)
    session.flush()
