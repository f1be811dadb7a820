"""Rate limiting of sign-in, counted in the database so that it holds across app workers.

A failed sign-in leaves a row keyed by HMACs of the typed username and of the client address,
never the name or address themselves. An attempt is refused without checking any password when
either key has reached its limit of failures within the sliding window (the last
`POLICY.window_minutes`). Two workers racing may each let one more attempt through: a limit of
ten that becomes eleven protects as well.
"""
from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select
from sqlmodel import Session, col

from ..models import SigninAttempt
from .rules import POLICY


def key(text: str) -> str:
    """A keyed hash standing for a typed username or an address: the same text gives the same
    key (attempts can be counted and correlated) but the text cannot be read back."""
    return hmac.new(POLICY.secret, text.encode("utf-8", "replace"), hashlib.sha256).hexdigest()


def name_key(username: str) -> str:
    return key("user:" + username.strip().lower())


def address_key(address: str | None) -> str:
    return key("addr:" + (address or "unknown"))


def limited(session: Session, username_key: str, addr_key: str, now: datetime) -> bool:
    since = now - timedelta(minutes=POLICY.window_minutes)
    recent = col(SigninAttempt.at) > since

    def failures(match: ColumnElement[bool]) -> int:
        return session.scalar(select(func.count()).select_from(SigninAttempt).where(match, recent)) or 0

    return (failures(col(SigninAttempt.username_key) == username_key) >= POLICY.max_per_username
            or failures(col(SigninAttempt.address_key) == addr_key) >= POLICY.max_per_address)


def remember_failure(session: Session, username_key: str, addr_key: str, now: datetime) -> None:
    session.add(SigninAttempt(at=now, username_key=username_key, address_key=addr_key))
    # Rows older than the window count for nothing: each failure sweeps a few away, so the table
    # stays the size of one window however long an attack lasts.
    old = select(col(SigninAttempt.id)).where(
        col(SigninAttempt.at) <= now - timedelta(minutes=POLICY.window_minutes)).limit(20)
    session.execute(delete(SigninAttempt).where(col(SigninAttempt.id).in_(old.scalar_subquery())))
    session.flush()
