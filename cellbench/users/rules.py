"""The account rules (password policy, roles and their segregation) and who is who.

Users are never deleted, only deactivated. A user holding a blinded role together with an
unblinded one is refused (segregation of duties).
"""
from __future__ import annotations

import getpass
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from sqlalchemy import event, select
from sqlalchemy.orm import ORMExecuteState, UOWTransaction
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col

from .. import pagination
from ..audit import Actor
from ..errors import Forbidden, InvalidInput, NotFound
from ..models import BLINDED_ROLES, Role, User, UserRole, UserSite, UserStudy, saved_id
from .scope import scope_of
from .strength import weakness

if TYPE_CHECKING:
    from ..config import Settings


@dataclass
class Policy:
    min_length: int = 12
    max_failed: int = 5
    # argon2id with the library's recommended costs
    hasher: PasswordHasher = field(default_factory=PasswordHasher)
    # A lock from failed passwords lifts itself after this long: anyone can type five wrong
    # passwords, and an account locked until an administrator comes is a door anyone can shut.
    lockout_minutes: int = 15
    # Failed sign-ins allowed per typed username and per client address within the window
    # (sliding); beyond them every attempt gets the same refusal and no password is checked.
    window_minutes: int = 15
    max_per_username: int = 10
    max_per_address: int = 30
    # The key of the hashes that stand for typed usernames and client addresses (the app's secret
    # key); a random one per process when none is given.
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))


# One instance, changed in place by configure(), so every part of users reads the same policy.
POLICY = Policy()


def configure(min_length: int, max_failed: int, hasher: PasswordHasher | None = None, *,
              lockout_minutes: int = 15, window_minutes: int = 15, max_per_username: int = 10,
              max_per_address: int = 30, secret: str = "") -> None:
    POLICY.min_length, POLICY.max_failed, POLICY.hasher = min_length, max_failed, hasher or PasswordHasher()
    POLICY.lockout_minutes, POLICY.window_minutes = lockout_minutes, window_minutes
    POLICY.max_per_username, POLICY.max_per_address = max_per_username, max_per_address
    POLICY.secret = secret.encode() if secret else secrets.token_bytes(32)


def signin_settings(settings: Settings) -> dict[str, Any]:
    """configure()'s keywords for sign-in, from the settings (the app and the command line)."""
    return {"lockout_minutes": settings.lockout_minutes, "window_minutes": settings.signin_window_minutes,
            "max_per_username": settings.signin_max_per_username,
            "max_per_address": settings.signin_max_per_address, "secret": settings.secret_key}


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
    if len(password) < POLICY.min_length:
        return f"The password must be at least {POLICY.min_length} characters long."
    if username and username.lower() in password.lower():
        return "The password must not contain the username."
    return weakness(password)


def require_role(actor: Actor, *roles: Role) -> None:
    if not actor.roles & set(roles):
        names = " or ".join(r.value for r in roles)
        raise Forbidden(f"This needs the {names} role.")


# --- reading ----------------------------------------------------------------------------------


def roles_of(session: Session, user_id: int) -> frozenset[Role]:
    query = select(col(UserRole.role)).where(col(UserRole.user_id) == user_id)
    return frozenset(Role(r) for r in session.scalars(query))


def actor(session: Session, user: User) -> Actor:
    """The user as an actor, with the sites and studies a site-role user works for (users.scope).

    Kept per transaction: a step entry asks for its operator's actor in every service call and
    signature (3,200 reads of roles and links in the demo build, issue 18). Any write to a user,
    their roles or their links, and the transaction's end, forget every kept actor
    (_forget_actors), so a role granted or removed is seen by the next call as before."""
    kept: dict[int, Actor] = session.info.setdefault(_ACTORS, {})
    user_id = saved_id(user)
    known = kept.get(user_id)
    if known is None or known.name != user.full_name:
        roles = roles_of(session, user_id)
        sites, studies = scope_of(session, user_id, roles)
        known = kept[user_id] = Actor(user_id, user.full_name, roles, sites, studies)
    return known


_ACTORS = "cellbench.users.actors"
# What an actor is read from besides the user's printed name (checked on every call): a change to
# any of them makes every kept actor stale.
_ACTOR_SOURCES = (UserRole, UserSite, UserStudy)


def _forget(session: OrmSession, *_: object) -> None:
    session.info.pop(_ACTORS, None)


@event.listens_for(OrmSession, "after_flush")
def _forget_after_writes(session: OrmSession, _flush: UOWTransaction) -> None:
    if _ACTORS in session.info and any(isinstance(row, _ACTOR_SOURCES)
                                       for row in (*session.new, *session.dirty, *session.deleted)):
        _forget(session)


@event.listens_for(OrmSession, "do_orm_execute")
def _forget_after_bulk_writes(state: ORMExecuteState) -> None:
    """An UPDATE or DELETE statement on those tables (users.set_roles deletes the old roles so)."""
    if (_ACTORS in state.session.info and not state.is_select
            and (mapper := state.bind_mapper) is not None and issubclass(mapper.class_, _ACTOR_SOURCES)):
        _forget(state.session)


event.listen(OrmSession, "after_commit", _forget)
event.listen(OrmSession, "after_soft_rollback", _forget)  # a savepoint's rollback may undo a role change


def by_username(session: Session, username: str) -> User:
    user = session.scalars(select(User).where(col(User.username) == username)).first()
    if user is None:
        raise NotFound(f"No user '{username}'.", field="username")
    return user


def by_id(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.", field="user")
    return user


def _with_roles(session: Session, users: list[User], every: bool) -> list[tuple[User, frozenset[Role]]]:
    query = select(col(UserRole.user_id), col(UserRole.role))
    if not every:
        query = query.where(col(UserRole.user_id).in_([saved_id(u) for u in users]))
    roles: dict[int, set[Role]] = {}
    for user_id, role in session.execute(query):
        roles.setdefault(user_id, set()).add(Role(role))
    return [(u, frozenset(roles.get(saved_id(u), ()))) for u in users]


def all_users(session: Session) -> list[tuple[User, frozenset[Role]]]:
    return _with_roles(session, list(session.scalars(select(User).order_by(col(User.username)))), every=True)


USER_ORDER = pagination.Order("users", (col(User.username),))  # unique


def user_page(session: Session, ask: pagination.Ask) -> pagination.Page[tuple[User, frozenset[Role]]]:
    """A page of users in username order, each with its roles."""
    found = pagination.page(session, select(User), USER_ORDER, ask)
    return pagination.Page(_with_roles(session, found.rows, every=False), found.next, found.first)
