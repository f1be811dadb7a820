"""What an unblinding reveals, one page at a time: the pages of findings, put together, are the whole
list the sponsor's message holds; the counts per channel are in full on every page; a page's cursor
holds its place when a finding is added before it."""
from __future__ import annotations

import pytest

from cellbench import studies, unblinding_impact

from .conftest import actor_of
from .test_unblinding import _api, sealed_blocks
from .trialworld import STUDY, administer, enrol, ship

PAGE = 5


@pytest.fixture
def small_pages(monkeypatch):
    """Five findings a page, so that a block of 24 takes five pages."""
    monkeypatch.setattr(unblinding_impact, "PAGE_SIZE", PAGE)


def _url(number: str) -> str:
    return f"/api/v1/unblindings/{STUDY}/{number}/impact"


def _pages(client, number: str) -> list[dict]:
    pages, after = [], None
    while True:
        response = client.get(_url(number), params={"after": after} if after else None)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        after = pages[-1]["next"]
        if not after:
            return pages


def _whole(db, number: str) -> dict:
    """Every finding at once, as the sponsor's message and the audit trail hold them."""
    with db.write() as s:
        return unblinding_impact.as_json(unblinding_impact.assess(s, actor_of(db, "anna"), studies.by_code(s, STUDY),
                                                                  number))


def test_the_pages_of_a_block_put_together_are_the_whole_list_with_the_counts_in_full_on_each(
        db, trial_world, as_, small_pages):
    block = sealed_blocks(db, 24, 1)[0]
    x = block[0][0]
    enrol(db, x, "S-601")
    assert _api(as_("ida"), x).status_code == 201

    pages = _pages(as_("anna"), x)

    listed = [finding for page in pages for finding in page["findings"]]
    assert listed == _whole(db, x)["findings"]
    assert [f["participant"] for f in listed] == sorted(number for number, _arm in block[1:]), "every mate, once"
    assert {f["strength"] for f in listed} == {"more probable"}
    assert [len(page["findings"]) for page in pages] == [PAGE] * 4 + [3]
    assert [page["counts"] for page in pages] == [
        {"block": 23, "shipment": 0, "blinded_lot": 0, "own_kits": 0, "total": 23}] * len(pages)


def test_the_page_links_to_the_next_and_names_the_counts(db, trial_world, as_, small_pages):
    block = sealed_blocks(db, 24, 1)[0]
    x, mates = block[0][0], sorted(number for number, _arm in block[1:])
    enrol(db, x, "S-611")
    assert _api(as_("ida"), x).status_code == 201
    anna = as_("anna")

    first = anna.get(f"/unblinding/{STUDY}/{x}/impact")
    assert first.status_code == 200
    assert "Participants whose arm is now certain or more probable: 23" in first.text
    assert [m for m in mates if m in first.text] == mates[:PAGE]
    following = first.text.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    second = anna.get(following)
    assert [m for m in mates if m in second.text] == mates[PAGE:2 * PAGE]
    assert 'rel="first"' in second.text and "Send this to the sponsor" in second.text


def test_a_finding_added_before_the_cursor_neither_repeats_nor_shifts_the_next_page(db, trial_world, as_, small_pages):
    world = trial_world
    block = sealed_blocks(db, 24, 1)[0]
    x, w = block[0][0], world.participant("active")
    enrol(db, x, "S-621")
    enrol(db, w, "S-622")
    administer(db, x, world.first_active[0])
    ship(db, "SH-2026-0009", world.first_active[:2])  # kits of one arm only
    assert _api(as_("ida"), x).status_code == 201
    anna = as_("anna")
    first = anna.get(_url(x)).json()
    second = anna.get(_url(x), params={"after": first["next"]}).json()

    administer(db, w, world.first_active[1])  # w is now certain: ranked before every block-mate

    again = anna.get(_url(x), params={"after": first["next"]}).json()
    assert again["findings"] == second["findings"], "the next page is the one it was"
    assert again["counts"] == {"block": 23, "shipment": 1, "blinded_lot": 0, "own_kits": 0, "total": 24}
    anew = anna.get(_url(x)).json()["findings"]
    assert anew[0]["participant"] == w and anew[0]["strength"] == "certain"
    assert [f["participant"] for page in _pages(anna, x) for f in page["findings"]] == [
        f["participant"] for f in _whole(db, x)["findings"]]


def test_a_cursor_not_made_for_this_impact_is_refused_naming_after(db, trial_world, as_, small_pages):
    block = sealed_blocks(db, 24, 1)[0]
    x, x_arm = block[0]
    y = next(number for number, arm in block[1:] if arm == x_arm)  # two of one arm known: the block stays uneven
    enrol(db, x, "S-631")
    enrol(db, y, "S-632")
    assert _api(as_("ida"), x).status_code == 201
    assert _api(as_("ida"), y).status_code == 201
    anna = as_("anna")
    cursor = anna.get(_url(x)).json()["next"]

    for after in (cursor[:-2] + "AA", "not-a-cursor"):
        response = anna.get(_url(x), params={"after": after})
        assert response.status_code == 400 and "after" in response.text
    assert anna.get(_url(y), params={"after": cursor}).status_code == 400, "another participant's list"


def test_the_api_reference_names_the_page_of_findings_its_counts_and_its_next_cursor(as_):
    reference = as_("anna").get("/api/docs")
    assert reference.status_code == 200
    for words in ("Participants found, per channel and in all, in full on every page",
                  "The cursor of the next page (pass it as `after`)", "follow `next` for the rest"):
        assert words in reference.text.replace("&#39;", "'").replace("&quot;", '"'), words
