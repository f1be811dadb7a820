"""The visits due today: a bounded query of the open visits whose window includes today at their
site (the state and window-end index), paged with a count, the same list the old computation over
every participant gave; its reads do not grow with the participants; and it reads the same for an
active and a placebo participant."""
from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select, update
from sqlmodel import col

from cellbench import clock, pharmacy
from cellbench.models import Participant, Site, Visit

from ..conftest import actor_of
from ..test_floor import statements
from .test_pharmacy import _normalised, assign, one_of_each_arm, payload, randomised, visit_url


def _old_due_list(s, reader) -> set[int]:
    """The computation the due list replaced: every open visit, its window tested in Python."""
    rows = s.execute(select(Visit, Site).join(Participant, col(Participant.id) == col(Visit.participant_id))
                     .join(Site, col(Site.id) == col(Participant.site_id))
                     .where(col(Visit.state).in_([v.value for v in pharmacy.OPEN])))
    return {visit.id for visit, site in rows if visit.window_start <= clock.today(site) <= visit.window_end}


def _move(db, screening: str, treatment: int, **values) -> None:
    with db.write() as s:
        participant = s.scalars(select(Participant).where(col(Participant.screening_number) == screening)).one()
        s.execute(update(Visit).where(col(Visit.participant_id) == participant.id,
                                      col(Visit.treatment) == treatment).values(**values))


def test_the_due_list_is_the_open_visits_whose_window_includes_today_as_the_old_computation_found(site, as_, db):
    for n in range(1, 6):
        randomised(as_, f"SCR-{n:03d}")
    today = clock.today()
    _move(db, "SCR-002", 1, window_start=today - timedelta(days=20), window_end=today - timedelta(days=10))
    _move(db, "SCR-003", 1, state="administered")
    _move(db, "SCR-004", 2, window_start=today - timedelta(days=1), window_end=today + timedelta(days=1))
    _move(db, "SCR-005", 1, window_start=today + timedelta(days=1))
    ida = actor_of(db, "ida")
    with db.read() as s:
        due = pharmacy.due_today(s, reader=ida)
        assert {v.id for v in due} == _old_due_list(s, ida)
        numbers = {p.id: p.screening_number for p in s.scalars(select(Participant))}
        assert sorted((numbers[v.participant_id], v.treatment) for v in due) == [
            ("SCR-001", 1), ("SCR-004", 1), ("SCR-004", 2)]  # not the past, the done nor the future window
        assert due == sorted(due, key=lambda v: (v.window_end, v.participant_id, v.treatment))
        assert pharmacy.due_count(s, reader=ida) == 3
        waiting = pharmacy.awaiting_dispensing(s, reader=ida)
        assert {v.id for v in waiting} == {v.id for v in due}


def test_the_due_api_gives_each_visit_once_a_page_at_a_time_with_the_count(site, as_, db):
    for n in range(1, 5):
        randomised(as_, f"SCR-{n:03d}")
    seen, after, pages = [], None, 0
    while True:
        answer = as_("frida").get("/api/v1/visits/due", params={"limit": 1, **({"after": after} if after else {})})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["count"] == 4
        seen += [(v["screening_number"], v["treatment"]) for v in body["visits"]]
        pages += 1
        after = body["next"]
        if after is None:
            break
    assert pages == 4 and sorted(seen) == [(f"SCR-{n:03d}", 1) for n in range(1, 5)]
    refused = as_("frida").get("/api/v1/visits/due", params={"after": "not-a-cursor"})
    assert refused.status_code == 400 and refused.json()["field"] == "after"


def _statements(db, work) -> int:
    return len(statements(db, work))


def test_the_due_list_and_the_site_homes_read_as_much_for_three_participants_as_for_six(site, as_, db):
    def reads() -> list[int]:
        return [_statements(db, lambda: as_("frida").get("/api/v1/visits/due", params={"limit": 2})),
                _statements(db, lambda: as_("ida").get("/")), _statements(db, lambda: as_("frida").get("/")),
                _statements(db, lambda: as_("ida").get("/participants", params={"due": "today"}))]

    for n in range(1, 4):
        randomised(as_, f"SCR-{n:03d}")
    reads()  # warm: the first request of each signs in and reads what stays cached
    few = reads()
    for n in range(4, 7):
        randomised(as_, f"SCR-{n:03d}")
    assert reads() == few
    home = " ".join(as_("ida").get("/").text.split())
    assert "<strong>6</strong> treatment visits are due today" in home


def test_the_due_list_reads_the_same_for_an_active_and_a_placebo_participant(site, as_, db):
    by_arm = one_of_each_arm(as_, db)
    rows = as_("ida").get("/api/v1/visits/due").json()["visits"]
    shown = {}
    for arm, screening in by_arm.items():
        [row] = [r for r in rows if r["screening_number"] == screening]
        shown[arm] = _normalised(json.dumps(row, sort_keys=True), [screening, row["participant"]])
    assert shown["active"] == shown["placebo"]


def test_the_preparation_page_and_home_read_as_much_for_two_dispensed_kits_as_for_four(site, as_, db):
    def dispensed(screening: str) -> None:
        number = assign(as_, screening).json()["kit_number"]
        as_("frida").post(f"{visit_url(screening)}/dispense", json={"code": payload(number)})

    def reads() -> list[int]:
        return [_statements(db, lambda: as_("jonas").get("/preparation")),
                _statements(db, lambda: as_("jonas").get("/"))]

    for n in range(1, 5):
        randomised(as_, f"SCR-{n:03d}")
    for n in range(1, 3):
        dispensed(f"SCR-{n:03d}")
    reads()
    few = reads()
    for n in range(3, 5):
        dispensed(f"SCR-{n:03d}")
    assert reads() == few
    assert "<strong>4</strong> dispensed kits to thaw or prepare" in " ".join(as_("jonas").get("/").text.split())
