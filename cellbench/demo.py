"""Demo data for `cellbench serve --demo` and `cellbench demo`: one named user per role.

Idempotent: running it again adds only what is missing. Later areas add their demo records here.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session

from . import users
from .audit import Actor
from .models import Role, User

DEMO_PASSWORD = "cellbench-demo"

# username, printed name, roles
DEMO_USERS = [
    ("operator", "Ole Jensen", [Role.operator]),
    ("operator2", "Maja Skov", [Role.operator]),
    ("verifier", "Vera Holm", [Role.verifier, Role.operator]),
    ("qc", "Kim Larsen", [Role.qc_analyst]),
    ("qa", "Anna Berg", [Role.qa]),
    ("qp", "Peter Qvist", [Role.qp]),
    ("supply", "Sara Munk", [Role.supply_manager]),
    ("pharmacist", "Frida Lund", [Role.pharmacist]),
    ("preparer", "Jonas Bak", [Role.preparer]),
    ("investigator", "Ida Krogh", [Role.investigator]),
    ("monitor", "Mette Dahl", [Role.monitor]),
    ("admin", "Adam Nord", [Role.admin]),
]


def seed(session: Session, by: Actor) -> list[tuple[str, str, list[Role]]]:
    """Create the demo users that are missing; returns every demo user for printing."""
    existing = set(session.scalars(select(User.username)))
    for username, name, roles in DEMO_USERS:
        if username not in existing:
            users.create_user(session, by, username, name, DEMO_PASSWORD, [r.value for r in roles])
    return DEMO_USERS


def credentials_text() -> str:
    width = max(len(u) for u, _, _ in DEMO_USERS)
    lines = [f"Demo users (password for all: {DEMO_PASSWORD})"]
    for username, name, roles in DEMO_USERS:
        lines.append(f"  {username.ljust(width)}  {name:<12}  {', '.join(r.value for r in roles)}")
    return "\n".join(lines)
