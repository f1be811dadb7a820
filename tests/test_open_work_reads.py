"""The home pages' open work is read along indexes that hold only the open work (issue 18): the stock
counts that differ, the open resupply proposals and the unblindings whose impact is not sent yet.
Ten years keep thousands of balanced counts, decided proposals and sent impacts; a home page that
walked them grew with the years (1,389 counts, 3.6 ms; an audit-trail probe per unblinding, 4.8 ms).
The plans are SQLite's: PostgreSQL's planner chooses by the table's size, and a test's tables are small."""
from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import event

from cellbench import accountability, studies, unblinding_impact
from cellbench.accountability import listing
from cellbench.db import Database
from cellbench.supply import resupply_desk

from .conftest import actor_of


def plans_of(db: Database, read: Callable[[], object], table: str) -> list[str]:
    """SQLite's plan of each statement `read` sends that reads `table`, with its own parameters."""
    sent: list[tuple[str, object]] = []

    def keep(_conn, _cursor, statement, parameters, *_rest) -> None:
        if f"FROM {table}" in statement:
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        read()
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)
    assert sent, f"nothing read {table}"
    with db.engine.connect() as conn:
        return [" / ".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params))
                for sql, params in sent]


@pytest.fixture
def sqlite_demo(demo_trial_world):
    if not demo_trial_world.is_sqlite:
        pytest.skip("the plans are SQLite's")
    return demo_trial_world


def years_of_balanced_counts(db: Database, n: int = 400) -> None:
    """n more balanced counts of the demo's counted blinded lot, a day apart going back, and the
    statistics taken again: the shape ten years give (a study's counts by the thousand, all but a few
    balanced), which is what the planner chooses by."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?) "
            "INSERT INTO reconciliation (study_id, site_id, blinded_lot_id, expected, counted_in_stock, balanced, "
            "comment, by_user, at, signature_id) SELECT r.study_id, r.site_id, r.blinded_lot_id, r.expected, "
            "r.counted_in_stock, 1, NULL, r.by_user, "
            "strftime('%Y-%m-%dT%H:%M:%S.000000Z', r.at, '-' || k.i || ' days'), r.signature_id "
            "FROM k, (SELECT * FROM reconciliation ORDER BY id LIMIT 1) r", (n,))
        conn.exec_driver_sql("ANALYZE")


def test_the_stock_counts_that_differ_are_read_along_the_index_of_unbalanced_counts(sqlite_demo):
    # everyone's, newest first (the home queues), and one study's (the accountability list)
    years_of_balanced_counts(sqlite_demo)
    with sqlite_demo.read() as s:
        study = studies.all_studies(s)[0]
        plans = plans_of(sqlite_demo, lambda: list(s.scalars(accountability.discrepancies().limit(2))),
                         "reconciliation")
        plans += plans_of(sqlite_demo, lambda: list(s.scalars(listing.latest_discrepancies(study, "all", None))),
                          "reconciliation")
    assert len(plans) == 2, plans
    assert "SCAN reconciliation USING INDEX ix_reconciliation_unbalanced" in plans[0], plans[0]
    assert "TEMP B-TREE" not in plans[0], "everyone's differing counts come newest first off the index"
    assert "SEARCH reconciliation USING INDEX ix_reconciliation_study_unbalanced" in plans[1], plans[1]


def test_the_open_resupply_proposals_are_counted_along_the_open_slot_index(sqlite_demo):
    supply = actor_of(sqlite_demo, "supply")
    with sqlite_demo.read() as s:
        plans = plans_of(sqlite_demo, lambda: resupply_desk.open_count(s, supply), "resupply_proposal")
    assert all("ix_resupply_proposal_open" in plan for plan in plans), plans


def test_the_unblindings_awaiting_their_impact_are_read_along_the_index_of_unsent_ones(sqlite_demo):
    with sqlite_demo.read() as s:
        plans = plans_of(sqlite_demo, lambda: list(s.scalars(unblinding_impact.awaiting_query().limit(2))),
                         "participant")
    assert all("ix_unblinding_impact_unsent" in plan for plan in plans), plans
    assert all("audit_event" not in plan for plan in plans), "no probe of the audit trail per unblinding"
