"""On PostgreSQL a migration that fills a table gives the planner its statistics at once (ANALYZE),
as 0032_storage does for kit: after 0033_monitor and 0034_notify the planner otherwise took the
filled tables for empty, and pages were 10-24x slower until autovacuum passed. On SQLite the danger is
the other way round: a new index without statistics, on a table that has some, is taken for a very
selective one, so a migration that adds an index analyses its table there."""
from __future__ import annotations

from alembic import command
from sqlalchemy import event, text

from cellbench.db import alembic_config, migrate

FILLED = {"0033_monitor": ("place_count", "accountability_verification"), "0034_notify": ("notification",),
          "0041_counts": ("unpackaged_count", "place_lot_count")}


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


def test_no_index_added_by_a_migration_is_left_without_statistics_on_an_analysed_database(db, kit_world):
    """SQLite's planner takes an index with no sqlite_stat1 row, on a table that has some, for a very
    selective one: 0036_studies' participant index turned /preparation's visit lists into walks over
    every participant until it was analysed. So a migration that adds an index analyses its table."""
    if not db.is_sqlite:
        return  # PostgreSQL gathers an index's statistics from its table's, analysed or not
    cfg = alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0032_storage")
        conn.exec_driver_sql("ANALYZE")  # a database in use: its planner has statistics
    migrate(db)
    with db.engine.begin() as conn:
        analysed = {table for (table,) in conn.exec_driver_sql("SELECT DISTINCT tbl FROM sqlite_stat1")}
        kept = _indexes_with_statistics(conn)
        conn.exec_driver_sql("ANALYZE")  # what a fresh analysis gives (an empty partial index gets no row)
        fresh = _indexes_with_statistics(conn)
    missing = sorted(name for table, name in fresh - kept if table in analysed)
    assert not missing, f"indexes a migration added without analysing their table: {missing}"


def _indexes_with_statistics(conn) -> set[tuple[str, str]]:
    return {(table, index) for table, index in
            conn.exec_driver_sql("SELECT tbl, idx FROM sqlite_stat1 WHERE idx IS NOT NULL AND idx != tbl")}
