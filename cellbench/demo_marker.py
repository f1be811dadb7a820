"""The mark of a database the demo created: demo mode, with its published key and passwords, runs
on such a database only, never on one holding real records (cli.py and app.py check it).

The mark is an audit event written in the demo's own transaction: it is on the chain that nothing
updates or deletes, so a real database cannot be turned into a "demo" one without the trail showing
it, and `cellbench verify` covers it."""
from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session, col

from . import audit
from .audit import Actor
from .db import Database, schema_is_current
from .models import AuditEvent

ENTITY = "database"
ACTION = "created by the demo"


def is_marked(session: Session) -> bool:
    return session.scalars(select(col(AuditEvent.seq)).where(
        col(AuditEvent.entity_type) == ENTITY, col(AuditEvent.action) == ACTION).limit(1)).first() is not None


def is_empty(session: Session) -> bool:
    """Nothing recorded yet (a database just made by `cellbench init`): the demo may claim it."""
    return session.scalars(select(col(AuditEvent.seq)).limit(1)).first() is None


def mark(session: Session, by: Actor) -> None:
    """Mark the database as the demo's, once, in the demo's transaction."""
    if not is_marked(session):
        audit.record(session, by, ACTION, ENTITY, "demo", reason="`cellbench demo`: demo data, published key and "
                     "passwords; never for real records")


def is_demo_database(db: Database) -> bool:
    """Whether the database is one the demo created; a database without the current schema is not."""
    if not schema_is_current(db):
        return False
    with db.read() as session:
        return is_marked(session)
