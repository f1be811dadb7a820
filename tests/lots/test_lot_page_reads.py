"""The lot page reads every entry's materials and equipment at once: one read per entry made the page
grow with the lot (a finished lot's page ran 109 statements in the pages benchmark)."""
from __future__ import annotations

from sqlalchemy import event

from cellbench import lots, steps
from cellbench.web.lots import lot_view

from ..reports.test_batch_record import finished_lot  # noqa: F401  (a fixture)


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
