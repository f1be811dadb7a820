"""The running visit counts (pharmacy/counts.py) that the preparer's and the pharmacist's work lines
read: after every kind of visit move they equal a recount from the visit rows, the lines and the
preparation page show what a recount shows, and they are the same whichever arm a visit is on."""
from __future__ import annotations

from sqlalchemy import func, select

from cellbench import integrity, pharmacy
from cellbench.models import VisitCount
from cellbench.pharmacy import counts

from .test_pharmacy import assign, one_of_each_arm, payload, randomised, visit_url


def recount_problems(db) -> list[str]:
    with db.read() as s:
        return counts.recount(s)


def counted_by_query(db, states) -> int:
    """The passing visits as the rows give them: the query the lists read, counted."""
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(pharmacy.passing_query(states).subquery())) or 0


def kept(db, states) -> int:
    with db.read() as s:
        return pharmacy.passing_count(s, states)


def test_the_running_counts_equal_a_recount_after_every_kind_of_visit_move(site, as_, db):
    assert recount_problems(db) == []
    randomised(as_, "SCR-001")  # planned
    randomised(as_, "SCR-002")
    assert recount_problems(db) == []
    moves = [
        lambda: assign(as_, "SCR-001"),  # kit assigned
        lambda: as_("frida").post(f"{visit_url('SCR-001')}/unallocate", json={"reason": "did not come"}),  # planned
    ]
    for move in moves:
        assert move().status_code == 200
        assert recount_problems(db) == []
    number = assign(as_, "SCR-001").json()["kit_number"]
    assert as_("frida").post(f"{visit_url('SCR-001')}/dispense", json={"code": payload(number)}).status_code == 200
    assert recount_problems(db) == [] and kept(db, pharmacy.DISPENSED) == counted_by_query(db, pharmacy.DISPENSED) == 1
    returned = as_("frida").post("/api/v1/returns", json={"code": payload(number), "condition": "intact, sealed"})
    assert returned.status_code == 200 and recount_problems(db) == []  # back to planned
    assert kept(db, pharmacy.DISPENSED) == counted_by_query(db, pharmacy.DISPENSED) == 0
    number = assign(as_, "SCR-001").json()["kit_number"]
    as_("frida").post(f"{visit_url('SCR-001')}/dispense", json={"code": payload(number)})
    assert as_("jonas").post("/api/v1/preparation", json={"code": payload(number)}).status_code == 200
    assert kept(db, pharmacy.RUNNING) == counted_by_query(db, pharmacy.RUNNING) == 1
    stopped = as_("ida").post(f"{visit_url('SCR-001')}/not-administered", json={"reason": "participant fainted"})
    assert stopped.status_code == 200 and recount_problems(db) == []
    assert kept(db, pharmacy.RUNNING) == counted_by_query(db, pharmacy.RUNNING) == 0


def test_a_counter_edited_behind_cellbench_s_back_is_named_by_the_recount_and_by_verify(site, as_, db):
    randomised(as_, "SCR-001")
    with db.write() as s:
        row = s.scalars(select(VisitCount).where(VisitCount.state == "planned")).one()
        row.visits += 1
    problems = recount_problems(db)
    assert len(problems) == 1 and problems[0].startswith("visit count of NCT") and ", planned: counted" in problems[0]
    assert problems[0] in integrity.verify(db, workers=1).problems
    with db.write() as s:
        counts.refill(s)
    assert recount_problems(db) == []


def _dispensed(as_, screening: str) -> str:
    number = assign(as_, screening).json()["kit_number"]
    assert as_("frida").post(f"{visit_url(screening)}/dispense", json={"code": payload(number)}).status_code == 200
    return number


def test_the_preparer_s_lines_and_page_count_what_a_recount_counts(site, as_, db):
    for screening in ("SCR-001", "SCR-002", "SCR-003"):
        randomised(as_, screening)
        _dispensed(as_, screening)
    number = as_("frida").get(visit_url("SCR-003")).json()["kit_number"]
    assert as_("jonas").post("/api/v1/preparation", json={"code": payload(number)}).status_code == 200
    home = as_("jonas").get("/").text
    assert "<strong>2</strong> dispensed kits to thaw or prepare" in home
    assert "<strong>1</strong> preparation is running" in home
    assert (kept(db, pharmacy.DISPENSED), kept(db, pharmacy.RUNNING)) == (
        counted_by_query(db, pharmacy.DISPENSED), counted_by_query(db, pharmacy.RUNNING)) == (2, 1)
    page = as_("jonas").get("/preparation").text
    assert number in page


def test_the_running_preparations_come_soonest_use_by_first_across_both_running_states(site, as_, db):
    numbers = {}
    for screening in ("SCR-001", "SCR-002"):
        randomised(as_, screening)
        numbers[screening] = _dispensed(as_, screening)
        assert as_("jonas").post("/api/v1/preparation", json={"code": payload(numbers[screening])}).status_code == 200
    with db.read() as s:
        everyone = list(s.scalars(pharmacy.passing_query(pharmacy.RUNNING).order_by(*pharmacy.RUNNING_ORDER)))
        assert [v.id for v in pharmacy.preparations_running(s)] == [v.id for v in everyone]
        assert [v.id for v in pharmacy.preparations_running(s, limit=1)] == [everyone[0].id]


def test_the_counts_are_the_same_whichever_arm_a_visit_is_on(site, as_, db):
    arms = one_of_each_arm(as_, db)
    with db.read() as s:
        before = counts.stored(s)
    seen = []
    for screening in arms.values():
        _dispensed(as_, screening)
        with db.read() as s:
            after = counts.stored(s)
        seen.append(after - before)
        before = after
    assert seen[0] == seen[1] and sum(seen[0].values()) == 1  # one visit, one state further, either arm
