"""The pages that list one row per blinded lot (issue 18): the accountability list and the study's
blinded lots. A page reads the same statements with twenty blinded lots as with two; walked a few
rows a page, every row is shown once; the totals over all rows equal a recount of the kit rows; a
discrepancy is found by a filter, not by paging through every row; and a blinded role's page is the
same whichever arm the kit that moved was of."""
from __future__ import annotations

import re
from datetime import date

from sqlalchemy import event, select

from cellbench import accountability, kit_counts, kits, pagination, studies
from cellbench.accountability import listing
from cellbench.app import create_app
from cellbench.clock import utcnow
from cellbench.config import Settings
from cellbench.models import BlindedLot, Kit, KitState, Site

from ..conftest import FAST_HASHER, SECRET, actor_of, sign_in
from ..test_pagination_lists import assert_each_once_in_order, walk, whole
from ..trialworld import SITE, STUDY, to_site

PAGES = [f"/accountability?study={STUDY}", f"/accountability?study={STUDY}&site={SITE}",
         f"/accountability?study={STUDY}&discrepant=1", f"/api/v1/accountability?study={STUDY}",
         f"/api/v1/accountability?study={STUDY}&place={SITE}", f"/studies/{STUDY}", f"/api/v1/studies/{STUDY}",
         f"/accountability/report.pdf?study={STUDY}&site={SITE}"]


def add_blinded_lots(db, n: int, prefix: str = "XT") -> list[str]:
    """n more blinded lots of the study, each with a kit at the cell bench and one at the site, the
    running counts rebuilt from the kit rows (as the bulk builders do)."""
    with db.write() as s:
        study = studies.by_code(s, STUDY)
        site = s.scalars(select(Site).where(Site.code == SITE)).one()
        codes = []
        for i in range(n):
            lot = BlindedLot(code=f"{prefix}{i:04d}", study_id=study.id, expiry=date(2030, 1, 1), created_at=utcnow())
            s.add(lot)
            s.flush()
            s.add_all([Kit(number=f"{prefix}{i:04d}-B", study_id=study.id, blinded_lot_id=lot.id,
                           state=KitState.released, created_at=utcnow()),
                       Kit(number=f"{prefix}{i:04d}-S", study_id=study.id, blinded_lot_id=lot.id,
                           state=KitState.at_site, site_id=site.id, location=SITE, created_at=utcnow())])
            codes.append(lot.code)
        kit_counts.refill(s)
    return codes


def statements(db, read) -> list[str]:
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_rest) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        read()
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    return seen


def test_the_list_pages_read_as_many_statements_with_twenty_blinded_lots_as_with_two(db, kit_world, as_):
    to_site(db, kit_world.active[:1] + kit_world.placebo[:1])
    add_blinded_lots(db, 2, "XA")
    for who in ("mette", "frida", "sara"):  # a pharmacist's pages are narrowed to her sites; sign in first
        as_(who).get("/")

    def read_all(who: str) -> dict[str, int]:
        found = {}
        for url in PAGES:
            if url.startswith("/accountability/report.pdf") and who == "sara":
                continue  # the site's report is the monitor's and the pharmacy's
            got: list = []
            seen = statements(db, lambda url=url, got=got: got.append(as_(who).get(url)))
            assert got[0].status_code == 200, (who, url, got[0].text[:300])
            found[url] = len(seen)
        return found

    few = {who: read_all(who) for who in ("mette", "frida", "sara")}
    add_blinded_lots(db, 18, "XB")
    many = {who: read_all(who) for who in ("mette", "frida", "sara")}
    assert many == few, "no page reads a statement per blinded lot"


def test_the_accountability_rows_are_walked_once_each_while_blinded_lots_are_added(db, kit_world):
    add_blinded_lots(db, 7, "XA")
    with db.read() as s:
        study = studies.by_code(s, STUDY)

    def read(s, ask):
        return listing.listing(s, ask, study).page

    def key(row) -> tuple[str, str]:
        return row.place_key, row.blinded_lot.code

    before = whole(db, read, key)
    assert len(before) == 15, "seven lots at two places, and the kit world's lot at the bench"
    assert before[:2] == [(SITE, "XA0006"), (SITE, "XA0005")], "newest blinded lot first within a place"
    added: list[str] = []
    walked = walk(db, read, key, between=lambda n: added.extend(add_blinded_lots(db, 1, f"Y{n}")) if n < 2 else None)
    assert_each_once_in_order(walked, before)
    walked_site = walk(db, lambda s, ask: listing.listing(s, ask, study, s.scalars(
        select(Site).where(Site.code == SITE)).one()).page, key)
    assert walked_site == [k for k in whole(db, read, key) if k[0] == SITE]


def test_the_totals_over_every_row_are_a_recount_of_the_kit_rows(db, kit_world):
    to_site(db, kit_world.active[:2] + kit_world.placebo[:1])
    add_blinded_lots(db, 5)
    with db.read() as s:
        study = studies.by_code(s, STUDY)
        kept = listing.totals(s, study)
        recount: dict[str, int] = {}
        for kit in s.scalars(select(Kit).where(Kit.study_id == study.id, Kit.blinded_lot_id.is_not(None))):
            if (name := accountability.category_of(kit.state)) is not None:
                recount[name] = recount.get(name, 0) + 1
        assert kept == accountability.balance(recount)
        rows = listing.listing(s, pagination.Ask(None, SECRET, pagination.MAX_PAGE_SIZE), study).page.rows
        assert {name: sum(r.counts[name] for r in rows) for name in kept} == kept, "the totals are the rows' sum"
        assert kept["released"] == sum(kept[name] for name in accountability.RELEASED_TERMS)
        assert kit_counts.recount(s) == []


def test_the_totals_at_a_place_and_within_a_readers_sites_read_the_sums_by_place_not_the_blinded_lots(
        db, kit_world):
    to_site(db, kit_world.active[:2] + kit_world.placebo[:1])
    add_blinded_lots(db, 5)
    reader = actor_of(db, "mette")  # a pharmacist: her sites, and the cell bench
    with db.read() as s:
        study = studies.by_code(s, STUDY)
        site = s.scalars(select(Site).where(Site.code == SITE)).one()

        def recount(place) -> dict[str, int]:
            found: dict[str, int] = {}
            for kit in s.scalars(select(Kit).where(Kit.study_id == study.id, Kit.blinded_lot_id.is_not(None))):
                if place in ("all", kit.site_id) and (name := accountability.category_of(kit.state)) is not None:
                    found[name] = found.get(name, 0) + 1
            return accountability.balance(found)

        for place, key in (("all", "all"), (site, site.id), (None, None)):
            seen = statements(db, lambda place=place: listing.totals(s, study, place, reader))
            assert listing.totals(s, study, place, reader) == recount(key), place
            assert seen and not any("kit_count" in sql for sql in seen), "one aggregate of a dozen rows a place"
            assert not any("nullif" in sql for sql in seen), "the reader's places as an IN list the index ranges over"
        lot = s.scalars(select(BlindedLot).where(BlindedLot.code == "XT0001")).one()
        assert listing.totals(s, study, site, blinded_lot=lot)["on_hand"] == 1, "one blinded lot: its own counters"


def test_a_discrepancy_is_counted_at_the_top_and_shown_alone_by_its_filter(db, kit_world, as_):
    to_site(db, kit_world.active[:2] + kit_world.placebo[:1])
    add_blinded_lots(db, 12)
    with db.read() as s:
        lot = kits.view(s, kits.by_number(s, kit_world.active[0])).blinded_lot
    counted = as_("frida").post("/api/v1/reconciliations", json={
        "study": STUDY, "place": SITE, "blinded_lot": lot, "counted_in_stock": 1, "comment": "two missing",
        "password": "correct horse battery"})
    assert counted.status_code == 201, counted.text
    every = as_("mette").get(f"/api/v1/accountability?study={STUDY}&limit=5").json()
    assert every["discrepant"] == 1 and len(every["rows"]) == 5 and every["next"]
    only = as_("mette").get(f"/api/v1/accountability?study={STUDY}&discrepant=true").json()
    assert [(r["place"], r["blinded_lot"], r["status"]) for r in only["rows"]] == [(SITE, lot, "discrepancy")]
    assert only["next"] is None and only["totals"] == every["totals"]
    page = as_("mette").get(f"/accountability?study={STUDY}").text
    assert "1 row in discrepancy" in page and "discrepant=1" in page
    filtered = as_("mette").get(f"/accountability?study={STUDY}&discrepant=1").text
    assert re.findall(r'<a href="/accountability/[^"]+">([^<]+)</a>', filtered) == [lot]


def test_a_bad_cursor_is_refused_naming_after(db, kit_world, as_):
    for url in (f"/api/v1/accountability?study={STUDY}&after=nonsense", f"/api/v1/studies/{STUDY}?after=nonsense"):
        response = as_("mette").get(url)
        assert response.status_code == 400 and "after" in response.text, url


def test_the_study_pages_walk_the_blinded_lots_newest_first_with_the_studys_totals(db, kit_world, as_):
    codes = add_blinded_lots(db, 5)
    first = as_("mette").get(f"/api/v1/studies/{STUDY}?limit=4").json()
    assert [b["code"] for b in first["blinded_lots"]] == codes[::-1][:4]
    rest = as_("mette").get(f"/api/v1/studies/{STUDY}?limit=4&after={first['next']}").json()
    assert len(first["blinded_lots"]) + len(rest["blinded_lots"]) == first["blinded_lot_count"] == 6
    assert rest["next"] is None
    assert sum(first["kits_by_state"].values()) == 8 + 10, "the kit world's eight and two a lot"
    with db.read() as s:
        study = studies.by_code(s, STUDY)
        walked = walk(db, lambda s, ask: kits.blinded_lot_page(s, ask, study).page, lambda row: row[0].code)
        assert walked == [b.code for b in sorted(kits.blinded_lots(s, study), key=lambda b: -(b.id or 0))]


def _content(text: str) -> str:
    """A page's main content, or an answer's JSON, without what differs by session (form tokens)."""
    main = re.search(r"<main.*?</main>", text, re.S)
    return re.sub(r'(name="csrf_token" value=")[^"]+', r"\1", main.group(0) if main else text)


def test_a_blinded_roles_pages_are_the_same_whichever_arm_the_kit_that_moved_was_of(db, kit_world, worlds, tmp_path,
                                                                                 people):
    """Two copies of one world: in one an active kit comes back to the pharmacy, in the other a
    placebo kit of the same blinded lot; the monitor's and the pharmacist's pages are the same."""
    twin = worlds.restore(db.world, tmp_path / "twin.db")
    try:
        shown = {}
        for arm, database, kit in (("active", db, kit_world.active[0]), ("placebo", twin, kit_world.placebo[0])):
            to_site(database, kit_world.active[:2] + kit_world.placebo[:2])
            with database.write() as s:
                kits.move(s, actor_of(database, "frida"), kits.by_number(s, kit), "return", reason="not needed")
            app = create_app(Settings(database_url=database.url, secret_key=SECRET, demo=False),
                             password_hasher=FAST_HASHER, database=database)
            shown[arm] = {who: [_content(sign_in(app, who).get(url).text) for url in PAGES[:-1]]
                          for who in ("mette", "frida")}
        for who in ("mette", "frida"):
            for url, active, placebo in zip(PAGES, shown["active"][who], shown["placebo"][who], strict=False):
                assert active == placebo, (who, url, [a for a, b in zip(active.splitlines(), placebo.splitlines(),
                                                                         strict=False) if a != b][:3])
    finally:
        worlds.release(twin)
