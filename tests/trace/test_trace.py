"""Trace: donor to recipient and back for unblinded roles, from any identifier in one call; kit to
participant and each kit's chain of custody for everyone, the same for both arms."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from cellbench import clock, custody, kits
from cellbench.models import AuditEvent, Kit, Vial

from ..blinding_support import sealed_tripwire
from ..conftest import actor_of
from ..trialworld import STUDY, administer, donate, enrol, ship, to_site

DONOR, DONATION = "DN-0001", "A9999 26 123456 K"


@pytest.fixture
def trial(db, trial_world):
    """The first ASC lot came from donor DN-0001. An active participant received a kit of it, a
    placebo participant a placebo kit of the same blinded lot, both from one shipment."""
    world = trial_world
    donate(db, world.kits.asc_lot, DONOR, DONATION)
    world.a, world.b = world.participant("active"), world.participant("placebo")
    enrol(db, world.a, "S-001")
    enrol(db, world.b, "S-002")
    world.ka, world.kb = world.first_active[0], world.first_placebo[0]
    ship(db, "SH-2026-0001", [world.ka, world.kb])
    for kit_number in (world.ka, world.kb):
        with db.write() as s:  # the same hand-over of each kit, as custody records it
            custody.record(s, actor_of(db, "frida"), kits.by_number(s, kit_number), "handed to preparer",
                           from_place="RH-ENT pharmacy", to_place="RH-ENT preparation room", condition="frozen, intact")
    administer(db, world.a, world.ka)
    administer(db, world.b, world.kb)
    return world


def _trace(client, q):
    response = client.get("/api/v1/trace", params={"q": q})
    assert response.status_code == 200, response.text
    return response.json()


def test_from_the_donor_down_to_every_recipient(db, trial, as_):
    t = _trace(as_("sara"), DONOR)
    assert t["found"] == f"donor {DONOR}"
    assert [d["code"] for d in t["donors"]] == [DONOR]
    assert [d["identifier"] for d in t["donations"]] == [DONATION]
    assert [lot["number"] for lot in t["lots"]] == [trial.kits.asc_lot]
    assert len(t["vials"]) == 16 and {v["lot"] for v in t["vials"]} == {trial.kits.asc_lot}
    assert {k["number"] for k in t["kits"]} == set(trial.first_active), "the lot's units are in the active kits"
    assert {k["arm"] for k in t["kits"]} == {"active"}
    assert [(r["participant"], r["arm"], r["kit"]) for r in t["recipients"]] == [(trial.a, "active", trial.ka)]
    assert [a["dose"] for a in t["recipients"][0]["administrations"]] == ["left submandibular gland",
                                                                          "right submandibular gland"]
    kitted = [v for v in t["vials"] if v["kit"] == trial.ka]
    assert [v["dose"] for v in kitted] == ["left submandibular gland", "right submandibular gland"]


def test_each_kit_of_the_trace_names_its_own_blinded_lot_as_the_kit_rows_say(db, trial, as_):
    """The trace reads the blinded lots of its kits only (not every one of ten years): each kit
    still names its own, as a recount from the kit and blinded lot rows gives it."""
    from cellbench.models import BlindedLot

    t = _trace(as_("sara"), DONOR)
    with db.read() as s:
        numbers = [k["number"] for k in t["kits"]]
        recount = dict(s.execute(select(Kit.number, BlindedLot.code)
                                 .join(BlindedLot, BlindedLot.id == Kit.blinded_lot_id)
                                 .where(Kit.number.in_(numbers))).all())
    assert t["kits"] and {k["number"]: k["blinded_lot"] for k in t["kits"]} == recount


def test_from_a_recipient_back_to_the_donor(db, trial, as_):
    t = _trace(as_("anna"), trial.a)
    assert [k["number"] for k in t["kits"]] == [trial.ka]
    assert len(t["vials"]) == 2 and {v["kit"] for v in t["vials"]} == {trial.ka}
    assert [lot["number"] for lot in t["lots"]] == [trial.kits.asc_lot]
    assert [d["identifier"] for d in t["donations"]] == [DONATION] and [d["code"] for d in t["donors"]] == [DONOR]
    assert [r["participant"] for r in t["recipients"]] == [trial.a]

    placebo = _trace(as_("peter"), trial.b)
    assert [lot["number"] for lot in placebo["lots"]] == [trial.kits.placebo_lot]
    assert placebo["donors"] == [] and placebo["donations"] == [], "saline has no donor"


@pytest.mark.parametrize("start", ["donation", "lot", "vial", "kit"])
def test_any_identifier_starts_a_trace(db, trial, as_, start):
    with db.read() as s:
        kit = s.scalars(select(Kit).where(Kit.number == trial.ka)).one()
        vial_code = s.scalars(select(Vial.code).where(Vial.state == "kitted", Vial.code.like(f"{trial.kits.asc_lot}%"))
                              .order_by(Vial.code)).first()
    query = {"donation": DONATION, "lot": trial.kits.asc_lot.lower(), "vial": vial_code, "kit": kit.number}[start]
    t = _trace(as_("sara"), query)
    assert [d["code"] for d in t["donors"]] == [DONOR], "every start leads back to the donor"
    if start in ("donation", "lot"):
        assert [r["participant"] for r in t["recipients"]] == [trial.a]
    if start == "vial":
        assert [v["code"] for v in t["vials"]] == [vial_code] and len(t["kits"]) == 1
    if start == "kit":
        assert [r["participant"] for r in t["recipients"]] == [trial.a]


def test_the_trace_page_and_its_reads_of_the_sealed_compartment_are_recorded(db, trial, as_):
    page = as_("peter").get("/trace", params={"q": DONOR})
    assert page.status_code == 200 and trial.a in page.text and trial.ka in page.text and DONATION in page.text
    with db.read() as s:
        reads = s.scalars(select(AuditEvent).where(AuditEvent.action == "sealed read",
                                                   AuditEvent.user_name == "Peter QP")).all()
    assert reads and {e.visibility for e in reads} == {"unblinded"}
    missing = as_("sara").get("/api/v1/trace", params={"q": "NO-SUCH-THING"})
    assert (missing.status_code, missing.json()["field"]) == (404, "q")
    assert as_("sara").get("/trace", params={"q": "NO-SUCH-THING"}).status_code == 404


@pytest.mark.parametrize("who", ["frida", "ida", "mette", "adam", "jonas"])
def test_blinded_roles_never_reach_the_full_trace(trial, as_, who):
    assert as_(who).get("/trace", params={"q": DONOR}).status_code == 403
    assert as_(who).get("/api/v1/trace", params={"q": trial.a}).status_code == 403


def test_a_pharmacist_finds_who_received_a_kit_and_which_kits_a_participant_received(db, trial, as_):
    frida = as_("frida")
    by_kit = frida.get("/api/v1/trace/kits", params={"q": trial.ka}).json()
    assert [(line["participant"], line["treatment"], line["kit_number"])
            for line in by_kit["lines"]] == [(trial.a, 1, trial.ka)]
    assert len(by_kit["lines"][0]["administrations"]) == 2
    by_person = frida.get("/api/v1/trace/kits", params={"q": "S-002"}).json()
    assert [line["kit_number"] for line in by_person["lines"]] == [trial.kb]
    unused = trial.first_active[1]
    alone = frida.get("/api/v1/trace/kits", params={"q": unused}).json()
    assert alone["lines"] == [] and alone["kit_without_participant"] == unused
    assert frida.get("/api/v1/trace/kits", params={"q": "X-999"}).status_code == 404
    assert as_("adam").get("/trace/kits", params={"q": trial.ka}).status_code == 403


def _same_but_numbers(text: str, names: dict[str, str]) -> str:
    for old, new in names.items():
        text = text.replace(old, new)
    text = re.sub(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z| ?[+-]\d{2}:\d{2})?", "<time>", text)
    return re.sub(r'name="csrf_token" value="[^"]+"', "", text)


def test_the_blinded_trace_and_custody_chain_read_the_same_for_an_active_and_a_placebo_participant(db, trial, as_):
    names = {trial.a: "<P>", trial.b: "<P>", trial.ka: "<K>", trial.kb: "<K>", "S-001": "<S>", "S-002": "<S>"}
    for who in ("frida", "ida", "mette"):
        client = as_(who)
        with sealed_tripwire(db) as touched:
            seen = []
            for person, kit in ((trial.a, trial.ka), (trial.b, trial.kb)):
                pages = [client.get("/trace/kits", params={"q": person}),
                         client.get("/api/v1/trace/kits", params={"q": kit}),
                         client.get(f"/kits/{kit}/custody"), client.get(f"/api/v1/kits/{kit}/custody")]
                assert all(p.status_code == 200 for p in pages), [p.text for p in pages if p.status_code != 200]
                seen.append([_same_but_numbers(p.text, names) for p in pages])
        assert touched == [], "nothing a blinded role reaches here touches the sealed compartment"
        assert seen[0] == seen[1], f"{who} sees the same for both arms, but for numbers"
    chain = as_("mette").get(f"/api/v1/kits/{trial.ka}/custody").json()["links"]
    # the trial world's setup shortcut (tests/shortcuts.py) records the state it leaves as "kit state set"
    whats = [link["what"] for link in chain if link["what"] != "kit state set"]
    assert whats[:3] == ["kit number issued", "kit package", "kit release"], "from packaging"
    assert whats[3:] == ["handed to preparer", "administered", "administered"], "to administration, per gland"
    handed = next(link for link in chain if link["what"] == "handed to preparer")
    assert (handed["from_place"], handed["to_place"], handed["who"]) == ("RH-ENT pharmacy", "RH-ENT preparation room",
                                                                         "Frida Pharmacist")


def test_the_custody_chain_ends_with_the_destruction(db, trial, as_):
    kit = trial.first_placebo[1]
    to_site(db, [kit])
    with db.write() as s:
        kits.move(s, actor_of(db, "frida"), kits.by_number(s, kit), "return", reason="visit cancelled")
    frida, sara = as_("frida"), as_("sara")
    password = "correct horse battery"
    lot = frida.get(f"/api/v1/trace/kits?q={trial.ka}").json()["lines"][0]["blinded_lot"]
    row = frida.get(f"/api/v1/accountability?study={STUDY}&place=RH-ENT&blinded_lot={lot}").json()["rows"][0]
    on_hand = row["counts"]["on_hand"]
    count = frida.post("/api/v1/reconciliations", json={"study": STUDY, "place": "RH-ENT", "blinded_lot": lot,
                                                         "counted_in_stock": on_hand, "password": password})
    assert count.json()["balanced"]
    number = sara.post("/api/v1/destructions", json={"study": STUDY, "place": "RH-ENT", "kits": [kit],
                                                      "password": password}).json()["number"]
    assert frida.post(f"/api/v1/destructions/{number}/destroyed", json={
        "method": "incineration", "destroyed_on": clock.today().isoformat(),  # the site's day
        "witness": "Wilma Witness", "password": password}).status_code == 200
    chain = as_("mette").get(f"/api/v1/kits/{kit}/custody").json()["links"]
    assert [link["what"] for link in chain][-2:] == ["kit destroy", "destroyed"]
    assert "Wilma Witness" in chain[-1]["detail"]
    page = as_("mette").get(f"/kits/{kit}/custody")
    assert page.status_code == 200 and "Wilma Witness" in page.text
    assert as_("mette").get("/kits/NOPE-NOPE-X/custody").status_code in (404, 422)
