"""Accountability by place and blinded lot, signed physical counts, and destruction only after a
balanced count and the sponsor's signed authorisation, with its certificate."""
from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from cellbench import accountability, clock, kits, signatures
from cellbench.clock import utcnow
from cellbench.models import AuditEvent, CustodyEvent, Destruction, Kit, KitState, Reconciliation, Signature

from ..conftest import actor_of, sign_in
from ..kitworld import arms
from ..trialworld import SITE, STUDY, to_site

ACTIVE_NAME = "Allogeneic adipose-derived mesenchymal stem cells"


@pytest.fixture
def site_stock(db, kit_world):
    """Six of the eight kits received at the site (setup); two stay at the cell bench."""
    at_site = sorted(kit_world.active[:3] + kit_world.placebo[:3])
    to_site(db, at_site)
    kit_world.at_site = at_site
    kit_world.at_bench = sorted(set(kit_world.active + kit_world.placebo) - set(at_site))
    with db.read() as s:
        kit_world.blinded_lot = kits.view(s, kits.by_number(s, at_site[0])).blinded_lot
    return kit_world


def _move(db, who: str, number: str, name: str, reason: str = "found at the stock check") -> None:
    with db.write() as s:
        kits.move(s, actor_of(db, who), kits.by_number(s, number), name, reason=reason)


def _count(client, counted, comment=None, place=SITE, lot=None, world=None):
    return client.post("/api/v1/reconciliations", json={
        "study": STUDY, "place": place, "blinded_lot": lot or world.blinded_lot, "counted_in_stock": counted,
        "comment": comment, "password": "correct horse battery"})


def _authorise(client, numbers, place=SITE):
    return client.post("/api/v1/destructions", json={"study": STUDY, "place": place, "kits": numbers,
                                                      "password": "correct horse battery"})


def _destroy(client, number, witness="Wilma Witness", method="Incineration as clinical waste", day=None):
    return client.post(f"/api/v1/destructions/{number}/destroyed", json={
        # the site's day, not UTC's (they differ late in the evening in Copenhagen)
        "method": method, "destroyed_on": (day or clock.today()).isoformat(), "witness": witness,
        "password": "correct horse battery"})


def _rows(client) -> dict[str, dict]:
    response = client.get(f"/api/v1/accountability?study={STUDY}")
    assert response.status_code == 200, response.text
    return {row["place"]: row for row in response.json()["rows"]}


def test_released_kits_balance_against_where_they_are_and_what_happened_to_them(db, site_stock, as_):
    w = site_stock
    _move(db, "frida", w.at_site[0], "return")
    _move(db, "frida", w.at_site[1], "damage")
    _move(db, "frida", w.at_site[2], "lose")
    to_site(db, [w.at_site[3]], KitState.administered)
    rows = _rows(as_("mette"))
    bench, site = rows["bench"]["counts"], rows[SITE]["counts"]
    assert (bench["in_stock"], bench["released"], bench["on_hand"]) == (2, 2, 2)
    assert {k: site[k] for k in ("in_stock", "dispensed", "returned", "damaged", "missing", "destroyed")} == \
        {"in_stock": 2, "dispensed": 1, "returned": 1, "damaged": 1, "missing": 1, "destroyed": 0}
    assert site["released"] == 6, "released = in stock + dispensed + returned + destroyed + damaged + missing"
    assert site["on_hand"] == 4, "what a physical count at the site should find"
    assert rows[SITE]["status"] == "not counted"
    page = as_("frida").get(f"/accountability?study={STUDY}")
    assert page.status_code == 200 and w.blinded_lot in page.text and "not counted" in page.text


def test_a_discrepancy_is_shown_in_red_and_blocks_destruction_until_a_balanced_count(db, site_stock, as_):
    w = site_stock
    _move(db, "frida", w.at_site[0], "return")
    _move(db, "frida", w.at_site[1], "damage")
    sara, frida = as_("sara"), as_("frida")

    before = _authorise(sara, [w.at_site[0], w.at_site[1]])
    assert before.status_code == 422 and "has not been counted" in before.json()["error"]

    unexplained = _count(frida, 5, world=w)
    assert (unexplained.status_code, unexplained.json()["field"]) == (422, "comment")
    short = _count(frida, 5, "one kit not found in the freezer", world=w)
    assert short.status_code == 201 and short.json()["balanced"] is False
    assert short.json()["expected"]["on_hand"] == 6 and short.json()["signature"]["meaning"] == "performed"
    page = as_("mette").get(f"/accountability/{STUDY}/{SITE}/{w.blinded_lot}")
    assert re.search(r'class="tag red">discrepancy', page.text), "the discrepancy is shown in red"
    assert "destruction is blocked" in page.text
    refused = _authorise(sara, [w.at_site[0], w.at_site[1]])
    assert refused.status_code == 422 and "found 5 kits where cellbench expected 6" in refused.json()["error"]

    found = _count(frida, 6, "the missing kit was behind the rack", world=w)
    assert found.json()["balanced"] is True
    authorised = _authorise(sara, [w.at_site[0], w.at_site[1]])
    assert authorised.status_code == 201, authorised.text
    d = authorised.json()
    assert d["state"] == "authorised" and [k["kit_number"] for k in d["kits"]] == sorted(w.at_site[:2])
    assert [(s["name"], s["meaning"]) for s in d["signatures"]][-1] == ("Sara Supply", "approved")
    with db.read() as s:
        assert [r.balanced for r in s.scalars(select(Reconciliation).order_by(Reconciliation.id))] == [False, True]


def test_destruction_after_reconciliation_and_authorisation_writes_kits_custody_and_a_certificate(db, site_stock, as_):
    w = site_stock
    returned, damaged = w.at_site[0], w.at_site[1]
    _move(db, "frida", returned, "return")
    _move(db, "frida", damaged, "damage")
    frida = as_("frida")
    assert _count(frida, 6, world=w).json()["balanced"]
    number = _authorise(as_("sara"), [returned, damaged]).json()["number"]
    assert re.fullmatch(r"DS-\d{4}-0001", number)
    assert as_("frida").get(f"/api/v1/destructions/{number}/certificate.pdf").status_code == 422, "not yet destroyed"

    done = _destroy(frida, number)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "destroyed" and done.json()["witness"] == "Wilma Witness"
    with db.read() as s:
        destroyed = s.scalars(select(Kit).where(Kit.number.in_([returned, damaged])))
        states = {k.number: KitState(k.state) for k in destroyed}
        chain = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "destroyed")).all()
        d = s.scalars(select(Destruction)).one()
        sig = s.get(Signature, d.signature_id)
    assert set(states.values()) == {KitState.destroyed}
    assert len(chain) == 2 and {c.by_name for c in chain} == {"Frida Pharmacist"}
    assert "Wilma Witness" in chain[0].condition
    assert (sig.meaning, sig.signer_name) == ("destroyed", "Frida Pharmacist")
    assert _rows(as_("mette"))[SITE]["counts"]["destroyed"] == 2

    pdf = as_("mette").get(f"/destructions/{number}/certificate.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    for expected in (number, returned, damaged, w.blinded_lot, "Incineration as clinical waste", "Wilma Witness",
                     "Frida Pharmacist", "Sara Supply", "approved", "destroyed", "performed", "Returned", "Damaged"):
        assert expected in text, expected
    assert "active" not in text.lower() and ACTIVE_NAME not in text and "placebo" not in text.lower()
    again = _destroy(frida, number)
    assert again.status_code == 422 and "already destroyed" in again.json()["error"]
    with db.read() as s:
        assert signatures.verify_all(s)[1] == [], "every signature still covers exactly what was signed"


def test_a_kit_change_after_the_count_needs_a_new_count(db, site_stock, as_):
    w = site_stock
    _move(db, "frida", w.at_site[0], "return")
    assert _count(as_("frida"), 6, world=w).json()["balanced"]
    _move(db, "frida", w.at_site[1], "damage")
    refused = _authorise(as_("sara"), [w.at_site[0], w.at_site[1]])
    why = refused.json()["error"]
    assert refused.status_code == 422 and "changed" in why and "count again" in why
    assert _authorise(as_("sara"), [w.at_site[0]]).status_code == 201, "the returned kit itself did not change"


def test_destruction_at_the_cell_bench_is_counted_and_recorded_by_the_supply_manager(db, site_stock, as_):
    w = site_stock
    with db.write() as s:  # setup: a kit withdrawn at the bench after a quarantine
        kit = kits.by_number(s, w.at_bench[0])
        kit.state, kit.state_before_quarantine = KitState.withdrawn, KitState.released.value
    sara = as_("sara")
    assert _count(as_("frida"), 2, place="bench", world=w).status_code == 403
    assert _count(sara, 2, place="bench", world=w).json()["balanced"] is True
    number = _authorise(sara, [w.at_bench[0]], place="bench").json()["number"]
    assert _destroy(as_("frida"), number).status_code == 403
    assert _destroy(sara, number, witness="Sara Supply").json()["field"] == "witness"
    assert _destroy(sara, number, day=utcnow().date().replace(year=utcnow().year + 1)).json()["field"] == "destroyed_on"
    assert _destroy(sara, number, method=" ").json()["field"] == "method"
    assert _destroy(sara, number).status_code == 200


def test_what_may_not_be_destroyed_and_who_may_not(db, site_stock, as_):
    w = site_stock
    _move(db, "frida", w.at_site[0], "return")
    frida, sara = as_("frida"), as_("sara")
    assert _count(sara, 6, world=w).status_code == 403, "at a site, the pharmacist counts"
    assert _count(as_("mette"), 6, world=w).status_code == 403
    assert _count(frida, "six", world=w).status_code == 422
    assert _count(frida, 6, world=w).json()["balanced"]
    assert _authorise(frida, [w.at_site[0]]).status_code == 403, "the sponsor authorises"
    in_stock = _authorise(sara, [w.at_site[2]])
    assert in_stock.status_code == 422 and "only withdrawn, returned" in in_stock.json()["error"]
    elsewhere = _authorise(sara, [w.at_site[0]], place="bench")
    assert elsewhere.status_code == 422 and "is not at Cell bench" in elsewhere.json()["error"]
    assert _authorise(sara, []).json()["field"] == "kits"
    wrong = sara.post("/api/v1/destructions", json={"study": STUDY, "place": SITE, "kits": [w.at_site[0]],
                                                     "password": "wrong password here"})
    assert wrong.status_code == 401
    with db.read() as s:
        assert s.scalars(select(Destruction)).all() == [], "a wrong password authorises nothing"
    assert _authorise(sara, [w.at_site[0]]).status_code == 201
    twice = _authorise(sara, [w.at_site[0]])
    assert twice.status_code == 422 and "already authorised" in twice.json()["error"]
    for who in ("ida", "adam", "jonas"):
        assert as_(who).get(f"/accountability?study={STUDY}").status_code == 403
        assert as_(who).get(f"/api/v1/accountability?study={STUDY}").status_code == 403


def _normalised_pdf(body: bytes, names: dict[str, str]) -> str:
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages)
    for old, new in names.items():
        text = text.replace(old, new)
    return re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})? [+-]\d{2}:\d{2}", "<time>", text)


def test_an_active_and_a_placebo_kit_destroyed_alike_give_the_same_certificate_but_for_numbers(db, site_stock, as_):
    w = site_stock
    active, placebo = w.active[0], w.placebo[0]
    assert {active, placebo} <= set(w.at_site)
    by_arm = arms(db)
    assert (by_arm[active], by_arm[placebo]) == ("active", "placebo")
    _move(db, "frida", active, "return", reason="participant withdrew")
    _move(db, "frida", placebo, "return", reason="participant withdrew")
    frida, sara = as_("frida"), as_("sara")
    assert _count(frida, 6, world=w).json()["balanced"]
    texts = []
    for kit in (active, placebo):
        number = _authorise(sara, [kit]).json()["number"]
        assert _destroy(frida, number).status_code == 200
        pdf = as_("mette").get(f"/destructions/{number}/certificate.pdf").content
        texts.append(_normalised_pdf(pdf, {kit: "<kit>", number: "<number>"}))
    assert texts[0] == texts[1]


def test_accountability_by_manufacturing_lot_is_for_unblinded_roles(db, site_stock, as_):
    w = site_stock
    sara = as_("sara")
    body = sara.get(f"/api/v1/lots/{w.asc_lot}/accountability").json()
    assert {k["number"] for k in body["kits"]} == set(w.active), "the lot's units are in the active kits"
    assert body["total"]["released"] == 4 and body["kind"] == "asc"
    assert body["vials"] == {"kitted": 8, "stored": 8}, "16 units made, 8 of them in the 4 active kits"
    page = as_("anna").get(f"/accountability/lots/{w.asc_lot}")
    assert page.status_code == 200 and w.active[0] in page.text and w.placebo[0] not in page.text
    for who in ("mette", "frida", "ida"):
        assert as_(who).get(f"/accountability/lots/{w.asc_lot}").status_code == 403
        assert as_(who).get(f"/api/v1/lots/{w.asc_lot}/accountability").status_code == 403
    with db.read() as s:
        reads = s.scalars(select(AuditEvent).where(AuditEvent.action == "sealed read",
                                                   AuditEvent.field.like("kits of a lot (accountability%"))).all()
    assert len(reads) == 2 and reads[0].visibility == "unblinded"
    assert accountability.category_of(KitState.planned) is None


def test_a_destruction_is_recorded_only_by_the_person_at_its_place_and_only_once(db, site_stock, as_):
    """The pages and the API offer what the destruction's state machine allows this person now."""
    w = site_stock
    _move(db, "frida", w.at_site[0], "return")
    frida, sara, mette = as_("frida"), as_("sara"), as_("mette")
    assert _count(frida, 6, world=w).json()["balanced"]
    number = _authorise(sara, [w.at_site[0]]).json()["number"]

    def actions(client) -> list[str]:
        return client.get(f"/api/v1/destructions/{number}").json()["actions"]

    assert (actions(frida), actions(sara), actions(mette)) == (["record"], [], []), "at a site: its pharmacist"
    assert "Record the destruction" in frida.get(f"/destructions/{number}").text
    assert "Record the destruction" not in sara.get(f"/destructions/{number}").text
    waiting = "authorised destruction awaits you to carry it out and record it"
    assert waiting in frida.get("/").text and waiting not in sara.get("/").text, "in the work queue of who records it"
    refused = _destroy(sara, number, witness="Frida Pharmacist")
    assert refused.status_code == 403 and "pharmacist" in refused.json()["error"]
    assert _destroy(frida, number).status_code == 200
    assert actions(frida) == [], "destroyed is the end of it"
    again = _destroy(frida, number)
    assert again.status_code == 422 and "already destroyed" in again.json()["error"]
    with db.read() as s:
        d = accountability.by_number(s, number)
        assert accountability.destruction.MACHINE.state_of(d) is accountability.DestructionState.destroyed


def test_the_date_of_destruction_is_the_sites_date_after_midnight_there(db, app, site_stock, as_, monkeypatch):
    """At 00:30 in Copenhagen it is still yesterday in UTC: the site's date is not 'in the future'."""

    w = site_stock
    _move(db, "frida", w.at_site[0], "return")
    frida = as_("frida")
    assert _count(frida, 6, world=w).json()["balanced"]
    number = _authorise(as_("sara"), [w.at_site[0]]).json()["number"]
    now = utcnow()
    just_after_midnight_there = datetime(now.year, now.month, now.day, 23, 30, tzinfo=UTC)  # 00:30 or 01:30 there
    monkeypatch.setattr(clock, "_source", lambda: just_after_midnight_there)
    frida = sign_in(app, "frida")  # at the new hour: the session signed in hours before has lapsed
    site_day = just_after_midnight_there.astimezone(ZoneInfo("Europe/Copenhagen")).date()
    assert site_day > just_after_midnight_there.date()
    too_late = _destroy(frida, number, day=site_day + timedelta(days=1))
    assert too_late.status_code == 422 and too_late.json()["field"] == "destroyed_on"
    done = _destroy(frida, number, day=site_day)
    assert done.status_code == 200, done.text
    with db.read() as s:
        assert s.scalars(select(Destruction)).one().destroyed_on == site_day


def test_counts_and_destructions_are_listed_a_page_at_a_time_newest_first_and_destructions_in_summary(
        db, site_stock, as_):
    w = site_stock
    _move(db, "frida", w.at_site[0], "return")
    _move(db, "frida", w.at_site[1], "damage")
    frida, sara = as_("frida"), as_("sara")
    first, second = (_count(frida, 6, world=w).json() for _ in range(2))
    page = frida.get(f"/api/v1/reconciliations?study={STUDY}&limit=1").json()
    assert [r["at"] for r in page["reconciliations"]] == [second["at"]] and page["next"]
    _count(frida, 6, "a third count, made while the list was read", world=w)
    after = frida.get(f"/api/v1/reconciliations?study={STUDY}&limit=1&after={page['next']}").json()
    assert [r["at"] for r in after["reconciliations"]] == [first["at"]], "a new count neither shifts nor repeats"

    older = _authorise(sara, [w.at_site[0]]).json()["number"]
    newer = _authorise(sara, [w.at_site[1]]).json()["number"]
    listed = frida.get("/api/v1/destructions?limit=1").json()
    assert [(d["number"], d["kit_count"], d["state"]) for d in listed["destructions"]] == [(newer, 1, "authorised")]
    assert "kits" not in listed["destructions"][0], "the kits and signatures are read for one destruction only"
    rest = frida.get(f"/api/v1/destructions?limit=1&after={listed['next']}").json()
    assert [d["number"] for d in rest["destructions"]] == [older] and rest["next"] is None
    assert frida.get("/api/v1/destructions?after=not-a-cursor").json()["field"] == "after"


def test_the_lots_with_units_index_pages_through_exactly_the_lots_a_recount_of_vials_finds(db, app, site_stock, as_):
    """Newest first, a page at a time (keyset), each lot once: the lots that have a vial, as a
    plain recount from the vial rows names them; blinded roles do not reach the index."""
    from cellbench.accountability import by_lot
    from cellbench.models import Lot, Vial
    from cellbench.pagination import Ask

    with db.read() as s:
        recount = [number for (number,) in s.execute(select(Lot.number).where(Lot.id.in_(
            select(Vial.lot_id).distinct())).order_by(Lot.id.desc()))]
        paged, after = [], None
        while True:
            found = by_lot.lots_with_units(s, Ask(after=after, secret=app.state.settings.secret_key, size=1))
            paged += [lot.number for lot, _kind in found.rows]
            if not found.next:
                break
            after = found.next
    assert len(recount) >= 2 and paged == recount, (paged, recount)
    page = as_("sara").get("/accountability/lots")
    assert page.status_code == 200
    assert re.findall(r'href="/accountability/lots/([^"]+)"', page.text) == recount
    for who in ("mette", "frida", "ida"):
        assert as_(who).get("/accountability/lots").status_code == 403

