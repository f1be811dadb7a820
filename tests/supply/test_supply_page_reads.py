"""The supply manager's pages do not grow with the years: ten years make thousands of blinded lots
and packaging runs (8,334 in the pages benchmark), and the overview, the packaging and label forms
read and rendered every one. Now the overview shows each study's newest runs, the forms take a
typed or scanned blinded-lot code, and the runs and blinded lots are keyset-paged lists."""
from __future__ import annotations

import re
from datetime import date

import pytest
from sqlalchemy import event, func, select

from cellbench import studies
from cellbench.clock import utcnow
from cellbench.labels import printing as labelling
from cellbench.models import AuditEvent, BlindedLot, Kit, KitQuarantine, LabelRun, PackagingRun, User
from cellbench.web import supply_lots

STUDY = "NCT07290946"
YEARS = 30  # blinded lots (each with its run) added to stand for the years


def _add_years_of_runs(db, n: int = YEARS) -> list[str]:
    """n more blinded lots of the study, each made by a run of its own (as a packaging run makes
    one), with codes after the kit world's; their codes."""
    with db.write() as s:
        study = studies.by_code(s, STUDY)
        sara = s.scalars(select(User).where(User.username == "sara")).one()
        codes = []
        for i in range(n):
            blinded = BlindedLot(code=f"XB27-{i + 1:03d}", study_id=study.id, expiry=date(2028, 1, 1),
                                 created_at=utcnow())
            s.add(blinded)
            s.flush()
            s.add(PackagingRun(number=f"PR-2027-{i + 1:04d}", study_id=study.id, blinded_lot_id=blinded.id,
                               kit_count=8, created_by=sara.id, created_at=utcnow()))
            codes.append(blinded.code)
    return codes


def _statements(db, client, url: str) -> tuple[int, str]:
    seen: list[str] = []

    def note(_conn, _cursor, statement, *_rest) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        response = client.get(url)
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    assert response.status_code == 200, (url, response.status_code)
    return len(seen), response.text


def _count(db, model) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(model))


PAGES = ["/supply", f"/supply/packaging/new?study={STUDY}", f"/labels/new?study={STUDY}",
         "/supply/blinded-lots", f"/supply/packaging?study={STUDY}", "/supply/blinded-lots/XB26-001"]

LISTING_NONE = PAGES[1:3] + PAGES[5:]


@pytest.mark.parametrize("url", PAGES)
def test_the_supply_pages_run_as_many_statements_whatever_the_number_of_blinded_lots(kit_world, as_, db, url):
    sara = as_("sara")
    sara.get(url)  # the first request of a client sets up what every later one reuses
    before, _ = _statements(db, sara, url)
    added = _add_years_of_runs(db)
    after, text = _statements(db, sara, url)
    assert after == before, f"{url}: {before} statements with one blinded lot, {after} with {YEARS + 1}"
    if url in LISTING_NONE:
        assert not [code for code in added if code in text], "the page names no blinded lot it was not asked for"


def test_the_overview_shows_each_studys_newest_runs_and_leads_to_the_rest(kit_world, as_, db):
    added = _add_years_of_runs(db)
    page = as_("sara").get("/supply").text
    assert [code for code in reversed(added) if code in page] == list(reversed(added))[:5], "the five newest runs"
    assert f'href="/supply/packaging?study={STUDY}"' in page
    assert '<input name="code"' in page and 'action="/supply/blinded-lots"' in page, "a blinded lot is typed or scanned"
    assert "<option value=\"XB2" not in page


def test_the_blinded_lots_and_runs_are_walked_once_page_by_page(kit_world, as_, db, monkeypatch):
    added = _add_years_of_runs(db, 7)
    monkeypatch.setattr(supply_lots, "PAGE_SIZE", 3)
    sara = as_("sara")
    for url, pattern, expected in [
            (f"/supply/blinded-lots?study={STUDY}", r'<td class="nowrap"><a href="/supply/blinded-lots/([^"]+)">',
             ["XB26-001", *added]),
            (f"/supply/packaging?study={STUDY}", r'<td class="nowrap"><a href="/supply/packaging/([^"]+)">',
             [f"PR-2027-{i:04d}" for i in range(7, 0, -1)] + [kit_world.run])]:
        walked, pages = [], 0
        while url:
            page = sara.get(url)
            assert page.status_code == 200
            walked += re.findall(pattern, page.text)
            found = re.search(r'href="([^"]+)" rel="next"', page.text)
            url = found.group(1).replace("&amp;", "&") if found else ""
            pages += 1
        assert walked == expected and pages == 3
    first = sara.get(f"/supply/blinded-lots?study={STUDY}").text
    assert re.search(r'XB26-001</a></td>\s*<td class="nowrap">[0-9-]+</td><td class="num">8</td>', first), \
        "each lot with its kits"


def test_a_typed_blinded_lot_opens_its_page_and_an_unknown_code_is_refused_naming_the_field(kit_world, as_):
    sara = as_("sara")
    opened = sara.get("/supply/blinded-lots?code=xb26-001", follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/supply/blinded-lots/XB26-001"
    unknown = sara.get("/supply/blinded-lots?code=XB99-999")
    assert unknown.status_code == 404
    marked = r'<label class="field invalid"><span>Open a blinded lot</span>\s*<input name="code" value="XB99-999"'
    assert re.search(marked, unknown.text), "the field is marked and what was typed is kept"
    assert "No blinded lot &#39;XB99-999&#39;" in unknown.text or "No blinded lot 'XB99-999'" in unknown.text
    assert sara.get("/supply/blinded-lots?after=nonsense").status_code == 400


def test_a_label_run_for_an_unknown_blinded_lot_is_refused_naming_the_field_and_prints_nothing(kit_world, as_, db):
    sara = as_("sara")
    events = _count(db, AuditEvent)
    refused = sara.submit("/labels", {"study": STUDY, "blinded_lot": "XB99-999", "kit_numbers": "", "kind": "outer",
                                      "output": "zpl"})
    assert refused.status_code == 404
    marked = r'<label class="field invalid"><span>Blinded lot</span>\s*<input name="blinded_lot" value="XB99-999"'
    assert re.search(marked, refused.text), "the field is marked and what was typed is kept"
    assert 'value="zpl" checked' in refused.text
    assert _count(db, LabelRun) == 0 and _count(db, AuditEvent) == events
    with db.read() as s:
        assert not s.scalars(select(AuditEvent).where(AuditEvent.action == labelling.PRINTED_ACTION)).all()


def test_the_label_form_typed_from_a_blinded_lots_link_names_its_study(kit_world, as_):
    form = as_("sara").get("/labels/new?blinded_lot=XB26-001").text
    assert '<input name="blinded_lot" value="XB26-001"' in form and f'<option value="{STUDY}" selected' in form
    assert "<option value=\"XB26" not in form


def test_the_quarantine_page_names_only_its_kits_blinded_lots(kit_world, as_, db):
    added = _add_years_of_runs(db)
    sara = as_("sara")
    opened = sara.submit("/supply/quarantines", {"lot": kit_world.asc_lot, "policy": "blinded_lot", "reason": "check"})
    assert opened.status_code == 303
    with db.read() as s:
        kq = s.scalars(select(KitQuarantine)).one()
        assert kq.kit_count == _count(db, Kit)
    page = sara.get(f"/supply/quarantines/{kq.number}").text
    assert "XB26-001" in page and not [code for code in added if code in page]
