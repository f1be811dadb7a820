"""The deviation lists read in a fixed number of statements, in an order an index serves: the API's
page of 100 read each row's lot, raiser and closure one at a time (300 statements at ten years),
and both lists sorted every deviation by a rank computed per row at each page (issue 18)."""
from __future__ import annotations

import pytest
from sqlalchemy import event, text

from cellbench import deviations

from .test_deviations import api_as, assess, close, lot, raise_  # noqa: F401  (lot: a fixture)


def _statements(db, call) -> tuple[object, list[str]]:
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_rest) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        return call(), seen
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def _raise_closed_and_open(db, lot_id: int, n: int) -> list[str]:
    """n deviations of the lot, every other one assessed and closed by QA."""
    numbers = []
    for i in range(n):
        number = raise_(db, lot_id=lot_id, step_code=None, severity=deviations.SEVERITIES[i % 3]).number
        if i % 2:
            assess(db, number)
            close(db, number)
        numbers.append(number)
    return numbers


def test_the_api_list_reads_the_same_statements_for_two_deviations_as_for_six_and_shows_what_one_read_shows(
        app, db, people, lot):  # noqa: F811
    anna = api_as(app, db, "anna")
    _raise_closed_and_open(db, lot.id, 2)
    few, seen_few = _statements(db, lambda: anna.get("/api/v1/deviations").json()["deviations"])
    _raise_closed_and_open(db, lot.id, 4)
    many, seen_many = _statements(db, lambda: anna.get("/api/v1/deviations").json()["deviations"])
    assert len(few) == 2 and len(many) == 6
    assert len(seen_many) == len(seen_few), "one read per row made the page grow with it"
    for listed in many:  # as the deviation's own read gives it
        assert listed == anna.get(f"/api/v1/deviations/{listed['number']}").json()
    assert {d["lot_number"] for d in many} == {"ASC-26-001"} and {d["raised_by"] for d in many} == {"Olivia Operator"}
    closed = [d for d in many if d["state"] == "closed"]
    assert len(closed) == 3 and all(d["closure"]["signer_name"] == "Anna QA" for d in closed)
    assert all(d["closure"] is None for d in many if d["state"] != "closed")


def test_the_page_shows_each_deviations_lot_read_once_for_the_page(as_, db, people, lot):  # noqa: F811
    numbers = _raise_closed_and_open(db, lot.id, 3)
    page, seen = _statements(db, lambda: as_("anna").get("/deviations", params={"state": "all"}).text)
    assert all(number in page for number in numbers) and "ASC-26-001" in page
    assert sum(" FROM lot " in " ".join(s.split()) + " " for s in seen) == 1


def test_the_severity_names_sort_as_their_ranks_so_the_lists_index_gives_most_severe_first(db, people):
    assert sorted(deviations.SEVERITIES) == sorted(deviations.SEVERITIES, key=deviations.SEVERITY_RANK.__getitem__)
    assert [c.key for c in deviations.ORDERS["severity"].columns] == ["severity", "raised_at", "number"]


@pytest.mark.parametrize("order,state", [("severity", None), ("severity", "open"), ("age", None)])
def test_a_page_of_deviations_is_read_along_an_index_not_sorted_whole_on_sqlite(db, people, order, state):
    if not db.is_sqlite:
        pytest.skip("the plan is SQLite's (PostgreSQL's planner chooses by the table's size)")
    from cellbench import pagination
    from cellbench.models import DeviationState

    plans: list[str] = []
    with db.read() as s:
        def page():
            return deviations.deviation_page(s, pagination.Ask(None, "x" * 40, 10), order=order,
                                             states={DeviationState(state)} if state else None)
        _, seen = _statements(db, page)
        query = next(q for q in seen if "FROM deviation" in q)
        binds = query.count("?")
        plans = [str(row) for row in s.connection().exec_driver_sql(
            "EXPLAIN QUERY PLAN " + query, tuple(["open"] * (binds - 2) + [11, 0]))]
    assert not any("TEMP B-TREE" in p for p in plans), plans
    assert any("ix_deviation_" in p for p in plans), plans


def test_the_signed_counts_of_a_study_are_read_newest_first_along_their_index_on_sqlite(db):
    if not db.is_sqlite:
        pytest.skip("the plan is SQLite's")
    with db.engine.connect() as conn:
        plan = [str(r) for r in conn.execute(text(
            "EXPLAIN QUERY PLAN SELECT * FROM reconciliation WHERE study_id = 1 AND (site_id IN (1, 2) OR site_id "
            "IS NULL) AND (at, id) < ('2030-01-01', 9) ORDER BY at DESC, id DESC LIMIT 101"))]
    assert not any("TEMP B-TREE" in p for p in plan) and any("ix_reconciliation_study_at" in p for p in plan), plan
