"""API tokens: shown once when created, kept only as a hash, revoked but never deleted."""
from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, Integer, Row, String, bindparam, literal, select, union_all
from sqlmodel import Session, col

from .. import audit
from ..audit import Actor
from ..clock import utcnow
from ..errors import InvalidInput, NotFound
from ..models import ApiToken, Role, User, UserRole, UserSite, UserStudy, saved_id
from .rules import by_id, require_role
from .scope import is_scoped
from .signin import token_digest

TOKEN_PREFIX = "cbt_"  # noqa: S105 - a public marker of cellbench tokens, not a secret


def create_token(session: Session, by: Actor, user: User, name: str) -> str:
    """Returns the token once; only its hash is kept."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("Name the token after the integration that will use it.", field="name")
    if by.user_id != user.id:
        require_role(by, Role.admin)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=saved_id(user), name=name[:100], token_hash=token_digest(token), prefix=token[:10],
                         created_at=utcnow()))
    audit.record(session, by, "API token created", "user", user.username, field="api_token",
                 new=f"{name} ({token[:10]}…)")
    session.flush()
    return token


def revoke_token(session: Session, by: Actor, token_id: int) -> None:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound("No such API token.", field="token")
    owner = by_id(session, row.user_id)
    if by.user_id != owner.id:
        require_role(by, Role.admin)
    if row.revoked_at is not None:
        raise InvalidInput("The token is already revoked.", field="token")
    row.revoked_at = utcnow()
    audit.record(session, by, "API token revoked", "user", owner.username, field="api_token",
                 old=f"{row.name} ({row.prefix}…)")
    session.flush()


def revoke_tokens(session: Session, user: User) -> int:
    """Revoke every live token of a user (a deactivated account, a new password); returns how many."""
    now = utcnow()
    live = select(ApiToken).where(col(ApiToken.user_id) == user.id, col(ApiToken.revoked_at).is_(None))
    revoked = 0
    for row in session.scalars(live):
        row.revoked_at = now
        revoked += 1
    return revoked


# What a list of a user's tokens shows (never the hash), as plain rows: the account page lists them
# at every visit, and building ORM objects for them cost more than the query.
_TOKEN_LIST = (select(col(ApiToken.id), col(ApiToken.name), col(ApiToken.prefix), col(ApiToken.created_at),
                      col(ApiToken.revoked_at))
               .where(col(ApiToken.user_id) == bindparam("user_id")).order_by(col(ApiToken.id)))


def tokens_of(session: Session, user: User) -> Sequence[Row[int | None, str, str, datetime, datetime | None]]:
    """The user's tokens, oldest first: id, name, prefix, created_at, revoked_at."""
    return session.connection().execute(_TOKEN_LIST, {"user_id": user.id}).all()


# The live token's user, and its roles, sites and studies, in one statement: one round trip on
# PostgreSQL, where the gate identifies every API request with it (the scan's hot path). A row per
# role (NULL role for a user without one), site and study, each tagged with its kind.
_LIVE = (select(col(User.id).label("user_id"), col(User.full_name).label("name"))
         .join(ApiToken, col(ApiToken.user_id) == col(User.id))
         .where(col(ApiToken.token_hash) == bindparam("digest"), col(ApiToken.revoked_at).is_(None),
                col(User.active).is_(True), col(User.locked).is_(False))
         .cte("live"))
_TOKEN_ACTOR = union_all(
    select(_LIVE.c.user_id, _LIVE.c.name, literal("role"), col(UserRole.role), literal(None, Integer))
    .select_from(_LIVE).outerjoin(UserRole, col(UserRole.user_id) == _LIVE.c.user_id),
    select(_LIVE.c.user_id, _LIVE.c.name, literal("site"), literal(None, String), col(UserSite.site_id))
    .select_from(_LIVE).join(UserSite, col(UserSite.user_id) == _LIVE.c.user_id),
    select(_LIVE.c.user_id, _LIVE.c.name, literal("study"), literal(None, String), col(UserStudy.study_id))
    .select_from(_LIVE).join(UserStudy, col(UserStudy.user_id) == _LIVE.c.user_id))


def actor_for_token(conn: Connection, token: str) -> Actor | None:
    """The actor of a live API token in one prebuilt query, for the scan's hot path.

    On PostgreSQL a connection not yet in a transaction reads in autocommit: the one statement is
    its own transaction, without the BEGIN and ROLLBACK round trips around it (the gate runs this
    in the event loop for every API request, and each round trip holds the loop)."""
    if conn.dialect.name == "postgresql" and not conn.in_transaction():
        conn.execution_options(isolation_level="AUTOCOMMIT")
    rows = conn.execute(_TOKEN_ACTOR, {"digest": token_digest(token)}).all()
    if not rows:
        return None
    user_id, name = rows[0][0], rows[0][1]
    roles = frozenset(Role(role) for _, _, kind, role, _ in rows if kind == "role" and role)
    if not is_scoped(roles):
        return Actor(user_id, name, roles)
    return Actor(user_id, name, roles, frozenset(i for _, _, kind, _, i in rows if kind == "site"),
                 frozenset(i for _, _, kind, _, i in rows if kind == "study"))


def user_for_token(session: Session, token: str) -> User | None:
    row = session.scalars(select(ApiToken).where(col(ApiToken.token_hash) == token_digest(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    user = session.get(User, row.user_id)
    return user if user is not None and user.active and not user.locked else None
