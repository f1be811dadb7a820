"""Shipments from the cell bench to a site pharmacy: packed by scanning released kits, dispatched in a
sealed dry shipper with a temperature logger, received by scanning every kit, checked (seal, logger
record, transit) and, when a check fails, held whole for QA's signed assessment. Lost shipments,
damaged kits, storage locations and the custody chain. Both arms go through exactly the same steps."""
from __future__ import annotations

import asyncio
import re
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlmodel import col

from cellbench import clock, custody, kits, qrpayload, signatures, studies, users
from cellbench.errors import Conflict, Forbidden, InvalidInput
from cellbench.models import (
    AuditEvent,
    CustodyEvent,
    Kit,
    KitState,
    LoggerReading,
    Meaning,
    Role,
    Shipment,
    ShipmentKit,
    Signature,
    Site,
    WebSession,
)

from ..blinding_support import chains_into, import_graph
from ..conftest import PASSWORD, SECRET, actor_of
from ..kitworld import package, released_lot, sealed_kit_list

STUDY = "NCT07290946"
SITE = "RH-ENT"
BLINDED = ("frida", "ida", "mette", "adam")


# --- helpers -------------------------------------------------------------------------------------------


def payload(number: str) -> str:
    return qrpayload.make_payload(number, SECRET)


def kit_row(db, number: str) -> Kit:
    with db.read() as s:
        return s.scalars(select(Kit).where(Kit.number == number)).one()


def shipment_row(db, number: str) -> Shipment:
    with db.read() as s:
        return custody.by_number(s, number)


def custody_actions(db, kit_number: str) -> list[str]:
    with db.read() as s:
        return list(s.scalars(select(CustodyEvent.action).join(Kit, Kit.id == CustodyEvent.kit_id)
                              .where(Kit.number == kit_number).order_by(CustodyEvent.id)))


def audit_actions(db, entity_type: str, entity_id: str) -> list[str]:
    with db.read() as s:
        return list(s.scalars(select(AuditEvent.action).where(AuditEvent.entity_type == entity_type,
                                                              AuditEvent.entity_id == entity_id)
                              .order_by(AuditEvent.seq)))


def event_count(db) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(AuditEvent))


def created(as_, study: str = STUDY) -> str:
    response = as_("sara").post("/api/v1/shipments", json={"study": study, "site": SITE})
    assert response.status_code == 201, response.text
    return response.json()["number"]


def packed(as_, kit_numbers: list[str], study: str = STUDY) -> str:
    number = created(as_, study)
    for kit in kit_numbers:
        response = as_("sara").post(f"/api/v1/shipments/{number}/kits", json={"code": payload(kit)})
        assert response.status_code == 200, response.text
    return number


def dispatched(as_, kit_numbers: list[str]) -> str:
    number = packed(as_, kit_numbers)
    response = as_("sara").post(f"/api/v1/shipments/{number}/dispatch",
                                json={"shipper_id": "DS-07", "seal_number": "SEAL-1234", "logger_id": "LOG-88"})
    assert response.status_code == 200, response.text
    return number


def arrives(monkeypatch, db, number: str, after: timedelta = timedelta(hours=26)) -> datetime:
    """The site's clock reads `after` past the dispatch: the receipt happens then. Returns dispatch time."""
    sent = shipment_row(db, number).dispatched_at
    monkeypatch.setattr(clock, "_source", lambda: sent + after)
    still_signed_in(db)
    return sent


def still_signed_in(db) -> None:
    """The people at the bench and the site keep working while the clock moves by hours or days, so
    their page sessions stay in use: the journey moves the product's one clock past the idle limit."""
    with db.write() as s:
        s.execute(update(WebSession).where(col(WebSession.ended_at).is_(None)).values(last_seen_at=clock.utcnow()))


def scan_in(as_, number: str, kit_numbers: list[str]) -> list[dict]:
    answers = []
    for kit in kit_numbers:
        response = as_("frida").post(f"/api/v1/shipments/{number}/receipt-scans", json={"code": payload(kit)})
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


def logger_csv(sent: datetime, transit_temperatures: list[float], *, header: bool = True) -> str:
    """A logger export: a room-temperature reading before dispatch, then readings during the transit."""
    lines = ["timestamp,temperature_c"] if header else []
    lines.append(f"{(sent - timedelta(minutes=30)).isoformat()},21.5")
    for n, value in enumerate(transit_temperatures, 1):
        lines.append(f"{(sent + timedelta(hours=n)).isoformat()},{value}")
    return "\n".join(lines) + "\n"


def both_arms(kit_world) -> list[str]:
    return kit_world.active[:2] + kit_world.placebo[:2]


def other_study_kits(db) -> list[str]:
    """Released kits of the second study (NCT06805448), through the same packaging path."""
    asc = released_lot(db, "asc", "ASC-2026-0202", units=8)
    plb = released_lot(db, "placebo", "PLB-2026-0202", units=8)
    sealed_kit_list(db, "NCT06805448", 4, seed="other-study")
    package(db, "NCT06805448", 4, [asc], [plb])
    with db.read() as s:
        return list(s.scalars(select(Kit.number).where(Kit.state == KitState.released,
                                                       Kit.study_id != studies.by_code(s, STUDY).id)))


def text_of(page: str) -> str:
    """A page's words, tags removed and spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


# --- the whole way, through the pages ----------------------------------------------------------------


def test_kits_of_both_arms_are_packed_dispatched_scanned_and_received_into_the_sites_stock(kit_world, as_, db,
                                                                                          monkeypatch):
    sara, frida = as_("sara"), as_("frida")
    made = sara.submit("/shipments", {"study": STUDY, "site": SITE})
    assert made.status_code == 303, made.text
    number = made.headers["location"].split("?")[0].rsplit("/", 1)[-1]
    kits_ = both_arms(kit_world)
    for kit in kits_:
        answer = sara.submit(f"/shipments/{number}/kits", {"code": payload(kit)})
        assert answer.status_code == 303, answer.text
        assert f"Kit {kit} packed" in sara.get(answer.headers["location"]).text
    page = sara.get(f"/shipments/{number}")
    assert all(kit in page.text for kit in kits_) and 'name="shipper_id"' in page.text
    manifest = sara.get(f"/shipments/{number}/manifest").text
    assert all(kit in manifest for kit in kits_) and "4 kits" in manifest
    version = shipment_row(db, number).row_version
    sent = sara.submit(f"/shipments/{number}/dispatch", {"shipper_id": "DS-07", "seal_number": "SEAL-1234",
                                                        "logger_id": "LOG-88", "shipment_version": version})
    assert sent.status_code == 303, sent.text
    assert {kit_row(db, k).state for k in kits_} == {KitState.in_transit}
    assert kit_row(db, kits_[0]).location == f"In transit · {number}"

    dispatch_time = arrives(monkeypatch, db, number)
    receipt_page = frida.get(f"/shipments/{number}").text
    assert "0 of 4 scanned" in receipt_page and "/receipt-scans" in receipt_page
    for n, kit in enumerate(kits_, 1):
        scanned = frida.submit(f"/shipments/{number}/receipt-scans", {"code": payload(kit)})
        assert scanned.status_code == 303, scanned.text
        verdict = frida.get(scanned.headers["location"]).text
        assert f"{kit} ✓" in verdict and f"{n} of 4 scanned" in verdict
    version = shipment_row(db, number).row_version
    done = frida.post(f"/shipments/{number}/receipt",
                      data={"csrf_token": frida.csrf(), "seal_intact": "yes", "logger_source": "csv",
                            "shipment_version": str(version)},
                      files={"logger_csv": ("LOG-88.csv", logger_csv(dispatch_time, [-185.0, -178.5, -160.2]),
                                            "text/csv")},
                      follow_redirects=False)
    assert done.status_code == 303, done.text

    shipment = shipment_row(db, number)
    assert shipment.state == "received" and shipment.seal_intact is True and shipment.logger_source == "csv"
    assert (shipment.logger_min, shipment.logger_max) == (-185.0, -160.2), "the reading before dispatch does not count"
    assert shipment.transit_minutes == 26 * 60 and shipment.receipt_problems is None
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(LoggerReading)
                        .where(LoggerReading.shipment_id == shipment.id)) == 4
        site_id = s.scalars(select(Site.id).where(Site.code == SITE)).one()
    for kit in kits_:
        row = kit_row(db, kit)
        assert (row.state, row.site_id, row.location) == (KitState.at_site, site_id, f"{SITE} · pharmacy")
        assert custody_actions(db, kit) == ["packed", "dispatched", "received"]
        actions = audit_actions(db, "kit", kit)
        assert actions.count("kit ship") == actions.count("kit receive") == actions.count("kit scanned at receipt") == 1
    assert audit_actions(db, "shipment", number) == (["shipment created"] + ["kit packed"] * 4 +
                                                     ["shipment dispatched", "shipment sealed", "shipment received",
                                                      "receipt check"])
    with db.read() as s:
        event = s.scalars(select(CustodyEvent).join(Kit, Kit.id == CustodyEvent.kit_id)
                          .where(Kit.number == kits_[0], CustodyEvent.action == "dispatched")).one()
        assert event.condition == "dry shipper DS-07, seal SEAL-1234, logger LOG-88" and event.by_name == "Sara Supply"
        assert event.shipment_id == shipment.id
    received_page = frida.get(f"/shipments/{number}").text
    assert "Received" in received_page and "-185.0 to -160.2 °C" in received_page and "26 h 0 min" in received_page


def test_the_api_receipt_scan_returns_the_kits_blinded_view_and_the_progress(kit_world, as_, db, monkeypatch):
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    arrives(monkeypatch, db, number)
    answers = scan_in(as_, number, kits_)
    assert [a["progress"] for a in answers] == [f"{n} of 4 scanned" for n in range(1, 5)]
    assert answers[-1]["remaining"] == 0 and answers[0]["shipment"] == number
    first = answers[0]["kit"]
    assert first["kit_number"] == kits_[0] and first["state_label"] == "In transit" and first["study"] == STUDY
    assert set(first) == {"kit_number", "study", "blinded_lot", "expiry", "state", "state_label", "location",
                          "kit_version"}
    # the two arms' answers differ in their kit numbers only
    active, placebo = answers[0], answers[2]
    assert {k: v for k, v in active["kit"].items() if k not in ("kit_number",)} == \
           {k: v for k, v in placebo["kit"].items() if k not in ("kit_number",)}
    done = as_("frida").post(f"/api/v1/shipments/{number}/receipt",
                             json={"seal_intact": True, "logger_source": "manual", "logger_min": -190,
                                   "logger_max": -165.5})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["state"] == "received" and body["scanned"] == body["total"] == 4 and body["receipt_problems"] == []
    assert (body["logger_min"], body["logger_max"]) == (-190.0, -165.5)
    assert {line["state"] for line in body["kits"]} == {"at_site"}


def test_a_receipt_scan_reads_and_writes_in_the_thread_pool_not_on_the_event_loop(kit_world, as_, db, monkeypatch):
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    arrives(monkeypatch, db, number)
    where, real = [], custody.receipt_scan

    def watched(*args, **kwargs):
        try:
            asyncio.get_running_loop()
            where.append("event loop")
        except RuntimeError:
            where.append("thread pool")
        return real(*args, **kwargs)

    monkeypatch.setattr(custody, "receipt_scan", watched)
    assert [a["progress"] for a in scan_in(as_, number, kits_[:1])] == ["1 of 4 scanned"]
    assert where == ["thread pool"], "a PostgreSQL round trip on the loop would hold every other request"


def test_the_logger_file_can_be_uploaded_to_the_api_as_a_file(kit_world, as_, db, monkeypatch):
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    sent = arrives(monkeypatch, db, number)
    scan_in(as_, number, kits_)
    done = as_("frida").post(f"/api/v1/shipments/{number}/receipt/logger-csv", data={"seal_intact": "true"},
                             files={"logger_csv": ("log.csv", logger_csv(sent, [-170.0, -151.0]), "text/csv")})
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "received" and done.json()["logger_readings"] == 3


# --- refusals at packing and dispatch --------------------------------------------------------------------


def test_packing_refuses_a_kit_that_is_not_released_naming_the_code(kit_world, as_, db):
    held = kit_world.active[0]
    with db.write() as s:
        kits.move(s, actor_of(db, "sara"), kits.by_number(s, held), "quarantine", reason="test hold")
    number = created(as_)
    refused = as_("sara").post(f"/api/v1/shipments/{number}/kits", json={"code": payload(held)})
    assert refused.status_code == 422 and refused.json()["field"] == "code"
    assert "only released kits can be packed" in refused.json()["error"] and held in refused.json()["error"]
    assert shipment_row(db, number).row_version == 1 and kit_row(db, held).state == KitState.quarantined


def test_packing_refuses_a_kit_of_another_study(kit_world, as_, db):
    foreign = other_study_kits(db)[0]
    number = created(as_)
    refused = as_("sara").post(f"/api/v1/shipments/{number}/kits", json={"code": payload(foreign)})
    assert refused.status_code == 422 and refused.json()["field"] == "code"
    assert "NCT06805448" in refused.json()["error"] and f"is for {STUDY}" in refused.json()["error"]
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(ShipmentKit)) == 0


def test_packing_refuses_a_kit_already_in_an_open_shipment_and_a_forged_label(kit_world, as_, db):
    kit = kit_world.placebo[0]
    first = packed(as_, [kit])
    second = created(as_)
    again = as_("sara").post(f"/api/v1/shipments/{second}/kits", json={"code": payload(kit)})
    assert again.status_code == 422 and again.json()["field"] == "code"
    assert f"already packed in shipment {first}" in again.json()["error"]
    twice = as_("sara").post(f"/api/v1/shipments/{first}/kits", json={"code": payload(kit)})
    assert twice.status_code == 422 and "already packed in this shipment" in twice.json()["error"]
    forged = as_("sara").post(f"/api/v1/shipments/{second}/kits", json={"code": payload(kit)[:-3] + "AAA"})
    assert forged.status_code == 422 and forged.json()["field"] == "code"
    page = as_("sara").submit(f"/shipments/{second}/kits", {"code": payload(kit)})
    assert page.status_code == 422 and "Refused" in page.text and f"already packed in shipment {first}" in page.text
    # taken out of the first, it may go into the second
    assert as_("sara").delete(f"/api/v1/shipments/{first}/kits/{kit}").status_code == 200
    assert as_("sara").post(f"/api/v1/shipments/{second}/kits", json={"code": payload(kit)}).status_code == 200
    assert custody_actions(db, kit) == ["packed", "unpacked", "packed"]


@pytest.mark.parametrize("missing", ["shipper_id", "seal_number", "logger_id"])
def test_dispatch_names_each_missing_field_and_changes_nothing(kit_world, as_, db, missing):
    kits_ = both_arms(kit_world)
    number = packed(as_, kits_)
    before = event_count(db)
    body = {"shipper_id": "DS-07", "seal_number": "SEAL-1234", "logger_id": "LOG-88", missing: "  "}
    refused = as_("sara").post(f"/api/v1/shipments/{number}/dispatch", json=body)
    assert refused.status_code == 422 and refused.json()["field"] == missing
    assert shipment_row(db, number).state == "packing" and event_count(db) == before
    assert {kit_row(db, k).state for k in kits_} == {KitState.released}
    page = as_("sara").submit(f"/shipments/{number}/dispatch", body)
    assert page.status_code == 422 and 'aria-invalid="true"' in page.text
    assert re.search(rf'name="{missing}"[^>]*aria-invalid="true"', page.text)


def test_an_empty_shipment_cannot_be_dispatched(kit_world, as_, db):
    number = created(as_)
    refused = as_("sara").post(f"/api/v1/shipments/{number}/dispatch",
                               json={"shipper_id": "DS-07", "seal_number": "S-1", "logger_id": "L-1"})
    assert refused.status_code == 422 and "has no kits" in refused.json()["error"]


def test_blinded_users_cannot_create_pack_or_dispatch_and_the_monitor_reads_only(kit_world, as_, db):
    number = packed(as_, both_arms(kit_world))
    for who in BLINDED:
        assert as_(who).post("/api/v1/shipments", json={"study": STUDY, "site": SITE}).status_code == 403, who
        assert as_(who).post(f"/api/v1/shipments/{number}/dispatch",
                             json={"shipper_id": "D", "seal_number": "S", "logger_id": "L"}).status_code == 403, who
        assert as_(who).submit("/shipments", {"study": STUDY, "site": SITE}).status_code == 403, who
    assert as_("mette").get(f"/api/v1/shipments/{number}").json()["allowed_actions"] == []
    page = as_("mette").get(f"/shipments/{number}")
    assert page.status_code == 200 and "/dispatch" not in page.text and "/receipt-scans" not in page.text
    assert as_("ida").get("/shipments").status_code == 403 and as_("adam").get("/api/v1/shipments").status_code == 403
    assert shipment_row(db, number).state == "packing"
    assert as_("frida").post(f"/api/v1/shipments/{number}/kits", json={"code": payload(kit_world.active[3])}
                             ).status_code == 403


# --- refusals at receipt -------------------------------------------------------------------------------------


def test_a_kit_not_on_the_manifest_is_refused_and_nothing_changes(kit_world, as_, db):
    number = dispatched(as_, both_arms(kit_world))
    stranger, frida = kit_world.active[3], as_("frida")
    before = event_count(db)
    refused = frida.post(f"/api/v1/shipments/{number}/receipt-scans", json={"code": payload(stranger)})
    assert refused.status_code == 422 and refused.json()["field"] == "code"
    assert f"not on the manifest of shipment {number}" in refused.json()["error"]
    assert event_count(db) == before and kit_row(db, stranger).state == KitState.released
    page = as_("frida").submit(f"/shipments/{number}/receipt-scans", {"code": payload(stranger)})
    assert page.status_code == 422 and "Refused" in page.text and "not on the manifest" in page.text
    assert "0 of 4 scanned" in page.text


def test_a_kit_scanned_twice_is_a_conflict(kit_world, as_, db):
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    scan_in(as_, number, kits_[:1])
    before = event_count(db)
    again = as_("frida").post(f"/api/v1/shipments/{number}/receipt-scans", json={"code": payload(kits_[0])})
    assert again.status_code == 409 and again.json()["field"] == "code" and "already scanned" in again.json()["error"]
    assert event_count(db) == before


def test_receipt_scans_need_a_shipment_in_transit_and_a_pharmacist(kit_world, as_, db):
    kits_ = both_arms(kit_world)
    number = packed(as_, kits_)
    early = as_("frida").post(f"/api/v1/shipments/{number}/receipt-scans", json={"code": payload(kits_[0])})
    assert early.status_code == 422 and early.json()["field"] == "shipment" and "being packed" in early.json()["error"]
    assert as_("sara").post(f"/api/v1/shipments/{number}/receipt-scans",
                            json={"code": payload(kits_[0])}).status_code == 403
    assert as_("frida").post("/api/v1/shipments/SH-1999-0001/receipt-scans",
                             json={"code": payload(kits_[0])}).status_code == 404


def test_a_bad_logger_file_is_refused_naming_its_line_and_nothing_is_received(kit_world, as_, db, monkeypatch):
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    sent = arrives(monkeypatch, db, number)
    scan_in(as_, number, kits_)
    good = logger_csv(sent, [-180.0, -175.0])
    cases = {
        "third line's temperature": (good.replace(",-180.0", ",cold"), "Line 3: 'cold' is not a temperature"),
        "no UTC offset": (good.replace("+00:00,-175.0", ",-175.0"), "Line 4:"),
        "three columns": (good + f"{(sent + timedelta(hours=3)).isoformat()},-170,x\n", "Line 5: expected two columns"),
        "time going back": (good + f"{sent.isoformat()},-170\n", "Line 5: the time goes back"),
        "empty": ("", "empty"),
    }
    for what, (content, message) in cases.items():
        refused = as_("frida").post(f"/api/v1/shipments/{number}/receipt",
                                    json={"seal_intact": True, "logger_source": "csv", "logger_csv": content})
        assert refused.status_code == 422, what
        assert refused.json()["field"] == "logger_csv" and message in refused.json()["error"], (what, refused.json())
    page = as_("frida").post(f"/shipments/{number}/receipt",
                             data={"csrf_token": as_("frida").csrf(), "seal_intact": "yes", "logger_source": "csv"},
                             files={"logger_csv": ("bad.csv", cases["third line's temperature"][0], "text/csv")},
                             follow_redirects=False)
    assert page.status_code == 422 and "Line 3" in page.text
    assert shipment_row(db, number).state == "in_transit"
    assert {kit_row(db, k).state for k in kits_} == {KitState.in_transit}


def test_unscanned_kits_are_refused_or_recorded_missing_with_a_reason(kit_world, as_, db, monkeypatch):
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    arrives(monkeypatch, db, number)
    scan_in(as_, number, kits_[:3])
    body = {"seal_intact": True, "logger_source": "manual", "logger_min": -190, "logger_max": -170}
    refused = as_("frida").post(f"/api/v1/shipments/{number}/receipt", json=body)
    assert refused.status_code == 422 and refused.json()["field"] == "missing_reason"
    assert "1 of 4 kits are not scanned" in refused.json()["error"] and kits_[3] in refused.json()["error"]
    assert shipment_row(db, number).state == "in_transit"
    done = as_("frida").post(f"/api/v1/shipments/{number}/receipt",
                             json={**body, "missing_reason": "not in the shipper"})
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "received"
    assert [kit_row(db, k).state for k in kits_] == [KitState.at_site] * 3 + [KitState.missing]
    assert custody_actions(db, kits_[3]) == ["packed", "dispatched", "missing at receipt"]


# --- failed receipt checks hold the whole shipment -----------------------------------------------------------


def _receive_failing(as_, number: str, sent: datetime, cause: str):
    if cause == "broken seal":
        body = {"seal_intact": False, "logger_source": "csv", "logger_csv": logger_csv(sent, [-180.0, -179.0])}
    elif cause == "missing logger":
        body = {"seal_intact": True, "logger_source": "missing"}
    else:
        body = {"seal_intact": True, "logger_source": "csv", "logger_csv": logger_csv(sent, [-181.0, -140.0, -182.0])}
    return as_("frida").post(f"/api/v1/shipments/{number}/receipt", json=body)


@pytest.mark.parametrize("cause, decision, problem", [
    ("broken seal", "accept", "the seal was not intact"),
    ("missing logger", "reject", "no temperature record"),
    ("−140 °C reading", "accept", "the temperature reached -140 °C"),
    ("−140 °C reading", "reject", "above the -150 °C limit"),
])
def test_a_failed_check_quarantines_the_whole_shipment_until_qa_signs_its_assessment(kit_world, as_, db, monkeypatch,
                                                                                     cause, decision, problem):
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    sent = arrives(monkeypatch, db, number)
    scan_in(as_, number, kits_)
    held = _receive_failing(as_, number, sent, cause)
    assert held.status_code == 200, held.text
    assert held.json()["state"] == "quarantined"
    assert any(problem in p for p in held.json()["receipt_problems"]), held.json()["receipt_problems"]
    assert {kit_row(db, k).state for k in kits_} == {KitState.quarantined}, "both arms alike"
    assert all(custody_actions(db, k)[-1] == "received into quarantine" for k in kits_)
    assert "awaiting QA" in as_("frida").get(f"/shipments/{number}").text
    assert as_("frida").get("/").text.count("quarantined shipment") == 0
    assert "1 quarantined shipment awaits your assessment" in text_of(as_("anna").get("/").text)

    # nobody else decides, a reason and the password are needed, and the sara's moves are not QA's
    assert as_("sara").post(f"/api/v1/shipments/{number}/assessment",
                            json={"decision": decision, "reason": "x", "password": PASSWORD}).status_code == 403
    no_reason = as_("anna").post(f"/api/v1/shipments/{number}/assessment",
                                 json={"decision": decision, "reason": " ", "password": PASSWORD})
    assert no_reason.status_code == 422 and no_reason.json()["field"] == "reason"
    wrong = as_("anna").post(f"/api/v1/shipments/{number}/assessment",
                             json={"decision": decision, "reason": "checked", "password": "not it"})
    assert wrong.status_code == 401 and shipment_row(db, number).state == "quarantined"

    reason = "excursion assessed against stability data" if decision == "accept" else "cannot exclude warming"
    version = shipment_row(db, number).row_version
    page = as_("anna").submit(f"/shipments/{number}/assessment", {"decision": decision, "reason": reason,
                                                                 "password": PASSWORD, "shipment_version": version})
    assert page.status_code == 303, page.text
    shipment = shipment_row(db, number)
    expected = (("received", KitState.at_site, "released") if decision == "accept"
                else ("rejected", KitState.withdrawn, "rejected"))
    assert (shipment.state, shipment.qa_decision, shipment.qa_reason) == (expected[0], decision + "ed", reason)
    assert {kit_row(db, k).state for k in kits_} == {expected[1]}
    with db.read() as s:
        sig = s.get(Signature, shipment.qa_signature_id)
        assert (sig.signer_name, Meaning(sig.meaning).value, sig.entity_type, sig.entity_id) == \
               ("Anna QA", expected[2], "shipment", number)
        assert signatures.verify_all(s)[1] == [], "the signed content is what the record still holds"
    shown = as_("mette").get(f"/shipments/{number}").text
    assert "Anna QA" in shown and expected[2] in shown and reason in shown
    assert as_("anna").post(f"/api/v1/shipments/{number}/assessment",
                            json={"decision": decision, "reason": reason, "password": PASSWORD}).status_code == 422


def test_a_transit_beyond_the_shippers_hold_time_is_held_too(kit_world, as_, db, monkeypatch):
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    arrives(monkeypatch, db, number, after=timedelta(days=8))
    scan_in(as_, number, kits_)
    done = as_("frida").post(f"/api/v1/shipments/{number}/receipt",
                             json={"seal_intact": True, "logger_source": "manual", "logger_min": -190,
                                   "logger_max": -170})
    assert done.json()["state"] == "quarantined" and "validated" in done.json()["receipt_problems"][0]


# --- lost, damaged, stored --------------------------------------------------------------------------------------


def test_a_lost_shipment_takes_every_kit_in_it_to_missing(kit_world, as_, db):
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    assert as_("frida").post(f"/api/v1/shipments/{number}/lost", json={"reason": "courier"}).status_code == 403
    no_reason = as_("sara").post(f"/api/v1/shipments/{number}/lost", json={"reason": ""})
    assert no_reason.status_code == 422 and no_reason.json()["field"] == "reason"
    lost = as_("sara").post(f"/api/v1/shipments/{number}/lost", json={"reason": "courier lost the dry shipper"})
    assert lost.status_code == 200 and lost.json()["state"] == "lost"
    assert {kit_row(db, k).state for k in kits_} == {KitState.missing}
    assert all(custody_actions(db, k)[-1] == "lost in transit" for k in kits_)
    assert "shipment lost" in audit_actions(db, "shipment", number)
    late = as_("frida").post(f"/api/v1/shipments/{number}/receipt-scans", json={"code": payload(kits_[0])})
    assert late.status_code == 422 and "lost in transit" in late.json()["error"]


def test_a_shipment_with_scanned_kits_cannot_be_reported_lost(kit_world, as_, db):
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    scan_in(as_, number, kits_[:1])
    refused = as_("sara").post(f"/api/v1/shipments/{number}/lost", json={"reason": "no news"})
    assert refused.status_code == 422 and "arrived" in refused.json()["error"]


def test_a_damaged_kit_is_recorded_at_the_site_and_at_the_bench(kit_world, as_, db, monkeypatch):
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    arrives(monkeypatch, db, number)
    scan_in(as_, number, kits_)
    as_("frida").post(f"/api/v1/shipments/{number}/receipt",
                      json={"seal_intact": True, "logger_source": "manual", "logger_min": -190, "logger_max": -170})
    no_reason = as_("frida").submit("/storage/damaged", {"code": payload(kits_[0]), "reason": ""})
    assert no_reason.status_code == 422 and kit_row(db, kits_[0]).state == KitState.at_site
    at_site = as_("frida").submit("/storage/damaged", {"code": payload(kits_[0]), "reason": "outer box crushed"})
    assert at_site.status_code == 303, at_site.text
    at_bench = as_("sara").post(f"/api/v1/kits/{kit_world.active[3]}/damage", json={"reason": "label torn"})
    assert at_bench.status_code == 200 and at_bench.json()["state"] == "damaged"
    assert kit_row(db, kits_[0]).state == KitState.damaged
    assert custody_actions(db, kits_[0])[-1] == "damaged" and custody_actions(db, kit_world.active[3]) == ["damaged"]
    with db.read() as s:
        event = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "damaged")
                          .order_by(CustodyEvent.id)).first()
        assert (event.from_place, event.condition, event.by_name) == (f"{SITE} · pharmacy", "outer box crushed",
                                                                      "Frida Pharmacist")
    assert as_("mette").post(f"/api/v1/kits/{kit_world.active[2]}/damage", json={"reason": "x"}).status_code == 403


def test_storage_locations_hold_received_kits_under_a_readable_name(kit_world, as_, db, monkeypatch):
    frida, sara = as_("frida"), as_("sara")
    assert frida.post("/api/v1/storage-locations", json={"site": "", "code": "CB-T1", "name": "Tank 1",
                                                         "kind": "tank"}).status_code == 403
    assert sara.post("/api/v1/storage-locations", json={"site": "", "code": "CB-T1", "name": "Tank 1",
                                                        "kind": "tank"}).status_code == 201
    added = frida.submit("/storage/locations", {"site": SITE, "code": "rh-ent-f1", "name": "Freezer 1",
                                                "kind": "freezer"})
    assert added.status_code == 303, added.text
    twice = frida.post("/api/v1/storage-locations", json={"site": SITE, "code": "RH-ENT-F1", "name": "Again",
                                                          "kind": "freezer"})
    assert twice.status_code == 422 and twice.json()["field"] == "code"
    odd = frida.post("/api/v1/storage-locations", json={"site": SITE, "code": "X", "name": "Shelf", "kind": "shelf"})
    assert odd.status_code == 422 and odd.json()["field"] == "kind"
    # the pharmacist reads her site's storage only: the bench's tanks serve no site flow (custody.storage_places)
    assert [row["place"] for row in frida.get("/api/v1/storage-locations").json()] == [f"{SITE} · Freezer 1"]
    assert [row["place"] for row in sara.get("/api/v1/storage-locations").json()] == ["Cell bench · Tank 1",
                                                                                     f"{SITE} · Freezer 1"]
    # a released kit put away at the bench; not yet at the site, the site cannot store it
    kits_ = both_arms(kit_world)
    assert sara.post("/api/v1/storage-locations/CB-T1/kits", json={"code": payload(kits_[0])}
                     ).json()["location"] == "Cell bench · Tank 1"
    early = frida.post("/api/v1/storage-locations/RH-ENT-F1/kits", json={"code": payload(kits_[0])})
    assert early.status_code == 422 and early.json()["field"] == "code"
    number = dispatched(as_, kits_)
    assert kit_row(db, kits_[0]).storage_location_id is None, "out of the tank, into the dry shipper"
    arrives(monkeypatch, db, number)
    scan_in(as_, number, kits_)
    frida.post(f"/api/v1/shipments/{number}/receipt",
               json={"seal_intact": True, "logger_source": "manual", "logger_min": -190, "logger_max": -170})
    stored = frida.submit("/storage/store", {"code": payload(kits_[1]), "location": "RH-ENT-F1"})
    assert stored.status_code == 303 and "location=RH-ENT-F1" in stored.headers["location"]
    assert kit_row(db, kits_[1]).location == f"{SITE} · Freezer 1"
    assert custody_actions(db, kits_[1]) == ["packed", "dispatched", "received", "stored"]
    assert custody_actions(db, kits_[0]) == ["stored", "packed", "dispatched", "received"]
    page = frida.get("/storage").text
    assert "Freezer 1" in page and "Tank 1" not in page, "her site's storage, not the bench's"
    assert "Tank 1" in sara.get("/storage").text
    with db.read() as s:
        chain = custody.chain(s, kit_row(db, kits_[1]))
    assert [(e.from_place, e.to_place) for e in chain][-1] == (f"{SITE} · pharmacy", f"{SITE} · Freezer 1")


# --- lists, work queues, concurrency -------------------------------------------------------------------------------


def test_the_lists_filter_by_state_and_site_and_the_work_queues_point_at_them(kit_world, as_, db):
    packing = packed(as_, kit_world.active[:1])
    moving = dispatched(as_, kit_world.placebo[:1])
    sara = as_("sara")
    listed = sara.get("/api/v1/shipments?state=packing").json()["shipments"]
    assert [r["number"] for r in listed] == [packing]
    listed = sara.get(f"/api/v1/shipments?state=in_transit&site={SITE}").json()["shipments"]
    assert [r["number"] for r in listed] == [moving]
    assert sara.get("/api/v1/shipments?state=nonsense").status_code == 422
    listed = sara.get("/shipments?state=open").text
    assert packing in listed and moving in listed
    assert "shipment is being packed" in sara.get("/").text
    assert "shipment in transit awaits your receipt" in as_("frida").get("/").text
    assert "being packed" not in as_("frida").get("/").text


def test_two_pharmacists_scanning_the_same_kit_at_once_one_is_recorded_one_gets_a_conflict(kit_world, as_, db):
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    with db.write() as s:
        fred = users.create_user(s, users.cli_actor(), "fred", "Fred Pharmacist", PASSWORD, ["pharmacist"])
        users.link(s, users.cli_actor(), fred, site=SITE, study=STUDY)  # a second pharmacist of the same site
    barrier, results = threading.Barrier(2), []

    def scan(who: str) -> None:
        actor = actor_of(db, who)
        barrier.wait()
        try:
            with db.write_connection() as conn:
                custody.receipt_scan(conn, actor, number, payload(kits_[0]), SECRET)
            results.append("scanned")
        except Conflict:
            results.append("conflict")
        except Exception as error:
            results.append(repr(error))

    threads = [threading.Thread(target=scan, args=(who,)) for who in ("frida", "fred")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == ["conflict", "scanned"], results
    assert audit_actions(db, "kit", kits_[0]).count("kit scanned at receipt") == 1
    with db.read() as s:
        assert custody.progress(s, custody.by_number(s, number)) == (1, 4)


def test_two_supply_managers_packing_the_same_kit_at_once_pack_it_once(kit_world, as_, db):
    kit = kit_world.active[0]
    first, second = created(as_), created(as_)
    with db.write() as s:
        users.create_user(s, users.cli_actor(), "sam", "Sam Supply", PASSWORD, ["supply_manager"])
    barrier, results = threading.Barrier(2), []

    def pack(who: str, number: str) -> None:
        actor = actor_of(db, who)
        barrier.wait()
        try:
            with db.write() as s:
                custody.pack(s, actor, custody.by_number(s, number), payload(kit), SECRET)
            results.append("packed")
        except Exception as error:
            results.append(type(error).__name__)

    threads = [threading.Thread(target=pack, args=args) for args in (("sara", first), ("sam", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) in (["Conflict", "packed"], ["InvalidInput", "packed"]), results
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(ShipmentKit)) == 1


# --- one table for a shipment's moves ----------------------------------------------------------------------------


def test_one_table_says_who_may_move_a_shipment_in_each_state():
    """The pages and the API offer exactly what custody.MACHINE allows; nothing moves a shipment
    that is received, rejected or lost."""
    allowed = {(state.value, role): custody.MACHINE.allowed(state.value, [role])
               for state in custody.ShipmentState for role in Role}
    assert {key: actions for key, actions in allowed.items() if actions} == {
        ("packing", Role.supply_manager): ["pack", "unpack", "dispatch"],
        ("in_transit", Role.supply_manager): ["report_lost"],
        ("in_transit", Role.pharmacist): ["scan_receipt", "complete_receipt"],
        ("quarantined", Role.qa): ["accept", "reject"],
    }
    assert {name: custody.MOVES[name].signature for name in ("accept", "reject")} == {
        "accept": Meaning.released, "reject": Meaning.rejected}, "QA signs its assessment with the table's meaning"
    assert {name: state for name, (_word, state, _kits, _meaning) in custody.DECISIONS.items()} == {
        "accept": "received", "reject": "rejected"}


def test_a_move_the_table_refuses_is_refused_by_the_service_in_the_actions_words(kit_world, db):
    with db.write() as s:
        shipment = custody.create(s, actor_of(db, "sara"), STUDY, SITE)
        with pytest.raises(InvalidInput) as not_yet:
            custody.complete_receipt(s, actor_of(db, "frida"), shipment, seal_intact=True,
                                     logger=custody.LoggerRecord("missing"))
        with pytest.raises(Forbidden) as not_hers:
            custody.dispatch(s, actor_of(db, "frida"), shipment, shipper_id="DS-07", seal_number="S-1",
                             logger_id="L-1")
    assert not_yet.value.message == (f"Shipment {shipment.number} is being packed: you cannot complete a receipt "
                                     "now.")
    assert not_hers.value.message == "Only the supply manager may dispatch a shipment."


# --- the wall around the sealed compartment ---------------------------------------------------------------------


def test_the_shipment_modules_cannot_reach_the_sealed_compartment():
    """Follow every import (top level or inside a function) from custody and the shipment pages and
    API: none reaches the sealed compartment, a module built on it, or the pharmacy's doors."""
    starts = ["cellbench.custody", "cellbench.web.shipments", "cellbench.api.shipments"]
    forbidden = {"cellbench.sealed", "cellbench.supply", "cellbench.demo", "cellbench.pharmacy",
                 "cellbench.trace.unblinded", "cellbench.accountability.by_lot"}
    assert not chains_into(starts, forbidden)
    assert {"cellbench.kits", "cellbench.signatures"} <= import_graph().reachable("cellbench.custody"), \
        "the follower follows"


def test_cellbench_verify_knows_what_a_shipment_signature_covers():
    """`cellbench verify` imports only the modules in SIGNING_MODULES before checking signatures."""
    from cellbench import integrity

    assert "custody" in integrity.SIGNING_MODULES, "add 'custody' to cellbench/integrity.py SIGNING_MODULES"


# --- a lot quarantined while its kits travel or wait at the site ------------------------------------------


def _lot_move(db, name: str, reason: str, lot_number: str) -> None:
    """QA moves the lot the way every page does: through the release, which carries its kits along."""
    from cellbench import lots, release

    with db.write() as s:
        release.move_lot(s, users.by_username(s, "anna"), lots.by_number(s, lot_number), name, reason,
                         password=PASSWORD)


def _received_well(as_, number: str):
    return as_("frida").post(f"/api/v1/shipments/{number}/receipt",
                             json={"seal_intact": True, "logger_source": "manual", "logger_min": -190,
                                   "logger_max": -170})


def test_a_lots_quarantine_holds_its_kits_at_the_site_and_in_transit_and_they_arrive_held(kit_world, as_, db,
                                                                                         monkeypatch):
    """Both arms alike: kit_world's blinded lot is one ASC and one placebo lot, so the proportionate
    policy holds every kit of it (the ASC lot's share of the active kits is all of them)."""
    settled = [kit_world.active[0], kit_world.placebo[0]]
    first = dispatched(as_, settled)
    arrives(monkeypatch, db, first)
    scan_in(as_, first, settled)
    assert _received_well(as_, first).json()["state"] == "received"
    travelling = kit_world.active[1:3] + kit_world.placebo[1:3]
    second = dispatched(as_, travelling)

    _lot_move(db, "quarantine", "sterility retest under investigation", kit_world.asc_lot)
    held = {k: kit_row(db, k) for k in settled + travelling}
    assert {(r.state, r.state_before_quarantine) for n, r in held.items() if n in settled} == {
        (KitState.quarantined, "at_site")}
    assert {(r.state, r.state_before_quarantine) for n, r in held.items() if n in travelling} == {
        (KitState.quarantined, "in_transit")}

    arrives(monkeypatch, db, second)
    answers = scan_in(as_, second, travelling)
    assert {a["kit"]["state_label"] for a in answers} == {"Temporarily unavailable"}, "the same words for both arms"
    assert _received_well(as_, second).json()["state"] == "received", "the shipment itself passed its checks"
    with db.read() as s:
        site_id = s.scalars(select(Site.id).where(Site.code == SITE)).one()
    for kit in travelling:
        row = kit_row(db, kit)
        assert (row.state, row.state_before_quarantine, row.site_id, row.location) == (
            KitState.quarantined, "at_site", site_id, f"{SITE} · pharmacy"), "arrived, and still held"
        assert row.quarantine_id is not None
        assert custody_actions(db, kit) == ["packed", "dispatched", "received into quarantine"]

    _lot_move(db, "release_from_quarantine", "retest passed", kit_world.asc_lot)
    assert {kit_row(db, k).state for k in settled + travelling} == {KitState.at_site}, \
        "back in the site's stock, not in transit"
    assert {kit_row(db, k).state for k in kit_world.active[3:] + kit_world.placebo[3:]} == {KitState.released}


def test_qa_accepting_a_held_shipment_leaves_the_kits_of_a_quarantined_lot_held(kit_world, as_, db, monkeypatch):
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    sent = arrives(monkeypatch, db, number)
    scan_in(as_, number, kits_)
    assert _receive_failing(as_, number, sent, "missing logger").json()["state"] == "quarantined"
    # the lot is quarantined while QA is still assessing the shipment: its kits join the lot's quarantine
    _lot_move(db, "quarantine", "complaint under investigation", kit_world.asc_lot)
    assert {kit_row(db, k).quarantine_id is not None for k in kits_} == {True}
    accepted = as_("anna").post(f"/api/v1/shipments/{number}/assessment",
                                json={"decision": "accept", "reason": "logger found, in range", "password": PASSWORD})
    assert accepted.status_code == 200, accepted.text
    assert {kit_row(db, k).state for k in kits_} == {KitState.quarantined}, "the lot still holds them"
    _lot_move(db, "release_from_quarantine", "complaint unfounded", kit_world.asc_lot)
    assert {kit_row(db, k).state for k in kits_} == {KitState.at_site}


def test_a_kit_held_while_travelling_is_lost_with_its_shipment(kit_world, as_, db):
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    _lot_move(db, "quarantine", "complaint", kit_world.asc_lot)
    lost = as_("sara").post(f"/api/v1/shipments/{number}/lost", json={"reason": "courier lost the dry shipper"})
    assert lost.status_code == 200
    assert {kit_row(db, k).state for k in kits_} == {KitState.missing}
    assert all(custody_actions(db, k)[-1] == "lost in transit" for k in kits_)
    _lot_move(db, "release_from_quarantine", "complaint unfounded", kit_world.asc_lot)
    assert {kit_row(db, k).state for k in kits_} == {KitState.missing}, "a lost kit stays lost"


def test_a_failed_receipt_raises_a_deviation_linked_to_the_shipment_in_words_for_everyone(kit_world, as_, db,
                                                                                          monkeypatch):
    from cellbench import deviations
    from cellbench.models import Deviation

    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    sent = arrives(monkeypatch, db, number)
    scan_in(as_, number, kits_)
    _receive_failing(as_, number, sent, "broken seal")
    with db.read() as s:
        deviation = s.scalars(select(Deviation)).one()
        shipment = custody.by_number(s, number)
        assert (deviation.origin, deviation.severity, deviation.shipment_id) == ("shipment", "major", shipment.id)
        assert deviations.links(s, deviation) == {"shipment": number}
        assert deviations.deviations_of(s, shipment_id=shipment.id) == [deviation]
    assert "seal was not intact" in deviation.description and number in deviation.blinded_summary
    assert not any(k in deviation.blinded_summary for k in kits_) and "active" not in deviation.description
