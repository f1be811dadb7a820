"""Receipt and put-away in one pass: the pharmacist scans a box label, then the kits that go into it,
and each kit's receipt scan and its position (tank, rack, box, position) are recorded together.
Kits move between positions by scan; two people filling one position get one conflict; the kit
page and the dispensing page's "Fetch kit" say where the kit is. Positions follow the scans, never
the arm."""
from __future__ import annotations

import re
import threading

import pytest
from sqlalchemy import select

from cellbench import custody, users
from cellbench.custody import positions
from cellbench.errors import Conflict
from cellbench.models import AuditEvent, CustodyEvent, Kit, KitPosition, KitState

from ..conftest import PASSWORD, SECRET, actor_of
from .test_custody import (
    SITE,
    STUDY,
    arrives,
    both_arms,
    custody_actions,
    dispatched,
    event_count,
    kit_row,
    payload,
    shipment_row,
    text_of,
)

BOX = "BOX-RH-ENT-001"
TANK = "Tank 1"


def tank_and_box(as_, capacity: int = 10) -> str:
    """The pharmacist's tank at the site and a box in rack A of it, through the storage page."""
    frida = as_("frida")
    added = frida.submit("/storage/locations", {"site": SITE, "code": "RH-ENT-T1", "name": TANK, "kind": "tank"})
    assert added.status_code == 303, added.text
    boxed = frida.submit("/storage/boxes", {"location": "RH-ENT-T1", "rack": "A", "capacity": str(capacity)})
    assert boxed.status_code == 303, boxed.text
    assert f"Box {BOX} added" in frida.get(boxed.headers["location"]).text
    return BOX


def scan_page(as_, number: str, code: str, box: str = "", position: str = ""):
    return as_("frida").submit(f"/shipments/{number}/receipt-scans", {"code": code, "box": box, "position": position})


def where(db, number: str) -> tuple[str, int] | None:
    with db.read() as s:
        kit = s.scalars(select(Kit).where(Kit.number == number)).one()
        found = custody.position_of(s, kit)
        return (found.box, found.position) if found else None


def position_rows(db) -> int:
    with db.read() as s:
        return len(s.scalars(select(KitPosition)).all())


def received_without_a_box(as_, db, monkeypatch, kits_: list[str]) -> str:
    number = dispatched(as_, kits_)
    arrives(monkeypatch, db, number)
    for kit in kits_:
        assert scan_page(as_, number, payload(kit)).status_code == 303
    done = as_("frida").post(f"/api/v1/shipments/{number}/receipt",
                             json={"seal_intact": True, "logger_source": "manual", "logger_min": -190,
                                   "logger_max": -170})
    assert done.status_code == 200, done.text
    return number


# --- the one pass, through the pages -----------------------------------------------------------------


def test_a_box_label_then_the_kits_puts_each_kit_into_the_next_position_as_it_is_received(kit_world, as_, db,
                                                                                         monkeypatch):
    box = tank_and_box(as_)
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    arrives(monkeypatch, db, number)
    frida = as_("frida")
    chosen = scan_page(as_, number, box)
    assert chosen.status_code == 303 and f"box={box}" in chosen.headers["location"]
    page = text_of(frida.get(chosen.headers["location"]).text)
    assert f"Putting away into box {box} · {TANK} · rack A · 0 of 10 positions filled · next: position 1" in page
    before = event_count(db)
    for n, kit in enumerate(kits_, 1):
        scanned = scan_page(as_, number, payload(kit), box=box)
        assert scanned.status_code == 303, scanned.text
        verdict = text_of(frida.get(scanned.headers["location"]).text)
        assert f"{kit} ✓" in verdict and f"Put it in {TANK} · rack A · box {box} · position {n}" in verdict
        assert f"{n} of 4 scanned" in verdict and f"{n} of 10 positions filled" in verdict
    assert [where(db, kit) for kit in kits_] == [(box, n) for n in range(1, 5)]
    # each scan: the receipt scan, the move into the box and its position, audited together
    assert event_count(db) == before + 3 * len(kits_)
    with db.read() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.entity_id == kits_[2], AuditEvent.seq > 0)
                           .order_by(AuditEvent.seq)).all()
        put = s.scalars(select(CustodyEvent).join(Kit, Kit.id == CustodyEvent.kit_id)
                        .where(Kit.number == kits_[2], CustodyEvent.action == "put away at receipt")).one()
    assert [e.action for e in events][-3:] == ["kit scanned at receipt", "kit moved", "kit put away at receipt"]
    assert events[-1].field == "position" and "position 3" in events[-1].new_value
    assert put.to_place == f"{SITE} · {TANK} · rack A · box {box} · position 3" and put.by_name == "Frida Pharmacist"
    assert put.shipment_id == shipment_row(db, number).id

    version = shipment_row(db, number).row_version
    done = frida.submit(f"/shipments/{number}/receipt", {"seal_intact": "yes", "logger_source": "manual",
                                                         "logger_min": "-190", "logger_max": "-170",
                                                         "shipment_version": str(version)})
    assert done.status_code == 303, done.text
    for n, kit in enumerate(kits_, 1):
        row = kit_row(db, kit)
        assert row.state == KitState.at_site and row.location == f"{SITE} · {TANK} · rack A · box {box} · position {n}"
        assert custody_actions(db, kit) == ["packed", "dispatched", "put away at receipt", "received"]
    with db.read() as s:
        tank = custody.location_by_code(s, "RH-ENT-T1")
        assert custody.stored_counts(s)[tank.id] == 4, "received into the tank: no second pass"
        assert custody.not_put_away(s, actor_of(db, "frida")) == []
    box_page = text_of(frida.get(f"/storage/boxes/{box}").text)
    assert all(kit in box_page for kit in kits_) and "4 of 10 positions filled" in box_page


def test_a_position_typed_beside_the_scan_is_used_and_another_box_label_switches_box(kit_world, as_, db, monkeypatch):
    box = tank_and_box(as_)
    assert as_("frida").submit("/storage/boxes", {"location": "RH-ENT-T1", "rack": "B", "capacity": "4"}
                               ).status_code == 303
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    arrives(monkeypatch, db, number)
    assert scan_page(as_, number, payload(kits_[0]), box=box, position="7").status_code == 303
    assert scan_page(as_, number, payload(kits_[1]), box=box).status_code == 303
    switched = scan_page(as_, number, "BOX-RH-ENT-002", box=box)
    assert "box=BOX-RH-ENT-002" in switched.headers["location"]
    assert scan_page(as_, number, payload(kits_[2]), box="BOX-RH-ENT-002").status_code == 303
    assert [where(db, kit) for kit in kits_[:3]] == [(box, 7), (box, 1), ("BOX-RH-ENT-002", 1)]


# --- refusals: named, and nothing written ---------------------------------------------------------------


def test_a_wrong_kit_or_an_unsigned_label_is_refused_naming_the_field_and_nothing_is_written(kit_world, as_, db,
                                                                                             monkeypatch):
    box = tank_and_box(as_)
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_[:3])
    arrives(monkeypatch, db, number)
    before, stranger = event_count(db), kits_[3]
    refused = scan_page(as_, number, payload(stranger), box=box)
    assert refused.status_code == 422 and "not on the manifest" in refused.text
    assert re.search(r'class="field invalid"><label for="receipt-code"', refused.text), "the scan field is named"
    forged = payload(kits_[0])[:-4] + "AAAA"
    unsigned = scan_page(as_, number, forged, box=box)
    assert unsigned.status_code == 422 and "Label refused" in unsigned.text
    with db.write() as s:
        with pytest.raises(Exception) as caught:
            custody.receive_into_box(s, actor_of(db, "frida"), number, forged, SECRET, box=box)
        assert caught.value.field == "code"
    too_far = scan_page(as_, number, payload(kits_[0]), box=box, position="11")
    assert too_far.status_code == 422 and "at most 10" in too_far.text
    elsewhere = scan_page(as_, number, payload(kits_[0]), box="BOX-XX-001")
    assert elsewhere.status_code == 404 and "No box" in elsewhere.text
    assert event_count(db) == before and position_rows(db) == 0
    assert kit_row(db, kits_[0]).location == f"In transit · {number}", "not even the receipt scan stays"
    with db.read() as s:
        assert custody.progress(s, custody.by_number(s, number)) == (0, 3)


# --- conflicts ----------------------------------------------------------------------------------------------


def test_two_kits_into_one_position_one_is_placed_one_gets_a_conflict(kit_world, as_, db, monkeypatch):
    box = tank_and_box(as_)
    kits_ = both_arms(kit_world)
    received_without_a_box(as_, db, monkeypatch, kits_)
    with db.write() as s:
        fred = users.create_user(s, users.cli_actor(), "fred", "Fred Pharmacist", PASSWORD, ["pharmacist"])
        users.link(s, users.cli_actor(), fred, site=SITE, study=STUDY)
    barrier, results = threading.Barrier(2), []

    def put(who: str, kit: str) -> None:
        actor = actor_of(db, who)
        barrier.wait()
        try:
            with db.write() as s:
                custody.move_by_scan(s, actor, payload(kit), f"{box}/1", SECRET)
            results.append("placed")
        except Conflict as conflict:
            results.append(f"conflict on {conflict.field}")
        except Exception as error:
            results.append(repr(error))

    threads = [threading.Thread(target=put, args=pair) for pair in (("frida", kits_[0]), ("fred", kits_[2]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == ["conflict on position", "placed"], results
    assert sorted(filter(None, (where(db, kit) for kit in (kits_[0], kits_[2])))) == [(box, 1)]
    assert position_rows(db) == 1


def test_the_unique_position_holds_where_two_writers_both_found_it_free(kit_world, as_, db, monkeypatch):
    """On PostgreSQL two workers may both read the position as free; the constraint decides."""
    box = tank_and_box(as_)
    kits_ = both_arms(kit_world)
    received_without_a_box(as_, db, monkeypatch, kits_)
    with db.write() as s:
        custody.move_by_scan(s, actor_of(db, "frida"), payload(kits_[0]), f"{box}/1", SECRET)
    monkeypatch.setattr(positions, "occupants", lambda session, box: {})  # the other writer's stale read
    before = event_count(db)
    with pytest.raises(Conflict) as caught, db.write() as s:
        custody.move_by_scan(s, actor_of(db, "frida"), payload(kits_[1]), f"{box}/1", SECRET)
    assert caught.value.field == "position" and "at the same moment" in caught.value.message
    assert event_count(db) == before and where(db, kits_[1]) is None


# --- moves, and kits received without a position ---------------------------------------------------------------


def test_a_kit_received_without_a_box_shows_as_not_yet_put_away_until_scanned_into_one(kit_world, as_, db,
                                                                                       monkeypatch):
    box = tank_and_box(as_)
    kits_ = both_arms(kit_world)
    received_without_a_box(as_, db, monkeypatch, kits_)
    frida = as_("frida")
    storage = text_of(frida.get("/storage").text)
    assert "Not yet put away (4)" in storage and all(kit in storage for kit in kits_)
    assert "Position not yet put away" in text_of(frida.get(f"/kits/{kits_[0]}").text)
    put = frida.submit("/storage/moves", {"code": payload(kits_[0]), "target": box, "position": ""})
    assert put.status_code == 303, put.text
    notice = text_of(frida.get(put.headers["location"]).text)
    assert f"Kit {kits_[0]} is in {TANK} · rack A · box {box} · position 1" in notice
    assert "Not yet put away (3)" in text_of(frida.get("/storage").text)
    assert custody_actions(db, kits_[0])[-1] == "put away"


def test_a_kit_moves_between_positions_by_scan_audited_with_both_positions(kit_world, as_, db, monkeypatch):
    box = tank_and_box(as_)
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_[:1])
    arrives(monkeypatch, db, number)
    scan_page(as_, number, payload(kits_[0]), box=box)
    as_("frida").post(f"/api/v1/shipments/{number}/receipt",
                      json={"seal_intact": True, "logger_source": "manual", "logger_min": -190, "logger_max": -170})
    moved = as_("frida").submit("/storage/moves", {"code": payload(kits_[0]), "target": f"{box}/5", "position": ""})
    assert moved.status_code == 303, moved.text
    assert where(db, kits_[0]) == (box, 5)
    with db.read() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.entity_id == kits_[0], AuditEvent.action == "kit moved",
                                                   AuditEvent.field == "position")).one()
        chain = custody.chain(s, kit_row(db, kits_[0]))
    assert "position 1" in event.old_value and "position 5" in event.new_value
    place = f"{SITE} · {TANK} · rack A · box {box} · position"
    assert (chain[-1].action, chain[-1].from_place, chain[-1].to_place) == ("moved", f"{place} 1", f"{place} 5")
    again = as_("frida").submit("/storage/moves", {"code": payload(kits_[0]), "target": box, "position": "5"})
    assert again.status_code == 422 and "already in position 5" in again.text
    both = as_("frida").submit("/storage/moves", {"code": payload(kits_[0]), "target": f"{box}/3", "position": "4"})
    assert both.status_code == 422 and "give one" in both.text
    not_here = as_("frida").submit("/storage/moves", {"code": payload(kits_[1]), "target": box, "position": ""})
    assert not_here.status_code == 422 and "not in stock at RH-ENT" in not_here.text


# --- where the kit is, on its page and at dispensing; the blind --------------------------------------------------


def test_the_kit_page_and_fetch_kit_at_dispensing_say_tank_rack_box_and_position(kit_world, as_, db, monkeypatch):
    from ..pharmacy.test_pharmacy import randomised, sealed_randomisation_list

    box = tank_and_box(as_)
    kits_ = kit_world.active + kit_world.placebo
    number = dispatched(as_, kits_)
    arrives(monkeypatch, db, number)
    for kit in kits_:
        scan_page(as_, number, payload(kit), box=box)
    as_("frida").post(f"/api/v1/shipments/{number}/receipt",
                      json={"seal_intact": True, "logger_source": "manual", "logger_min": -190, "logger_max": -170})
    n = kits_.index(kits_[5]) + 1
    kit_page = text_of(as_("ida").get(f"/kits/{kits_[5]}").text)
    assert f"Position {TANK} · rack A · box {box} · position {n}" in kit_page
    sealed_randomisation_list(db)
    randomised(as_, "SCR-001")
    assigned = as_("frida").post(f"/api/v1/participants/{STUDY}/SCR-001/visits/1/assign").json()["kit_number"]
    page = text_of(as_("frida").get(f"/participants/{STUDY}/SCR-001/visits/1/dispense").text)
    n = kits_.index(assigned) + 1
    assert f"Fetch kit {assigned} from {TANK} · rack A · box {box} · position {n}" in page


def test_positions_follow_the_order_of_the_scans_and_read_the_same_for_both_arms(kit_world, as_, db, monkeypatch):
    box = tank_and_box(as_)
    active, placebo = kit_world.pair
    number = dispatched(as_, [active, placebo])
    arrives(monkeypatch, db, number)
    answers = {}
    for kit in (placebo, active):  # the placebo kit first: it gets position 1
        with db.write() as s:
            answers[kit] = custody.receive_into_box(s, actor_of(db, "frida"), number, payload(kit), SECRET,
                                                    box=box).as_json()
    assert (answers[placebo]["position"]["position"], answers[active]["position"]["position"]) == (1, 2)

    def masked(text: str, kit: str) -> str:
        return re.sub(r"position \d+", "position N", text.replace(kit, "KIT"))

    def seen(kit: str) -> str:  # what the scan answers of the kit and where it went, its number and position masked
        answer = answers[kit]
        return masked(str({"kit": answer["kit"], "position": {**answer["position"], "position": "N"}}), kit)

    assert seen(active) == seen(placebo)
    pages = {kit: masked(as_("frida").get(f"/kits/{kit}").text, kit) for kit in (active, placebo)}
    stripped = {kit: re.sub(r"<code class=\"token\">[^<]*</code>", "", page) for kit, page in pages.items()}
    assert stripped[active] == stripped[placebo]


def test_a_box_label_is_a_pdf_with_the_box_code_and_the_box_page_lists_its_positions(kit_world, as_, db):
    box = tank_and_box(as_, capacity=4)
    label = as_("frida").get(f"/storage/boxes/{box}/label.pdf")
    assert label.status_code == 200 and label.headers["content-type"] == "application/pdf"
    assert label.content.startswith(b"%PDF")
    assert "Print label (PDF)" in as_("frida").get("/storage").text
    page = text_of(as_("mette").get(f"/storage/boxes/{box}").text)
    assert "0 of 4 positions filled" in page and page.count("free") == 4
    with db.read() as s:
        trail = s.scalars(select(AuditEvent).where(AuditEvent.action == "storage box added")).one()
    assert trail.entity_id == "RH-ENT-T1" and box in trail.new_value
    bench = as_("sara").submit("/storage/boxes", {"location": "", "rack": "A", "capacity": "4"})
    assert bench.status_code in (404, 422)


def test_the_api_receives_a_kit_into_a_box_position_in_one_call_and_refuses_a_taken_one(kit_world, as_, db,
                                                                                         monkeypatch):
    box = tank_and_box(as_)
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    arrives(monkeypatch, db, number)
    frida, url = as_("frida"), f"/api/v1/shipments/{number}/receipt-scans"
    first = frida.post(url, json={"code": payload(kits_[0]), "box": box})
    assert first.status_code == 200, first.text
    assert first.json()["position"]["position"] == 1 and first.json()["progress"] == "1 of 4 scanned"
    before = (event_count(db), position_rows(db))
    taken = frida.post(url, json={"code": payload(kits_[1]), "box": box, "position": 1})
    assert taken.status_code == 409 and taken.json()["field"] == "position"
    assert (event_count(db), position_rows(db)) == before, "the refused scan received nothing either"
    outside = frida.post(url, json={"code": payload(kits_[1]), "box": box, "position": 2**63})
    assert outside.status_code == 422 and "position" in outside.text
    plain = frida.post(url, json={"code": payload(kits_[1])})
    assert plain.status_code == 200 and plain.json()["position"] is None  # received, not yet put away
    assert [where(db, kit) for kit in kits_[:2]] == [(box, 1), None]
