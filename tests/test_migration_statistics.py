"""On PostgreSQL a migration that fills a table gives the planner its statistics at once (ANALYZE),
as 0032_storage does for kit: after 0033_monitor and 0034_notify the planner otherwise took the
filled tables for empty, and pages were 10-24x slower until autovacuum passed. SQLite keeps no such
statistics here: these migrations send no ANALYZE there."""
from __future__ import annotations

from alembic import command
from sqlalchemy import event, text

from cellbench.db import alembic_config, migrate

FILLED = {"0033_monitor": ("place_count", "accountability_verification"), "0034_notify": ("notification",),
          "0039_counts": ("unpackaged_count", "place_lot_count")}


def test_the_migrations_that_fill_tables_analyze_them_on_postgresql(db, kit_world):
    cfg = alembic_config()
    with db.engine.begin() as conn:  # the database as it was before 0033_monitor
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0032_storage")
    sent: list[str] = []

    def seen(_conn, _cursor, statement: str, *_rest) -> None:
        if statement.lstrip().upper().startswith("ANALYZE"):
            sent.append(statement.strip())

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        migrate(db)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    expected = [f"ANALYZE {table}" for tables in FILLED.values() for table in tables]
    if db.is_sqlite:  # (0037_homes analyses the tables of its new indexes on both engines: not these)
        assert not set(sent) & set(expected), sent
        return
    assert [statement for statement in sent if statement in expected] == expected, sent
    with db.engine.connect() as conn:  # the new table is known by its rows, not as never analysed (-1)
        assert conn.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'place_count'")) > 0
