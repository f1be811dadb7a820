"""The migrations and the models describe the same schema, on the engine the suite runs on."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from cellbench import models  # noqa: F401 - registers the tables
from cellbench.db import schema_is_current


def test_migrations_and_models_agree(db):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == [], f"models and migrations differ; write a migration: {differences}"


def test_a_migrated_database_is_at_the_current_head(db):
    assert schema_is_current(db)
