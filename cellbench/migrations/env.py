"""Alembic environment. `cellbench init` passes its own connection; the alembic CLI passes a URL
(`sqlalchemy.url`), or else the settings' database is used."""
from alembic import context
from sqlalchemy import Connection, create_engine
from sqlmodel import SQLModel

from cellbench import models  # noqa: F401 - registers every table on SQLModel.metadata
from cellbench.config import Settings

config = context.config
target_metadata = SQLModel.metadata


def run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    # The migration entry point for the alembic CLI: the one place outside the app and the command
    # line that reads the settings, and only when no URL was given.
    with create_engine(config.get_main_option("sqlalchemy.url") or Settings().url).connect() as conn:
        run(conn)
