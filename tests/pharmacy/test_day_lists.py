"""The site's lists of the day, a page at a time: the visits due (API) and awaiting a kit (page)
hold every visit once when visits are added while someone pages through them, with the right total
on every page; their default page is a day's work at one site; a later treatment's visit offers on
a page what it offers alone (its previous treatment read for the page at once); and the pharmacist
sees no difference between an active and a placebo participant on any of them."""
from __future__ import annotations

import html
import re

from cellbench import clock, pharmacy
from cellbench.pagination import PAGE_SIZE
from cellbench.web import pharmacy as web_pharmacy

from ..conftest import actor_of
from .test_due_list import _move
from .test_pharmacy import _normalised, assign, later, one_of_each_arm, randomised, treat


def _due_page(client, after: str | None = None, limit: int = 2) -> dict:
    answer = client.get("/api/v1/visits/due", params={"limit": limit, **({"after": after} if after else {})})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _rows(body: dict) -> list[tuple[str, int]]:
    return [(v["screening_number"], v["treatment"]) for v in body["visits"]]


def _added_while_paging(as_, db) -> None:
    """Two visits due today added after the first page: SCR-005 sorts after every visit already
    listed (enrolled later, the same window end), SCR-006 before them all (its window ends today)."""
    randomised(as_, "SCR-005")
    randomised(as_, "SCR-006")
    _move(db, "SCR-006", 1, window_end=clock.today())


def test_the_due_pages_hold_each_visit_once_and_the_right_total_when_visits_are_added_while_paging(site, as_, db):
    for n in range(1, 5):
        randomised(as_, f"SCR-{n:03d}")
    frida = as_("frida")
    first = _due_page(frida)
    assert first["count"] == 4 and _rows(first) == [("SCR-001", 1), ("SCR-002", 1)]
    _added_while_paging(as_, db)
    seen, after, counts = _rows(first), first["next"], []
    while after:
        body = _due_page(frida, after)
        seen += _rows(body)
        counts.append(body["count"])
        after = body["next"]
    # no visit listed twice nor skipped; the one added after the cursor follows, the one before it
    # is on the first page the next time it is opened
    assert seen == [("SCR-001", 1), ("SCR-002", 1), ("SCR-003", 1), ("SCR-004", 1), ("SCR-005", 1)]
    assert counts == [6, 6]  # every later page counts them all, as they are now
    again = _due_page(frida)
    assert _rows(again)[0] == ("SCR-006", 1) and again["count"] == 6


def randomised_number(as_, screening: str) -> str:
    return as_("ida").get(f"/api/v1/participants/NCT07290946/{screening}").json()["randomisation_number"]


def _dispensing_page(client, url: str) -> tuple[list[str], list[str], str | None]:
    """(the participants listed, the heading's count, the next page's address)."""
    page = client.get(url).text
    counts = re.findall(r"<small>(\d+) visits? with a window open today</small>", page)
    found = re.search(r'href="([^"]+)" rel="next"', page)
    return re.findall(r"<tr><td><strong>([^<]+)</strong>", page), counts, html.unescape(found.group(1)) if found \
        else None


def test_the_dispensing_pages_hold_each_visit_once_with_the_right_total_when_visits_are_added(site, as_, db,
                                                                                              monkeypatch):
    numbers = {n: randomised(as_, f"SCR-{n:03d}")["randomisation_number"] for n in range(1, 5)}
    monkeypatch.setattr(web_pharmacy, "DISPENSING_SHOWN", 2)
    frida = as_("frida")
    listed, counts, next_url = _dispensing_page(frida, "/dispensing")
    assert listed == [numbers[1], numbers[2]] and counts == ["4"]
    _added_while_paging(as_, db)
    while next_url:
        more, page_counts, next_url = _dispensing_page(frida, next_url)
        listed += more
        counts += page_counts
    late = randomised_number(as_, "SCR-005")
    assert listed == [numbers[1], numbers[2], numbers[3], numbers[4], late]
    assert counts == ["4", "6", "6"]


def test_the_day_lists_default_to_a_day_at_one_site_and_the_participants_api_to_a_page_of_the_list(app):
    document = app.openapi()

    def default_limit(path: str) -> int:
        [limit] = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "limit"]
        return limit["schema"]["default"]

    assert default_limit("/api/v1/visits/due") == pharmacy.DUE_SHOWN == web_pharmacy.DISPENSING_SHOWN == 20
    assert default_limit("/api/v1/participants") == PAGE_SIZE
    assert default_limit("/api/v1/kits") == 100  # the other lists keep theirs


def test_a_later_treatment_offers_on_the_due_page_what_it_offers_alone(site, as_, db, monkeypatch):
    for screening in ("SCR-001", "SCR-002"):
        randomised(as_, screening)
    treat(as_, "SCR-001")
    later(monkeypatch, db, days=120)  # both second treatments' windows are open
    frida = actor_of(db, "frida")
    with db.read() as s:
        due = pharmacy.due_today(s, reader=frida)
        assert sorted(v.treatment for v in due) == [2, 2]
        paged = pharmacy.views(s, frida, due)
        alone = [pharmacy.view(s, frida, v) for v in due]
    assert [(v.screening_number, v.actions) for v in paged] == [(v.screening_number, v.actions) for v in alone]
    by_screening = {v.screening_number: v for v in paged}
    assert by_screening["SCR-001"].allowed == ["assign"]
    [blocked] = [a for a in by_screening["SCR-002"].actions if a.name == "assign"]
    assert blocked.blocked and "Treatment 1 is not recorded as administered" in blocked.blocked


def test_the_pharmacist_s_lists_read_the_same_for_an_active_and_a_placebo_participant(site, as_, db):
    by_arm = one_of_each_arm(as_, db)
    frida = as_("frida")
    numbers = {}
    for arm, screening in by_arm.items():
        kit = assign(as_, screening).json()["kit_number"]
        numbers[arm] = [screening, randomised_number(as_, screening), kit]
    due = frida.get("/api/v1/visits/due").json()["visits"]
    people = frida.get("/api/v1/participants").json()["participants"]
    dispensing, participants = frida.get("/dispensing").text, frida.get("/participants").text
    shown: dict[str, list[str]] = {}
    for arm, (screening, number, kit) in numbers.items():
        rows = [next(str(v) for v in due if v["screening_number"] == screening),
                next(str(p) for p in people if p["screening_number"] == screening),
                re.search(rf"<tr><td><strong>{re.escape(number)}</strong>.*?</tr>", dispensing, re.S).group(0),
                re.search(rf"<tr><td><a [^>]*><strong>{re.escape(number)}</strong>.*?</tr>", participants,
                          re.S).group(0)]
        shown[arm] = [_normalised(row, [screening, number, kit]) for row in rows]
    assert shown["active"] == shown["placebo"]
