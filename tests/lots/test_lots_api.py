"""The batch-record API: an instrument records values, a stale caller gets 409, errors name the field."""
from __future__ import annotations

from fastapi.testclient import TestClient

from cellbench import users

from ..conftest import PASSWORD


def api_for(app, db, username):
    with db.write() as s:
        token = users.create_token(s, users.cli_actor(), users.by_username(s, username), "instrument")
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def test_an_integration_records_a_step_and_a_second_person_verifies_it(app, db, effective_specs):
    olivia, victor = api_for(app, db, "olivia"), api_for(app, db, "victor")
    lot = olivia.post("/api/v1/lots", json={"product": "saline-placebo"})
    assert lot.status_code == 201 and lot.json()["current_step"] == "supplier_receipt"
    number, version = lot.json()["number"], lot.json()["lot_version"]
    started = olivia.post(f"/api/v1/lots/{number}/steps/supplier_receipt/entries", json={"lot_version": version})
    assert started.status_code == 201
    stale = olivia.post(f"/api/v1/lots/{number}/steps/supplier_receipt/entries/1/values",
                        json={"lot_version": version, "values": {"supplier": "B. Braun"}})
    assert stale.status_code == 409 and stale.json()["field"] == "lot_version"
    bad = olivia.post(f"/api/v1/lots/{number}/steps/supplier_receipt/entries/1/values",
                      json={"values": {"units_received": "lots"}})
    assert bad.status_code == 422 and bad.json()["field"] == "units_received"
    recorded = olivia.post(f"/api/v1/lots/{number}/steps/supplier_receipt/entries/1/values", json={"values": {
        "supplier": "B. Braun", "product_name": "NaCl 0.9 %", "supplier_batch": "NACL-9",
        "supplier_expiry": "2028-01-31",
        "received_at": "2026-01-01T10:00+01:00", "units_received": "200", "packaging_intact": "yes"},
        "comments": {"received_at": "recorded from the goods-in log"}})
    assert recorded.status_code == 200, recorded.text
    values = {v["parameter"]: v for v in recorded.json()["entries"][0]["values"]}
    assert values["units_received"]["within_limits"] is True and values["supplier"]["entered_by"] == "Olivia Operator"
    wrong = olivia.post(f"/api/v1/lots/{number}/steps/supplier_receipt/entries/1/perform", json={"password": "nope"})
    assert wrong.status_code == 401
    performed = olivia.post(f"/api/v1/lots/{number}/steps/supplier_receipt/entries/1/perform",
                            json={"password": PASSWORD})
    assert performed.json()["entries"][0]["state"] == "performed"
    own = olivia.post(f"/api/v1/lots/{number}/steps/supplier_receipt/entries/1/verify", json={"password": PASSWORD})
    assert own.status_code == 403
    verified = victor.post(f"/api/v1/lots/{number}/steps/supplier_receipt/entries/1/verify",
                           json={"password": PASSWORD})
    assert verified.status_code == 200 and verified.json()["current_step"] == "certificate_check"
    assert api_for(app, db, "frida").get(f"/api/v1/lots/{number}").status_code == 403  # blinded pharmacist
    assert olivia.get("/api/v1/lots/NO-SUCH").status_code == 404
