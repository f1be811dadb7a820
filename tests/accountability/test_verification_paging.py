"""The monitor's verification read without reading the figures (issue 18): the API gives the site's
figures a page of blinded lots at a time, and says whether they are still those verified from the
site's fingerprint of them; the page's form and the API send the fingerprint back, not the hash of
the figures. The pages joined are the figures; the status agrees with comparing the figures'
hashes; a fingerprint or hash of figures that changed since is refused naming its field, and
nothing is written; the same visit twice conflicts; and the monitor's answers are the same
whichever arm the kit that moved was of."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from cellbench import accountability, clock, kits, place_counts, studies
from cellbench.accountability import verification
from cellbench.app import create_app
from cellbench.config import Settings
from cellbench.models import AccountabilityVerification, AuditEvent, KitState, Signature

from ..conftest import FAST_HASHER, PASSWORD, SECRET, actor_of, sign_in
from ..trialworld import SITE, STUDY, to_site
from .test_listing import _content, add_blinded_lots, statements

API = f"/api/v1/accountability/verifications?study={STUDY}&site={SITE}"
PAGE = f"/accountability?study={STUDY}&site={SITE}"


def _now(db) -> tuple[dict, str]:
    """The figures now read whole, and their hash (what was compared before issue 18)."""
    with db.read() as s:
        study = studies.by_code(s, STUDY)
        found = accountability.figures(s, study, verification.site_of(s, study, SITE))
    return found, accountability.figures_hash(found)


def _walk(client, limit: int) -> tuple[list[dict], list[str]]:
    """Every page of the figures as the API gives them, and the fingerprint each page carried."""
    pages, prints, after = [], [], ""
    for _ in range(100):
        got = client.get(f"{API}&limit={limit}{after}")
        assert got.status_code == 200, got.text
        pages.append(got.json())
        prints.append(got.json()["figures_fingerprint"])
        if got.json()["figures_next"] is None:
            return pages, prints
        after = f"&after={got.json()['figures_next']}"
    raise AssertionError("the figures never ended")


def _sign(client, fingerprint: str, sequence: int, **extra):
    return client.post("/api/v1/accountability/verifications", json={
        "study": STUDY, "site": SITE, "figures_fingerprint": fingerprint, "sequence": sequence,
        "password": PASSWORD, **extra})


def _written(db) -> tuple[int, int, int]:
    with db.read() as s:
        return (len(s.scalars(select(AccountabilityVerification)).all()),
                len(s.scalars(select(Signature).where(Signature.entity_type == "accountability_verification")).all()),
                len(s.scalars(select(AuditEvent).where(AuditEvent.action == "accountability verified")).all()))


def test_the_pages_of_the_figures_joined_are_the_figures_newest_blinded_lot_first(db, kit_world, as_):
    to_site(db, kit_world.active[:2] + kit_world.placebo[:1])
    codes = add_blinded_lots(db, 7)
    mette = as_("mette")
    pages, prints = _walk(mette, 3)
    whole, _ = _now(db)
    joined = {code: counts for page in pages for code, counts in page["figures"].items()}
    assert joined == whole and sum(len(p["figures"]) for p in pages) == len(whole) == 8, "each blinded lot once"
    assert [len(p["figures"]) for p in pages] == [3, 3, 2]
    assert list(pages[0]["figures"])[:3] == codes[::-1][:3], "newest blinded lot first, as the accountability list"
    assert {p["blinded_lot_count"] for p in pages} == {8} and len(set(prints)) == 1
    at_once = mette.get(f"{API}&limit=1000").json()
    assert at_once["figures"] == whole and at_once["figures_next"] is None


def test_a_cursor_taken_before_the_figures_changed_is_refused_naming_after(db, kit_world, as_):
    to_site(db, kit_world.active[:2] + kit_world.placebo[:2])
    add_blinded_lots(db, 4)
    mette = as_("mette")
    first = mette.get(f"{API}&limit=2").json()
    assert mette.get(f"{API}&limit=2&after={first['figures_next']}").status_code == 200
    to_site(db, kit_world.active[:1], KitState.dispensed)
    stale = mette.get(f"{API}&limit=2&after={first['figures_next']}")
    assert (stale.status_code, stale.json()["field"]) == (400, "after")
    assert "changed since their first page" in stale.json()["error"]
    to_site(db, kit_world.active[:1], KitState.at_site)
    assert mette.get(f"{API}&limit=2&after={first['figures_next']}").status_code == 200, \
        "the same figures again: the same walk goes on"
    other = mette.get(f"/api/v1/accountability?study={STUDY}&limit=2").json()["next"]
    assert mette.get(f"{API}&after={other}").status_code == 400, "the accountability list's cursor is not one of these"


def test_the_status_and_as_now_agree_with_comparing_the_hashes_of_the_figures_as_kits_move(db, kit_world, as_):
    mette, kit = as_("mette"), kit_world.active[0]
    to_site(db, kit_world.active[:2] + kit_world.placebo[:2])
    add_blinded_lots(db, 3)
    assert _sign(mette, mette.get(API).json()["figures_fingerprint"], 1).status_code == 201
    to_site(db, [kit], KitState.quarantined)
    assert _sign(mette, mette.get(API).json()["figures_fingerprint"], 2).status_code == 201
    for state in (KitState.allocated, KitState.quarantined, KitState.dispensed, KitState.administered,
                  KitState.returned, KitState.at_site, KitState.destroyed):
        to_site(db, [kit], state)
        read = mette.get(API).json()
        _, hash_now = _now(db)
        with db.read() as s:
            signed = {v.sequence: v.figures_hash for v in s.scalars(select(AccountabilityVerification))}
        assert {v["sequence"]: v["as_now"] for v in read["verifications"]} == \
            {n: h == hash_now for n, h in signed.items()}, state
        expected = "verified" if signed[2] == hash_now else "changed since verification"
        assert read["status"] == expected, state
        assert (expected in mette.get(PAGE).text) or expected != "verified", state


def test_the_signing_stores_the_hash_and_fingerprint_of_the_figures_it_signs(db, kit_world, as_):
    to_site(db, kit_world.active[:2] + kit_world.placebo[:1])
    mette = as_("mette")
    read = mette.get(API).json()
    form = re.search(r'name="figures_fingerprint" value="([^"]+)"', mette.get(PAGE).text).group(1)
    assert form == read["figures_fingerprint"], "the page's form and the API send back the same"
    assert _sign(mette, read["figures_fingerprint"], 1).status_code == 201
    whole, hash_now = _now(db)
    with db.read() as s:
        [row] = s.scalars(select(AccountabilityVerification))
        study = studies.by_code(s, STUDY)
        kits_there, fingerprint = place_counts.fingerprint(s, study.id, row.site_id)
        assert (row.figures_hash, row.fingerprint) == (hash_now, fingerprint) and kits_there == 3
        assert verification.fingerprint_text(fingerprint) == read["figures_fingerprint"]
        assert accountability.figures(s, study, verification.site_of(s, study, SITE)) == whole


def test_a_fingerprint_or_hash_of_changed_figures_is_refused_naming_its_field_and_nothing_is_written(db, kit_world,
                                                                                                      as_):
    to_site(db, kit_world.active[:2] + kit_world.placebo[:2])
    mette = as_("mette")
    seen = mette.get(API).json()["figures_fingerprint"]
    _, old_hash = _now(db)
    to_site(db, kit_world.placebo[:1], KitState.dispensed)
    refused = _sign(mette, seen, 1)
    assert (refused.status_code, refused.json()["field"]) == (409, "figures_fingerprint")
    assert "read the figures again" in refused.json()["error"]
    by_hash = mette.post("/api/v1/accountability/verifications", json={
        "study": STUDY, "site": SITE, "figures_hash": old_hash, "sequence": 1, "password": PASSWORD})
    assert (by_hash.status_code, by_hash.json()["field"]) == (409, "figures_hash")
    neither = mette.post("/api/v1/accountability/verifications", json={
        "study": STUDY, "site": SITE, "sequence": 1, "password": PASSWORD})
    assert (neither.status_code, neither.json()["field"]) == (422, "figures_fingerprint")
    form = {"study": STUDY, "site": SITE, "figures_fingerprint": seen, "sequence": "1", "password": PASSWORD}
    page = mette.submit("/accountability/verifications", form)
    assert page.status_code == 409 and "read the figures again" in page.text
    assert _written(db) == (0, 0, 0)


def test_the_hash_of_the_figures_now_is_still_accepted_as_a_page_loaded_before_issue_18_sends_it(db, kit_world,
                                                                                                    as_):
    to_site(db, kit_world.active[:1] + kit_world.placebo[:1])
    _, hash_now = _now(db)
    form = {"study": STUDY, "site": SITE, "figures_hash": hash_now, "sequence": "1", "password": PASSWORD}
    assert as_("mette").submit("/accountability/verifications", form).status_code == 303
    assert _written(db) == (1, 1, 1)


def test_the_second_submission_of_the_same_visit_conflicts_on_its_number(db, kit_world, as_):
    to_site(db, kit_world.active[:1] + kit_world.placebo[:1])
    mette = as_("mette")
    read = mette.get(API).json()
    first = _sign(mette, read["figures_fingerprint"], read["next_sequence"])
    second = _sign(mette, read["figures_fingerprint"], read["next_sequence"])
    assert first.status_code == 201 and first.json()["next_sequence"] == 2
    assert (second.status_code, second.json()["field"]) == (409, "sequence")
    assert _written(db) == (1, 1, 1)


def test_a_read_does_not_grow_with_the_blinded_lots_nor_read_the_signed_figures(db, kit_world, as_):
    to_site(db, kit_world.active[:1] + kit_world.placebo[:1])
    mette = as_("mette")
    assert _sign(mette, mette.get(API).json()["figures_fingerprint"], 1).status_code == 201

    def read() -> list[tuple[str, int]]:
        found = []
        for url in (f"{API}&limit=2", PAGE):
            seen = statements(db, lambda url=url: found.append(mette.get(url).status_code))
            assert not [q for q in seen if re.search(r"accountability_verification\.figures[, ]", q)], \
                "no verification's figures are read"
        return [(url, len(seen)) for url in (API, PAGE)]

    few = read()
    add_blinded_lots(db, 12)
    assert read() == few
    assert len(mette.get(f"{API}&limit=2").json()["figures"]) == 2


def test_the_monitors_answers_are_the_same_whichever_arm_the_kit_that_moved_was_of(db, kit_world, worlds, tmp_path):
    """Two copies of one world, a verification signed in each at the same moment: then an active
    kit is returned in one, a placebo kit of the same blinded lot in the other."""
    twin = worlds.restore(db.world, tmp_path / "twin.db")
    start = datetime(2026, 6, 1, 9, tzinfo=UTC)
    try:
        shown = {}
        for arm, database, kit in (("active", db, kit_world.active[0]), ("placebo", twin, kit_world.placebo[0])):
            app = create_app(Settings(database_url=database.url, secret_key=SECRET, demo=False),
                             password_hasher=FAST_HASHER, database=database)
            with clock.held(lambda: start):
                to_site(database, kit_world.active[:2] + kit_world.placebo[:2])
                mette = sign_in(app, "mette")
                assert _sign(mette, mette.get(API).json()["figures_fingerprint"], 1).status_code == 201
            with clock.held(lambda: start + timedelta(minutes=5)):
                with database.write() as s:
                    kits.move(s, actor_of(database, "frida"), kits.by_number(s, kit), "return", reason="not needed")
                first = mette.get(f"{API}&limit=1")
                assert first.status_code == 200, first.text
                answers = [first.text, mette.get(f"{API}&limit=1&after={first.json()['figures_next']}").text,
                           _content(mette.get(PAGE).text)]
            shown[arm] = answers
            assert first.json()["status"] == "changed since verification"
        assert shown["active"] == shown["placebo"]
    finally:
        worlds.release(twin)
