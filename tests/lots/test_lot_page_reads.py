"""The lot page and the lot list read in a fixed number of statements: one read per entry made the page
grow with the lot (a finished lot's page ran 109 statements in the pages benchmark), one per lot made
the API's list grow with its page, and the whole history made a long-lived lot's page slow (issue 18)."""
from __future__ import annotations

import re

from sqlalchemy import event, select

from cellbench import audit, lots, steps
from cellbench.models import StepValue
from cellbench.specifications import versions as spec_versions
from cellbench.web.lots import lot_view

from ..conftest import actor_of
from ..reports.test_batch_record import finished_lot  # noqa: F401  (a fixture)
from .test_lots import placebo_spec, record_whole_step, start_placebo_lot


def test_a_finished_lots_page_reads_its_materials_and_equipment_in_one_statement_each(db, finished_lot):  # noqa: F811
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_rest) -> None:
        seen.append(" ".join(statement.split()))

    with db.read() as s:
        lot = lots.by_number(s, finished_lot["number"])
        event.listen(db.engine, "before_cursor_execute", count)
        try:
            view = lot_view(s, lot)
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        entries = [entry for step in view["steps"] for entry in step.entries]
        assert len(entries) == 6
        # the same materials and equipment, in the same order, as each entry read alone
        for shown in entries:
            assert [m.id for m in shown.materials] == [m.id for m in steps.materials_of(s, shown.entry)]
            assert [e.id for e in shown.equipment] == [e.id for e in steps.equipment_of(s, shown.entry)]
        assert any(shown.materials for shown in entries)
    assert sum(" FROM material_use JOIN material_lot" in sql or "FROM material_lot" in sql for sql in seen) == 1
    assert sum("FROM equipment_use JOIN equipment" in sql or "FROM equipment " in sql for sql in seen) == 1


def test_the_lot_page_shows_a_lots_latest_events_newest_first_and_counts_them_all(db, finished_lot, as_):  # noqa: F811
    with db.read() as s:
        lot = lots.by_number(s, finished_lot["number"])
        whole = audit.history(s, actor_of(db, "anna"), "lot", lot.number)
        latest, total = lots.latest_history(s, actor_of(db, "anna"), lot, shown=3)
    assert total == len(whole) > 3
    assert [e.seq for e in latest] == [e.seq for e in reversed(whole[-3:])]
    page = as_("anna").get(f"/lots/{lot.number}").text
    assert f"History ({total} events)" in page
    if total > lots.HISTORY_SHOWN:  # the rest is a page of the audit trail away, for those who read it
        assert f"The latest {lots.HISTORY_SHOWN}, newest first." in page
        assert f"/audit?entity_type=lot&amp;entity_id={lot.number}" in page


def test_the_lot_list_gives_each_lot_the_current_step_its_own_record_gives_in_the_same_statements(
        db, finished_lot, as_):  # noqa: F811
    fresh, started = start_placebo_lot(db), start_placebo_lot(db)
    receipt = placebo_spec(db).steps[0]
    with db.write() as s:
        steps.start_entry(s, actor_of(db, "olivia"), lots.by_number(s, started), receipt.code, None)
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_rest) -> None:
        seen.append(statement)

    reads = []
    for numbers in ([fresh], [fresh, started, finished_lot["number"]]):
        with db.read() as s:
            chosen = [lots.by_number(s, n) for n in numbers]
            event.listen(db.engine, "before_cursor_execute", count)
            try:
                seen.clear()
                found = steps.current_steps(s, chosen)
                reads.append(len(seen))
            finally:
                event.remove(db.engine, "before_cursor_execute", count)
            for lot in chosen:  # as each lot's page finds it, from its own entries
                own = steps.current_step(spec_versions.parsed(lots.spec_of(s, lot)), steps.entries_of(s, lot))
                assert found[lot.id] == own
    assert reads[0] == reads[1]
    listed = {lot["number"]: lot["current_step"] for lot in as_("anna").get("/api/v1/lots").json()["lots"]}
    assert listed[started] == receipt.code and listed[fresh] == receipt.code
    assert listed[finished_lot["number"]] is None, "a finished record has no current step"


def test_the_lot_pages_value_rows_show_a_correction_the_limits_and_the_form_to_correct_only_where_it_may_be_used(
        db, effective_specs, as_):
    """The rows are written in Python once per entry (web/lot_values.py), no longer by a template
    loop per value: what they show is what the loop showed."""
    number = start_placebo_lot(db)
    step = placebo_spec(db).steps[0]
    index = record_whole_step(db, number, step)
    with db.read() as s:
        original = s.scalars(select(StepValue).where(StepValue.parameter_code == "supplier_batch")).one()
    with db.write() as s:
        steps.correct_value(s, actor_of(db, "olivia"), lots.by_number(s, number), original.id, "NACL-<2>",
                            "transcription error: <b>carton</b> says NACL-2")
    with db.read() as s:
        corrected = s.scalars(select(StepValue).where(StepValue.superseded_by.is_(None),
                                                      StepValue.parameter_code == "supplier_batch")).one()
        shown = len(s.scalars(select(StepValue).where(StepValue.entry_id == corrected.entry_id)).all())
    page = as_("olivia").get(f"/lots/{number}").text
    rows = re.findall(r'<tr class="([^"]*)">\s*<td>([^<]*)</td>\s*<td class="val">(.*?)</td>', page, re.S)
    assert len(rows) == shown > 2 and index == 1
    superseded = [r for r in rows if "superseded" in r[0]]
    assert len(superseded) == 1 and superseded[0][2].startswith(original.value)
    assert "NACL-&lt;2&gt;" in page and "&lt;b&gt;carton&lt;/b&gt;" in page and "<b>carton" not in page
    assert "changed after first entry: transcription error" in page
    # the operator of a lot in process may correct each value neither superseded nor computed, by its own id
    ids = re.findall(r'name="value_id" value="([^"]+)"', page)
    assert str(corrected.id) in ids and str(original.id) not in ids and "__value_id__" not in page
    assert len(ids) == page.count("Save correction") == shown - 1 - sum("computed" in r[2] for r in rows)
    # a reader who may not correct gets the rows without the form
    verifier_page = as_("victor").get(f"/lots/{number}").text
    assert "Save correction" not in verifier_page and "NACL-&lt;2&gt;" in verifier_page
