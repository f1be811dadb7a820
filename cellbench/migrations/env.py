"""Alembic environment. `cellbench init` passes its own connection; the alembic CLI passes a URL."""
from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from cellbench import models  # noqa: F401 - registers every table on SQLModel.metadata

config = context.config
target_metadata = SQLModel.metadata


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    from cellbench.config import Settings

    with create_engine(config.get_main_option("sqlalchemy.url") or Settings().url).connect() as conn:
        run(conn)
