"""JSON API: who am I, and user administration for integrations (admin role)."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import users
from ..db import Database
from ..deps import Viewer, current_viewer, get_db, read_session, require
from ..errors import NotFound
from ..models import Role, User, saved_id

router = APIRouter(prefix="/api/v1", tags=["users"])
admin = require(Role.admin)


class UserOut(BaseModel):
    username: str
    full_name: str
    roles: list[Role]
    active: bool
    locked: bool
    created_at: datetime


def user_out(user: User, roles: frozenset[Role]) -> UserOut:
    return UserOut(username=user.username, full_name=user.full_name, roles=sorted(roles, key=list(Role).index),
                   active=user.active, locked=user.locked, created_at=user.created_at)


class NewUser(BaseModel):
    username: str = Field(max_length=64)
    full_name: str = Field(max_length=200)
    password: str
    roles: list[str]


class Reason(BaseModel):
    reason: str


class RolesChange(BaseModel):
    roles: list[str]
    reason: str


@router.get("/me", response_model=UserOut)
def me(viewer: Viewer = Depends(current_viewer)) -> UserOut:
    return user_out(viewer.user, viewer.roles)


@router.get("/users", response_model=list[UserOut])
def list_users(viewer: Viewer = Depends(admin), session: Session = Depends(read_session)) -> list[UserOut]:
    return [user_out(u, r) for u, r in users.all_users(session)]


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(body: NewUser, viewer: Viewer = Depends(admin), db: Database = Depends(get_db)) -> UserOut:
    with db.write() as session:
        user = users.create_user(session, viewer.actor, body.username, body.full_name, body.password, body.roles)
        return user_out(user, users.roles_of(session, saved_id(user)))


@router.get("/users/{username}", response_model=UserOut)
def get_user(username: str, viewer: Viewer = Depends(admin), session: Session = Depends(read_session)) -> UserOut:
    user = users.by_username(session, username)
    return user_out(user, users.roles_of(session, saved_id(user)))


@router.put("/users/{username}/roles", response_model=UserOut)
def set_roles(username: str, body: RolesChange, viewer: Viewer = Depends(admin),
              db: Database = Depends(get_db)) -> UserOut:
    with db.write() as session:
        user = users.by_username(session, username)
        users.set_roles(session, viewer.actor, user, body.roles, body.reason)
        return user_out(user, users.roles_of(session, saved_id(user)))


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
        return user_out(user, users.roles_of(session, saved_id(user)))
