"""JSON API: who am I, and user administration for integrations (admin role)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import users
from ..db import Database
from ..deps import Viewer, current_viewer, get_db, read_session, require
from ..errors import NotFound
from ..models import Role, User, saved_id
from ..pagination import Ask
from . import paging

router = APIRouter(prefix="/api/v1", tags=["users"])
admin = require(Role.admin)


class UserOut(BaseModel):
    username: str
    full_name: str
    roles: list[Role]
    active: bool
    locked: bool
    created_at: datetime
    sites: list[str] | None = Field(description="Site codes a site-role user works for; null: every site.")
    studies: list[str] | None = Field(description="Study codes a site-role user works on; null: every study.")


def user_out(session: Session, user: User, roles: frozenset[Role]) -> UserOut:
    sites, studies = users.links_of(session, saved_id(user)) if users.is_scoped(roles) else (None, None)
    return UserOut(username=user.username, full_name=user.full_name, roles=sorted(roles, key=list(Role).index),
                   active=user.active, locked=user.locked, created_at=user.created_at, sites=sites, studies=studies)


class NewUser(BaseModel):
    username: str = Field(max_length=64)
    full_name: str = Field(max_length=200)
    password: str
    roles: list[str]
    email: str | None = Field(default=None, max_length=200, description="Where notifications for the roles go.")


class Reason(BaseModel):
    reason: str


class RolesChange(BaseModel):
    roles: list[str]
    reason: str


class LinkChange(BaseModel):
    site: str | None = Field(default=None, max_length=32, description="A site code, e.g. RH-ENT.")
    study: str | None = Field(default=None, max_length=64, description="A study code.")
    reason: str | None = Field(default=None, description="Required to unlink.")


@router.get("/me", response_model=UserOut)
def me(viewer: Viewer = Depends(current_viewer), session: Session = Depends(read_session)) -> UserOut:
    return user_out(session, viewer.user, viewer.roles)


UserPageOut = paging.page_model("UserPageOut", "users", UserOut, "In username order")


@router.get("/users", response_model=UserPageOut)
def list_users(ask: Ask = Depends(paging.ask), viewer: Viewer = Depends(admin),
               session: Session = Depends(read_session)) -> Any:
    found = users.user_page(session, ask)
    return UserPageOut(users=[user_out(session, u, r) for u, r in found.rows], next=found.next)


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(body: NewUser, viewer: Viewer = Depends(admin), db: Database = Depends(get_db)) -> UserOut:
    with db.write() as session:
        user = users.create_user(session, viewer.actor, body.username, body.full_name, body.password, body.roles,
                                 email=body.email)
        return user_out(session, user, users.roles_of(session, saved_id(user)))


@router.get("/users/{username}", response_model=UserOut)
def get_user(username: str, viewer: Viewer = Depends(admin), session: Session = Depends(read_session)) -> UserOut:
    user = users.by_username(session, username)
    return user_out(session, user, users.roles_of(session, saved_id(user)))


@router.put("/users/{username}/roles", response_model=UserOut)
def set_roles(username: str, body: RolesChange, viewer: Viewer = Depends(admin),
              db: Database = Depends(get_db)) -> UserOut:
    with db.write() as session:
        user = users.by_username(session, username)
        users.set_roles(session, viewer.actor, user, body.roles, body.reason)
        return user_out(session, user, users.roles_of(session, saved_id(user)))


@router.post("/users/{username}/link", response_model=UserOut,
             description="Link a site-role user to a site or a study (or both). Audited.")
def link(username: str, body: LinkChange, viewer: Viewer = Depends(admin), db: Database = Depends(get_db)) -> UserOut:
    return _changed(db, username, lambda s, user: users.link(s, viewer.actor, user, site=body.site, study=body.study))


@router.post("/users/{username}/unlink", response_model=UserOut,
             description="Take a site or a study (or both) from a site-role user. A reason is required. Audited.")
def unlink(username: str, body: LinkChange, viewer: Viewer = Depends(admin),
           db: Database = Depends(get_db)) -> UserOut:
    return _changed(db, username, lambda s, user: users.unlink(s, viewer.actor, user, site=body.site,
                                                               study=body.study, reason=body.reason))


def _changed(db: Database, username: str, change: Callable[[Session, User], None]) -> UserOut:
    """Apply one change to the user's account and answer with the account as it now is."""
    with db.write() as session:
        user = users.by_username(session, username)
        change(session, user)
        return user_out(session, user, users.roles_of(session, saved_id(user)))


_ACCOUNT_ACTIONS = {"deactivate": users.deactivate, "reactivate": users.reactivate, "unlock": users.unlock}


@router.post("/users/{username}/{action}", response_model=UserOut,
             description="`action` is one of: deactivate, reactivate, unlock. A reason is required.")
def account_action(username: str, action: str, body: Reason, viewer: Viewer = Depends(admin),
                   db: Database = Depends(get_db)) -> UserOut:
    if action not in _ACCOUNT_ACTIONS:
        raise NotFound(f"Unknown action '{action}': use deactivate, reactivate or unlock.", field="action")
    with db.write() as session:
        user = users.by_username(session, username)
        _ACCOUNT_ACTIONS[action](session, viewer.actor, user, body.reason)
        return user_out(session, user, users.roles_of(session, saved_id(user)))
