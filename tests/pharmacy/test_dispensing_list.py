"""The pharmacist's dispensing list: a page of the day's visits awaiting a dispensed kit with how
many there are in all; its pages together hold exactly the visits a recount finds, and it reads the
same for an active and a placebo participant but for their numbers."""
from __future__ import annotations

import html
import re

from cellbench import pharmacy
from cellbench.web import pharmacy as web_pharmacy

from ..conftest import actor_of
from .test_pharmacy import _normalised, assign, one_of_each_arm, randomised


def walk(client, url: str = "/dispensing") -> tuple[list[str], list[str]]:
    """(the participants listed, each page's heading count), following the pager to the end."""
    listed, counts = [], []
    next_url: str | None = url
    while next_url:
        page = client.get(next_url).text
        counts += re.findall(r"<small>(\d+) visits? with a window open today</small>", page)
        listed += re.findall(r"<tr><td><strong>([^<]+)</strong>", page)
        found = re.search(r'href="([^"]+)" rel="next"', page)
        next_url = html.unescape(found.group(1)) if found else None
    return listed, counts


def test_the_dispensing_pages_list_every_visit_awaiting_a_kit_once_with_the_exact_count(site, as_, db, monkeypatch):
    for n in range(1, 6):
        randomised(as_, f"SCR-{n:03d}")
    assign(as_, "SCR-002")
    with db.read() as s:
        frida = actor_of(db, "frida")
        expected = pharmacy.views(s, frida, pharmacy.awaiting_dispensing(s, reader=frida))
    monkeypatch.setattr(web_pharmacy, "DISPENSING_SHOWN", 2)
    listed, counts = walk(as_("frida"))
    assert listed == [v.participant for v in expected] and len(listed) == 5
    assert counts == ["5"] * 3  # three pages, each with the count of them all
    monkeypatch.setattr(web_pharmacy, "DISPENSING_SHOWN", 50)
    assert walk(as_("frida")) == (listed, ["5"])


def test_the_dispensing_list_reads_the_same_for_an_active_and_a_placebo_participant(site, as_, db):
    by_arm = one_of_each_arm(as_, db)
    rows = {}
    for arm, screening in by_arm.items():
        number = as_("ida").get(f"/api/v1/participants/NCT07290946/{screening}").json()["randomisation_number"]
        kit = assign(as_, screening).json()["kit_number"]
        rows[arm] = (number, kit, screening)
    page = as_("frida").get("/dispensing").text
    shown = {}
    for arm, (number, kit, screening) in rows.items():
        row = re.search(rf"<tr><td><strong>{re.escape(number)}</strong>.*?</tr>", page, re.S).group(0)
        shown[arm] = _normalised(row, [number, kit, screening])
    assert shown["active"] == shown["placebo"]
