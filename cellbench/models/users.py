"""Who may act: users, their roles, page sessions and API tokens."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlmodel import Field, SQLModel

from .base import Role, timestamp


class User(SQLModel, table=True):
    __tablename__ = "app_user"  # "user" is reserved in PostgreSQL

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    full_name: str = Field(max_length=200)
    email: str | None = Field(default=None, max_length=200)  # where notifications for this user's roles go
    password_hash: str = Field(max_length=255)
    active: bool = True
    locked: bool = False
    failed_logins: int = 0
    # When the lock began: a lock from failed passwords lifts itself after the configured time.
    locked_at: datetime | None = timestamp(nullable=True)
    created_at: datetime = timestamp()
    password_changed_at: datetime = timestamp()


class UserRole(SQLModel, table=True):
    __tablename__ = "user_role"

    user_id: int = Field(foreign_key="app_user.id", primary_key=True)
    role: Role = Field(sa_type=String(32), primary_key=True)


class WebSession(SQLModel, table=True):
    """A server-side page session; the browser's cookie holds a token whose SHA-256 is the id."""

    __tablename__ = "web_session"

    id: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = timestamp()
    last_seen_at: datetime = timestamp()
    ended_at: datetime | None = timestamp(nullable=True)
    end_reason: str | None = Field(default=None, max_length=32)


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16)  # shown in lists so a token can be recognised, never the rest
    created_at: datetime = timestamp()
    revoked_at: datetime | None = timestamp(nullable=True)


class UserSite(SQLModel, table=True):
    """A site a user with a site role (pharmacist, preparer, investigator, monitor) works for."""

    __tablename__ = "user_site"

    user_id: int = Field(foreign_key="app_user.id", primary_key=True)
    site_id: int = Field(foreign_key="site.id", primary_key=True, index=True)


class UserStudy(SQLModel, table=True):
    """A study a user with a site role works on."""

    __tablename__ = "user_study"

    user_id: int = Field(foreign_key="app_user.id", primary_key=True)
    study_id: int = Field(foreign_key="study.id", primary_key=True, index=True)


class SigninAttempt(SQLModel, table=True):
    """A failed sign-in, kept for rate limiting across app workers (a sliding window counted in
    the database). Neither the typed username nor the address is stored: only keyed hashes."""

    __tablename__ = "signin_attempt"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = timestamp()
    username_key: str = Field(max_length=64, index=True)
    address_key: str = Field(max_length=64, index=True)
