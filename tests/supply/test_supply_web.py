"""The supply manager's pages and JSON API (unblinded): lists made, checked and sealed, a packaging
run, blinded-lot compositions, the unblinded kit view, and a manual quarantine that QA lifts.
Blinded roles get 403 on every one of these routes, pages and API alike."""
from __future__ import annotations

import ast
import re

import pytest
from sqlalchemy import event, func, select

from cellbench import identifiers
from cellbench.app import iter_routes
from cellbench.models import AuditEvent, BlindedLot, Kit, KitQuarantine, KitState, PackagingRun, Study

from ..conftest import PASSWORD, ROOT
from ..kitworld import build, load_studies, package, released_lot, sealed_kit_list

STUDY = "NCT07290946"
BLINDED = ("frida", "ida", "mette", "adam")


def _events(db, action: str, **where) -> list[AuditEvent]:
    with db.read() as s:
        query = select(AuditEvent).where(AuditEvent.action == action)
        for name, value in where.items():
            query = query.where(getattr(AuditEvent, name) == value)
        return list(s.scalars(query.order_by(AuditEvent.seq)))


def _count(db, model) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(model))


def _invalid(page: str, name: str) -> bool:
    """The form re-rendered with the named field (or group of checkboxes) marked and its message beside it."""
    marked = re.finditer(r'<(label|fieldset) class="(?:field|roles) invalid">(.*?)</\1>', page, re.S)
    return any(f'name="{name}"' in m.group(2) and '<small class="why">' in m.group(2) for m in marked)


# --- studies and lists ----------------------------------------------------------------------------


def test_the_supply_manager_loads_the_study_definitions_from_the_overview(as_, db):
    sara = as_("sara")
    empty = sara.get("/supply")
    assert empty.status_code == 200 and "Load study definitions" in empty.text
    assert "Load study definitions" not in as_("peter").get("/supply").text, "only the supply manager loads them"
    response = sara.submit("/supply/studies/load")
    assert response.status_code == 303
    assert "2+study+definitions+loaded" in response.headers["location"].replace("%20", "+")
    page = sara.get("/supply").text
    assert STUDY in page and "NCT06805448" in page and "Load study definitions" not in page
    assert {e.entity_id for e in _events(db, "study loaded")} == {STUDY, "NCT06805448"}


def test_a_kit_list_is_generated_checked_and_sealed_through_the_pages(as_, db, people):
    load_studies(db)
    sara = as_("sara")
    response = sara.submit(f"/supply/studies/{STUDY}/lists", {"kind": "kit", "size": "8", "seed": "page-seed",
                                                              "block_sizes": "4"})
    assert response.status_code == 303
    url = response.headers["location"].split("?")[0]
    assert url == f"/supply/studies/{STUDY}/lists/kit/1"
    page = sara.get(url).text
    assert "page-seed" in page and "draft" in page and "Sign and seal" in page
    assert re.search(r"\(active\)</td><td class=\"num\">4</td>", page) and \
        re.search(r"\(placebo\)</td><td class=\"num\">4</td>", page), "arm counts of a 1:1 list of 8 in blocks of 4"
    reads = {e.field for e in _events(db, "sealed read", user_name="Sara Supply")}
    assert {"lists", "list entries", "list arm counts"} <= reads, "every look at the list is on the record"

    refused = sara.submit(f"{url}/seal", {"password": "not my password"})
    assert refused.status_code == 401 and _invalid(refused.text, "password") and "Wrong password" in refused.text
    assert _count(db, Kit) == 0, "no signature, no kits"
    assert _events(db, "password check failed"), "the failed signature is on the record"

    sealed_page = sara.submit(f"{url}/seal", {"password": PASSWORD})
    assert sealed_page.status_code == 303 and "sealed" in sealed_page.headers["location"]
    page = sara.get(url).text
    assert "Sara Supply" in page and "approved" in page and "Sign and seal" not in page
    with db.read() as s:
        assert {k.state for k in s.scalars(select(Kit))} == {KitState.planned} and _count(db, Kit) == 8
    assert [e.new_value for e in _events(db, "kit list sealed")] == ["sealed"]


def test_generating_with_bad_input_names_the_field_and_stores_nothing(as_, db, people):
    load_studies(db)
    sara = as_("sara")
    for data, name in [({"kind": "kit", "size": "lots"}, "size"), ({"kind": "kit", "size": "0"}, "size"),
                       ({"kind": "kit", "size": "8", "block_sizes": "4,x"}, "block_sizes"),
                       ({"kind": "envelope", "size": "8"}, "kind")]:
        page = sara.submit(f"/supply/studies/{STUDY}/lists", data)
        assert page.status_code == 422, data
        assert _invalid(page.text, name), data
    assert not _events(db, "kit list created") and not _events(db, "randomisation list created")


def test_a_csv_list_is_imported_by_upload_and_a_bad_file_is_refused_naming_the_file(as_, db, people):
    load_studies(db)
    sara = as_("sara")
    numbers = identifiers.new_kit_numbers(4)
    pairs = zip(numbers, ["active", "placebo"] * 2, strict=True)
    text = "kit_number,arm\n" + "".join(f"{n},{arm}\n" for n, arm in pairs)
    response = sara.submit(f"/supply/studies/{STUDY}/lists/import", {"kind": "kit"},
                           files={"file": ("kits.csv", text.encode(), "text/csv")})
    assert response.status_code == 303
    page = sara.get(response.headers["location"].split("?")[0]).text
    assert "imported" in page and all(n in page for n in numbers)
    bad = sara.submit(f"/supply/studies/{STUDY}/lists/import", {"kind": "kit"},
                      files={"file": ("kits.csv", b"kit_number,arm\nNOT-A-KIT,active\n", "text/csv")})
    assert bad.status_code == 422 and "Line 2: kit number" in bad.text
    assert _invalid(bad.text, "file")
    missing = sara.submit(f"/supply/studies/{STUDY}/lists/import", {"kind": "kit"})
    assert missing.status_code == 422 and "Choose the CSV file" in missing.text
    assert len(_events(db, "kit list created")) == 1


def test_a_draft_is_discarded_only_with_a_reason(as_, db, people):
    load_studies(db)
    sara = as_("sara")
    url = sara.submit(f"/supply/studies/{STUDY}/lists", {"kind": "randomisation", "size": "6"}).headers["location"]
    url = url.split("?")[0]
    refused = sara.submit(f"{url}/discard", {"reason": "  "})
    assert refused.status_code == 422 and _invalid(refused.text, "reason")
    assert sara.submit(f"{url}/discard", {"reason": "wrong block sizes"}).status_code == 303
    assert [(e.new_value, e.reason) for e in _events(db, "randomisation list discarded")] == [
        ("discarded", "wrong block sizes")]
    assert "Sign and seal" not in sara.get(url).text


def test_qa_and_qp_read_the_lists_but_do_not_make_or_seal_them(as_, db, people):
    load_studies(db)
    sealed_kit_list(db, STUDY, 4)
    for who in ("anna", "peter"):
        client = as_(who)
        assert client.get("/supply").status_code == 200
        page = client.get(f"/supply/studies/{STUDY}/lists/kit/1")
        assert page.status_code == 200 and "Sign and seal" not in page.text
        assert client.submit(f"/supply/studies/{STUDY}/lists", {"kind": "kit", "size": "4"}).status_code == 403
        assert client.get(f"/supply/studies/{STUDY}/lists/new").status_code == 403
    assert len(_events(db, "kit list created")) == 1


def test_the_quarantine_policy_changes_only_with_a_reason(as_, db, people):
    load_studies(db)
    sara = as_("sara")
    url = f"/supply/studies/{STUDY}/quarantine-policy"
    refused = sara.submit(url, {"quarantine_policy": "blinded_lot", "reason": ""})
    assert refused.status_code == 422 and "A reason is required" in refused.text
    chosen = {"quarantine_policy": "blinded_lot", "reason": "sponsor prefers whole lots"}
    assert sara.submit(url, chosen).status_code == 303
    with db.read() as s:
        assert s.scalars(select(Study.quarantine_policy).where(Study.code == STUDY)).one() == "blinded_lot"
    assert [(e.old_value, e.new_value, e.reason) for e in _events(db, "quarantine policy changed")] == [
        ("proportionate", "blinded_lot", "sponsor prefers whole lots")]
    assert as_("anna").submit(url, {"quarantine_policy": "proportionate", "reason": "x"}).status_code == 403


# --- packaging ----------------------------------------------------------------------------------------


@pytest.fixture
def ready_to_package(db, people, effective_specs):
    """Studies loaded, a sealed kit list of 8, a released ASC and a released placebo lot."""
    load_studies(db)
    sealed_kit_list(db, STUDY, 8)
    return released_lot(db, "asc", "ASC-2026-0201", units=16), released_lot(db, "placebo", "PLB-2026-0201", units=16)


def test_a_packaging_run_through_the_page_fills_kits_and_shows_them_unblinded(as_, db, ready_to_package):
    asc, placebo = ready_to_package
    sara = as_("sara")
    form = sara.get(f"/supply/packaging/new?study={STUDY}").text
    assert f'value="{asc}"' in form and f'value="{placebo}"' in form and "16" in form, "free units shown"
    response = sara.submit("/supply/packaging", {"study": STUDY, "kit_count": "8", "asc_lots": [asc],
                                                 "placebo_lots": [placebo], "blinded_lot": ""})
    assert response.status_code == 303
    url = response.headers["location"].split("?")[0]
    with db.read() as s:
        run = s.scalars(select(PackagingRun)).one()
        assert url == f"/supply/packaging/{run.number}" and run.kit_count == 8
        assert {k.state for k in s.scalars(select(Kit))} == {KitState.released}
    page = sara.get(url).text
    assert page.count('href="/supply/kits/') == 8
    assert page.count(f'<td class="nowrap">{asc}</td>') == 4 and page.count(f'<td class="nowrap">{placebo}</td>') == 4
    assert page.count(f"{asc}-V") == 8 and page.count(f"{placebo}-U") == 8, "two units per kit"
    assert asc in page and placebo in page and "Blinded expiry" in page
    assert f'href="/labels/new?study={STUDY}&amp;blinded_lot=' in page, "the run leads on to printing its labels"
    assert {e.field for e in _events(db, "sealed read")} >= {"kits of a packaging run (packaging run page)",
                                                             "kit contents"}


def test_a_packaging_run_page_reads_its_kits_contents_together_and_logs_each_kit(as_, db, ready_to_package):
    """Two reads of the compartment for the page's kits, whatever their number (it was two a kit),
    and still one logged read a kit, naming it."""
    asc, placebo = ready_to_package
    sara = as_("sara")
    url = sara.submit("/supply/packaging", {"study": STUDY, "kit_count": "8", "asc_lots": [asc],
                                            "placebo_lots": [placebo], "blinded_lot": ""}).headers["location"]
    reads: list[str] = []

    def count(_conn, _cursor, statement, *_rest) -> None:
        if "FROM sealed_kit_arm" in statement or "FROM sealed_kit_unit JOIN vial" in statement:
            reads.append(statement)

    seq = _last_seq(db)
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        page = sara.get(url.split("?")[0]).text
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert page.count('href="/supply/kits/') == 8
    assert len(reads) == 2, reads
    with db.read() as s:
        kits = set(s.scalars(select(Kit.number)))
        looked = [e.entity_id for e in s.scalars(select(AuditEvent).where(
            AuditEvent.seq > seq, AuditEvent.action == "sealed read", AuditEvent.field == "kit contents"))]
    assert sorted(looked) == sorted(kits), "one logged read for each kit shown"


def _last_seq(db) -> int:
    with db.read() as s:
        return s.scalar(select(func.max(AuditEvent.seq))) or 0


def test_a_packaging_run_with_bad_input_names_the_field_and_packages_nothing(as_, db, ready_to_package):
    asc, placebo = ready_to_package
    sara = as_("sara")
    cases = [({"kit_count": "8", "placebo_lots": [placebo]}, "asc_lots"),
             ({"kit_count": "many", "asc_lots": [asc], "placebo_lots": [placebo]}, "kit_count"),
             ({"kit_count": "9", "asc_lots": [asc], "placebo_lots": [placebo]}, "kit_count"),
             ({"kit_count": "8", "asc_lots": [asc], "placebo_lots": [placebo], "blinded_lot": "XB99-999"},
              "blinded_lot")]
    for data, name in cases:
        page = sara.submit("/supply/packaging", {"study": STUDY, **data})
        assert page.status_code in (404, 422), data
        assert _invalid(page.text, name), data
        if name != "asc_lots":
            assert f'value="{asc}" id="asc_lots-1" checked' in page.text, "the choices are kept"
        if name == "blinded_lot":
            assert '<input name="blinded_lot" value="XB99-999"' in page.text, "the typed code is kept"
    assert _count(db, PackagingRun) == 0 and not _events(db, "kit package")


# --- the unblinded views --------------------------------------------------------------------------------


def test_the_unblinded_kit_view_shows_arm_and_units_and_records_the_look(kit_world, as_, db):
    active, placebo = kit_world.pair
    page = as_("sara").get(f"/supply/kits/{active}").text
    assert re.search(r"Arm: <strong>[^<]+</strong> <span class=\"tag\">active</span>", page)
    assert f"{kit_world.asc_lot}-V" in page and kit_world.asc_lot in page and "released" in page
    assert f'href="/kits/{active}"' in page, "a link to the blinded kit page"
    looks = _events(db, "sealed read", entity_id=active, field="kit contents")
    assert [(e.user_name, e.visibility) for e in looks] == [("Sara Supply", "unblinded")]
    other = as_("peter").get(f"/supply/kits/{placebo}").text
    assert '<span class="tag">placebo</span>' in other and f"{kit_world.placebo_lot}-U" in other


def test_the_composition_of_a_blinded_lot_gives_lots_per_arm_and_the_earliest_expiry(kit_world, as_, db):
    with db.read() as s:
        kit = s.scalars(select(Kit).where(Kit.number == kit_world.active[0])).one()
        blinded = s.get(BlindedLot, kit.blinded_lot_id)
    page = as_("anna").get(f"/supply/blinded-lots/{blinded.code}").text
    active, placebo = '<span class="tag">active</span>', '<span class="tag">placebo</span>'
    order = [page.index(part) for part in (active, kit_world.asc_lot, placebo, kit_world.placebo_lot)]
    assert order == sorted(order), "each arm with its own lot"
    assert page.count("<small>4 kits</small>") == 2
    assert f"<strong>{blinded.expiry}</strong>" in page and "earliest: the blinded expiry" in page
    assert _events(db, "sealed read", field="blinded lot composition")


# --- quarantine ---------------------------------------------------------------------------------------


def test_a_manual_quarantine_through_the_page_and_qas_signed_lift(kit_world, as_, db):
    sara, anna = as_("sara"), as_("anna")
    refused = sara.submit("/supply/quarantines", {"lot": kit_world.asc_lot, "policy": "", "reason": ""})
    assert refused.status_code == 422 and "A reason is required" in refused.text and _count(db, KitQuarantine) == 0
    unknown = sara.submit("/supply/quarantines", {"lot": "ASC-1999-0001", "reason": "x"})
    assert unknown.status_code == 404 and _invalid(unknown.text, "lot")

    response = sara.submit("/supply/quarantines", {"lot": kit_world.asc_lot, "policy": "blinded_lot",
                                                   "reason": "complaint about vial labels"})
    assert response.status_code == 303
    url = response.headers["location"].split("?")[0]
    with db.read() as s:
        kq = s.scalars(select(KitQuarantine)).one()
        assert url == f"/supply/quarantines/{kq.number}"
        assert (kq.state, kq.cause, kq.policy, kq.kit_count) == ("open", "manual", "blinded_lot", 8)
        assert {k.state for k in s.scalars(select(Kit))} == {KitState.quarantined}
    page = sara.get(url).text
    assert "complaint about vial labels" in page and "Sign and lift" not in page, "only QA decides"
    assert page.count('href="/supply/kits/') == 8 and page.count("<td>Placebo: isotonic saline</td>") == 4, \
        "the whole blinded lot, both arms, each kit with its arm"
    assert "<strong>1</strong> open kit quarantine awaits your decision" in anna.get("/").text

    wrong = anna.submit(f"{url}/lift", {"reason": "labels checked", "password": "nope"})
    assert wrong.status_code == 401 and "Wrong password" in wrong.text
    with db.read() as s:
        assert s.scalars(select(KitQuarantine.state)).one() == "open"
    assert sara.submit(f"{url}/lift", {"reason": "x", "password": PASSWORD}).status_code == 403
    lifted = anna.submit(f"{url}/lift", {"reason": "labels checked, all correct", "password": PASSWORD})
    assert lifted.status_code == 303
    with db.read() as s:
        assert s.scalars(select(KitQuarantine.state)).one() == "lifted"
        assert {k.state for k in s.scalars(select(Kit))} == {KitState.released}
    page = anna.get(url).text
    assert "Anna QA" in page and "released" in page and "labels checked, all correct" in page
    assert [e.new_value for e in _events(db, "kit quarantine lifted")] == ["lifted"]
    assert "open kit quarantine" not in anna.get("/").text


def test_the_quarantine_list_shows_open_ones_first(db, people, effective_specs, as_):
    world = build(db, kits=8, listed=16)
    second = released_lot(db, "asc", "ASC-2026-0102", units=16)
    released_lot(db, "placebo", "PLB-2026-0102", units=16)
    package(db, STUDY, 8, [second], ["PLB-2026-0102"])  # a second blinded lot
    sara, anna = as_("sara"), as_("anna")
    older = sara.submit("/supply/quarantines", {"lot": world.asc_lot, "reason": "first"}).headers["location"]
    newer = sara.submit("/supply/quarantines", {"lot": second, "reason": "second"}).headers["location"]
    assert anna.submit(f"{newer.split('?')[0]}/lift", {"reason": "fine", "password": PASSWORD}).status_code == 303
    page = as_("peter").get("/supply/quarantines").text
    older_number, newer_number = older.split("?")[0].rsplit("/", 1)[1], newer.split("?")[0].rsplit("/", 1)[1]
    assert older_number < newer_number and page.index(older_number) < page.index(newer_number), "open first"
    assert "quarantined by hand" in page and world.asc_lot in page and second in page
    only_open = as_("peter").get("/supply/quarantines?state=open").text
    assert older_number in only_open and newer_number not in only_open
    assert as_("peter").get("/supply/quarantines?state=bogus").status_code == 422


# --- work queue ---------------------------------------------------------------------------------------


def test_the_supply_managers_home_says_when_kit_numbers_run_low(as_, db, people):
    load_studies(db)
    sealed_kit_list(db, STUDY, 4)
    home = as_("sara").get("/").text
    assert "low on kit numbers to package" in home and f"{STUDY}: 4 left" in home
    assert "kit numbers to package" not in as_("frida").get("/").text


# --- who may reach these routes -----------------------------------------------------------------------


def _supply_routes(app):
    for route in iter_routes(app.routes):
        if route.path.startswith(("/supply", "/api/v1/supply")):
            for method in route.methods - {"HEAD"}:
                yield method, route.path


def test_blinded_roles_get_403_on_every_supply_page_and_api_route(kit_world, app, as_, db):
    routes = sorted(set(_supply_routes(app)))
    assert len(routes) >= 30, routes
    values = {"{code}": STUDY, "{kind}": "kit", "{version}": "1", "{number}": kit_world.active[0],
              "{action}": "seal"}
    before = _count(db, AuditEvent)
    for who in BLINDED:
        client = as_(who)
        for method, path in routes:
            url = path
            for name, value in values.items():
                url = url.replace(name, value)
            if method == "GET":
                response = client.get(url, follow_redirects=False)
            elif path.startswith("/api/"):
                response = client.post(url, json={})
            else:
                response = client.submit(url, {"password": PASSWORD, "reason": "x"})
            assert response.status_code == 403, (who, method, path, response.status_code)
            assert "active" not in response.text and "placebo" not in response.text.replace("Placebo", ""), (who, path)
    with db.read() as s:
        new = s.scalars(select(AuditEvent).where(AuditEvent.seq > before)).all()
    assert not [e for e in new if e.action == "sealed read"], "a blinded request never reaches the sealed compartment"


def test_the_supply_modules_never_name_a_sealed_model():
    for module in ("cellbench/web/supply.py", "cellbench/api/supply.py"):
        tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
        named = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | \
                {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} | \
                {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert not {n for n in named if n.startswith("Sealed")}, module


# --- the JSON API --------------------------------------------------------------------------------------


def test_the_api_makes_and_seals_a_list_packages_it_and_reads_what_is_inside(as_, db, ready_to_package):
    asc, placebo = ready_to_package
    sara, anna = as_("sara"), as_("anna")
    created = sara.post(f"/api/v1/supply/studies/{STUDY}/lists", json={"kind": "kit", "size": 4, "seed": "api",
                                                                       "block_sizes": "4"})
    assert created.status_code == 201 and created.json()["version"] == 2 and created.json()["state"] == "draft"
    bad = sara.post(f"/api/v1/supply/studies/{STUDY}/lists", json={"kind": "kit", "size": 0})
    assert bad.status_code == 422 and bad.json()["field"] == "size"
    detail = sara.get(f"/api/v1/supply/studies/{STUDY}/lists/kit/2").json()
    assert detail["arm_counts"] == {"active": 2, "placebo": 2} and len(detail["entries"]) == 4
    assert detail["actions"] == ["seal", "discard"], "the list's lifecycle says what its maker may do"
    assert anna.get(f"/api/v1/supply/studies/{STUDY}/lists/kit/2").json()["actions"] == [], "QA reads only"
    refused = sara.post(f"/api/v1/supply/studies/{STUDY}/lists/kit/2/seal", json={"password": "x"})
    assert refused.json()["field"] == "password"
    sealed_list = sara.post(f"/api/v1/supply/studies/{STUDY}/lists/kit/2/seal", json={"password": PASSWORD}).json()
    assert sealed_list["state"] == "sealed" and sealed_list["signature"]["signer_name"] == "Sara Supply"
    assert anna.post(f"/api/v1/supply/studies/{STUDY}/lists", json={"kind": "kit", "size": 4}).status_code == 403

    run = sara.post("/api/v1/supply/packaging-runs", json={"study": STUDY, "kit_count": 8, "asc_lots": [asc],
                                                           "placebo_lots": [placebo]})
    assert run.status_code == 201, run.text
    body = run.json()
    assert body["total"] == 8 and {k["arm"] for k in body["kits"]} == {"active", "placebo"}
    assert all(len(k["units"]) == 2 for k in body["kits"]) and sorted(body["lots"]) == sorted([asc, placebo])
    again = anna.get(f"/api/v1/supply/packaging-runs/{body['number']}?limit=3").json()
    assert again["total"] == 8 and len(again["kits"]) == 3

    kit = body["kits"][0]
    unblinded = anna.get(f"/api/v1/supply/kits/{kit['kit_number']}").json()
    assert unblinded["arm"] == kit["arm"] and unblinded["units"][0]["lot_state"] == "released"
    composition = anna.get(f"/api/v1/supply/blinded-lots/{body['blinded_lot']}").json()
    assert set(composition["arms"]) == {"active", "placebo"} and composition["kits"] == 8
    assert composition["arms"]["active"][0]["lot"] == asc

    opened = sara.post("/api/v1/supply/quarantines", json={"lot": asc, "reason": "check"})
    assert opened.status_code == 201 and opened.json()[0]["state"] == "open"
    number = opened.json()[0]["number"]
    assert opened.json()[0]["actions"] == [], "the supply manager opens a quarantine; QA decides on it"
    assert anna.get(f"/api/v1/supply/quarantines/{number}").json()["actions"] == ["lift", "withdraw"]
    assert [q["number"] for q in anna.get("/api/v1/supply/quarantines?state=open").json()["quarantines"]] == [number]
    assert sara.post(f"/api/v1/supply/quarantines/{number}/withdraw",
                     json={"reason": "x", "password": PASSWORD}).status_code == 403
    withdrawn = anna.post(f"/api/v1/supply/quarantines/{number}/withdraw",
                          json={"reason": "labels wrong", "password": PASSWORD}).json()
    assert withdrawn["state"] == "withdrawn" and withdrawn["closure"]["meaning"] == "rejected"
    assert {k["state"] for k in withdrawn["kits"]} == {"withdrawn"}


def test_a_study_file_that_does_not_load_is_bad_input_naming_the_file_and_key(as_, db, people, tmp_path, monkeypatch):
    from cellbench import studies
    from cellbench.errors import InvalidInput

    from ..conftest import actor_of

    folder = tmp_path / "studies"
    folder.mkdir()
    good = (ROOT / "specs" / "studies" / f"{STUDY}.toml").read_text(encoding="utf-8")
    bad = re.sub(r"(?m)^target_enrolment = .*$", "target_enrolment = 0", good)
    assert bad != good
    (folder / f"{STUDY}.toml").write_text(bad, encoding="utf-8")
    with pytest.raises(InvalidInput) as refused, db.write() as s:
        studies.sync_from_files(s, actor_of(db, "sara"), root=tmp_path)
    assert refused.value.field == "study_file" and refused.value.status == 422
    assert refused.value.message.startswith(f"Study definition studies/{STUDY}.toml: study.target_enrolment: ")
    assert str(tmp_path) not in refused.value.message, "the server's folders are not shown"

    monkeypatch.setattr(studies.loading, "specs_root", lambda: tmp_path)
    page = as_("sara").submit("/supply/studies/load")
    assert page.status_code == 422, page.status_code
    assert f"studies/{STUDY}.toml: study.target_enrolment" in page.text
    assert _count(db, Study) == 0, "no study is loaded from a set with a bad file"
