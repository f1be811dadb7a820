"""API tokens: shown once when created, kept only as a hash, revoked but never deleted."""
from __future__ import annotations

import secrets

from sqlalchemy import Connection, bindparam, literal, select, union_all
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


def tokens_of(session: Session, user: User) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).where(col(ApiToken.user_id) == user.id).order_by(col(ApiToken.id))))


_TOKEN_ACTOR = (select(col(User.id), col(User.full_name), col(UserRole.role))
                .join(ApiToken, col(ApiToken.user_id) == col(User.id))
                .outerjoin(UserRole, col(UserRole.user_id) == col(User.id))
                .where(col(ApiToken.token_hash) == bindparam("digest"), col(ApiToken.revoked_at).is_(None),
                       col(User.active).is_(True), col(User.locked).is_(False)))


_TOKEN_SCOPE = union_all(
    select(literal("site"), col(UserSite.site_id)).where(col(UserSite.user_id) == bindparam("user")),
    select(literal("study"), col(UserStudy.study_id)).where(col(UserStudy.user_id) == bindparam("user")))


def actor_for_token(conn: Connection, token: str) -> Actor | None:
    """The actor of a live API token in one prebuilt query, for the scan's hot path."""
    rows = conn.execute(_TOKEN_ACTOR, {"digest": token_digest(token)}).all()
    if not rows:
        return None
    roles = frozenset(Role(role) for _, _, role in rows if role)
    if not is_scoped(roles):
        return Actor(rows[0][0], rows[0][1], roles)
    # a site-role caller: its sites and studies, one more prebuilt query
    links = conn.execute(_TOKEN_SCOPE, {"user": rows[0][0]}).all()
    return Actor(rows[0][0], rows[0][1], roles, frozenset(i for kind, i in links if kind == "site"),
                 frozenset(i for kind, i in links if kind == "study"))


def user_for_token(session: Session, token: str) -> User | None:
    row = session.scalars(select(ApiToken).where(col(ApiToken.token_hash) == token_digest(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    user = session.get(User, row.user_id)
    return user if user is not None and user.active and not user.locked else None
