"""Material lots and equipment: receipt, QA disposition, calibration, the step rules, scans, pages, API."""
from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cellbench import audit, materials, users
from cellbench.errors import Conflict, Forbidden, InvalidInput, NotFound
from cellbench.models import AuditEvent, Equipment, MaterialLot, MaterialStatus

from .conftest import actor_of

TODAY = date(2026, 3, 10)
STEP_MATERIALS = {"dpbs", "collagenase_nb6", "cell_strainer"}
STEP_EQUIPMENT = {"bsc", "centrifuge"}


def receive(db, username="olivia", *, code="dpbs", supplier_lot="DP-2291", expiry=TODAY + timedelta(days=200),
            today=TODAY) -> MaterialLot:
    with db.write() as s:
        return materials.receive_material(s, actor_of(db, username), material_code=code, name="DPBS w/o Ca/Mg",
                                          supplier="Gibco", supplier_lot=supplier_lot, expiry=expiry, today=today)


def decide(db, lot: MaterialLot, decision: str, username="anna", reason="CoA reviewed, conforms"):
    with db.write() as s:
        row = materials.material_lot(s, lot.material_code, lot.supplier_lot)
        materials.decide_material(s, actor_of(db, username), row, decision, reason)
        return row


def register(db, username="olivia", *, asset_id="CF-0012", kind="centrifuge", due=TODAY + timedelta(days=90)):
    with db.write() as s:
        return materials.register_equipment(s, actor_of(db, username), asset_id=asset_id, equipment_code=kind,
                                            name="Centrifuge Heraeus", calibration_due=due)


def events(db, entity_id, action=None):
    with db.read() as s:
        query = select(AuditEvent).where(AuditEvent.entity_id == entity_id).order_by(AuditEvent.seq)
        if action:
            query = query.where(AuditEvent.action == action)
        return list(s.scalars(query))


# --- receipt and QA disposition ---------------------------------------------------------------


def test_a_received_lot_starts_in_quarantine_and_its_receipt_is_audited(db, people):
    lot = receive(db)
    with db.read() as s:
        stored = materials.material_lot(s, "dpbs", "DP-2291")
        assert MaterialStatus(stored.status) is MaterialStatus.quarantine
    received = events(db, "dpbs:DP-2291", "material received")
    assert len(received) == 1 and received[0].user_name == "Olivia Operator"
    assert '"status": "quarantine"' in received[0].new_value and '"supplier": "Gibco"' in received[0].new_value
    assert materials.material_scan_code(lot) == "MAT|dpbs|DP-2291"


def test_an_already_expired_lot_is_refused_naming_the_expiry_and_nothing_is_stored(db, people):
    with pytest.raises(InvalidInput) as refused:
        receive(db, expiry=TODAY - timedelta(days=1))
    assert refused.value.field == "expiry" and "already past" in refused.value.message
    with db.read() as s:
        assert s.scalars(select(MaterialLot)).first() is None
    receive(db, expiry=TODAY)  # expiring today is not yet past


@pytest.mark.parametrize("field,values", [("material_code", {"code": "DPBS lot!"}), ("material_code", {"code": ""}),
                                          ("supplier_lot", {"supplier_lot": "   "}),
                                          ("expiry", {"expiry": "31/12/2026"})])
def test_bad_receipt_input_names_its_field(db, people, field, values):
    with pytest.raises(InvalidInput) as refused:
        receive(db, **values)
    assert refused.value.field == field


def test_a_material_code_is_written_as_the_specification_writes_it(db, people):
    lot = receive(db, code="  Collagenase_NB6 ")
    assert lot.material_code == "collagenase_nb6"


def test_the_same_supplier_lot_of_the_same_material_cannot_be_received_twice(db, people):
    receive(db)
    with pytest.raises(Conflict) as refused:
        receive(db, "anna")
    assert refused.value.field == "supplier_lot"
    receive(db, code="collagenase_nb6")  # another material may share the supplier's lot text


def test_only_operators_and_qa_receive_materials(db, people):
    with pytest.raises(Forbidden):
        receive(db, "quinn")
    receive(db, "anna", supplier_lot="QA-1")


def test_qa_releases_a_lot_with_a_reason_and_the_change_is_audited(db, people):
    lot = receive(db)
    with pytest.raises(InvalidInput) as no_reason:
        decide(db, lot, "release", reason="  ")
    assert no_reason.value.field == "reason"
    decide(db, lot, "release")
    released = events(db, "dpbs:DP-2291", "material released")
    assert [(e.field, e.old_value, e.new_value, e.reason, e.user_name) for e in released] == [
        ("status", "quarantine", "released", "CoA reviewed, conforms", "Anna QA")]


def test_only_qa_decides_on_a_material_lot(db, people):
    lot = receive(db)
    with pytest.raises(Forbidden):
        decide(db, lot, "release", "olivia")
    with db.read() as s:
        assert MaterialStatus(materials.material_lot(s, "dpbs", "DP-2291").status) is MaterialStatus.quarantine


def test_a_released_lot_may_still_be_rejected_but_a_rejected_lot_is_final(db, people):
    lot = receive(db)
    decide(db, lot, "release")
    decide(db, lot, "reject", reason="supplier recall R-17")
    with pytest.raises(Conflict) as refused:
        decide(db, lot, "release")
    assert "rejected" in refused.value.message
    with pytest.raises(InvalidInput):
        decide(db, lot, "approve")


def test_the_page_offers_only_the_decisions_the_table_allows(db, people):
    lot = receive(db)
    anna, olivia = actor_of(db, "anna"), actor_of(db, "olivia")
    assert materials.material_decisions_for(lot, anna) == ["release", "reject"]
    assert materials.material_decisions_for(lot, olivia) == []
    assert materials.material_decisions_for(decide(db, lot, "reject"), anna) == []


# --- the rule a step applies to a material ----------------------------------------------------


def released(db, **kwargs) -> MaterialLot:
    return decide(db, receive(db, **kwargs), "release")


def test_a_released_lot_in_date_of_a_material_the_step_uses_is_accepted(db, people):
    lot = released(db, expiry=TODAY + timedelta(days=5))
    assert materials.material_refusal(lot, TODAY, STEP_MATERIALS) is None
    assert materials.material_refusal(lot, TODAY + timedelta(days=5), STEP_MATERIALS) is None  # its expiry day


def test_an_expired_lot_is_refused_with_its_expiry_date(db, people):
    lot = released(db, expiry=TODAY + timedelta(days=5))
    why = materials.material_refusal(lot, TODAY + timedelta(days=6), STEP_MATERIALS)
    assert why == "Material lot dpbs:DP-2291 expired on 2026-03-15."


def test_a_lot_in_quarantine_is_refused(db, people):
    lot = receive(db)
    assert "in quarantine" in materials.material_refusal(lot, TODAY, STEP_MATERIALS)


def test_a_rejected_lot_is_refused(db, people):
    lot = decide(db, receive(db), "reject", reason="CoA missing")
    assert "rejected by QA" in materials.material_refusal(lot, TODAY, STEP_MATERIALS)


def test_a_material_the_step_does_not_use_is_refused_naming_what_it_uses(db, people):
    lot = released(db, code="trypsin")
    why = materials.material_refusal(lot, TODAY, STEP_MATERIALS)
    assert "not a material this step uses" in why and "cell_strainer, collagenase_nb6, dpbs" in why
    assert "uses: no materials" in materials.material_refusal(lot, TODAY, set())


# --- scans ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scan", ["MAT|dpbs|DP-2291", "  mat|DPBS|DP-2291 ", "dpbs:DP-2291", "DPBS : DP-2291"])
def test_a_material_lot_is_found_by_its_label_or_by_code_and_supplier_lot(db, people, scan):
    receive(db)
    with db.read() as s:
        assert materials.material_by_scan(s, scan).supplier_lot == "DP-2291"


def test_a_supplier_lot_may_itself_contain_the_separators(db, people):
    receive(db, supplier_lot="A:1|B/2")
    with db.read() as s:
        assert materials.material_by_scan(s, "MAT|dpbs|A:1|B/2").supplier_lot == "A:1|B/2"
        assert materials.material_by_scan(s, "dpbs:A:1|B/2").supplier_lot == "A:1|B/2"


def test_an_unknown_material_lot_scan_is_not_found_naming_the_field(db, people):
    receive(db)
    with db.read() as s:
        with pytest.raises(NotFound) as missing:
            materials.material_by_scan(s, "MAT|dpbs|DP-9999", field="material_scan")
        assert missing.value.field == "material_scan" and "DP-9999" in missing.value.message
        for junk in ("", "DP-2291", "MAT|dpbs", "dpbs:", "9x:L1"):
            with pytest.raises(InvalidInput) as bad:
                materials.material_by_scan(s, junk)
            assert bad.value.field == "material"


def test_equipment_is_found_by_its_asset_label(db, people):
    register(db)
    with db.read() as s:
        assert materials.equipment_by_scan(s, " CF-0012 ").asset_id == "CF-0012"
        assert materials.equipment_by_scan(s, "EQ|CF-0012").asset_id == "CF-0012"
        with pytest.raises(NotFound) as missing:
            materials.equipment_by_scan(s, "CF-0099")
        assert missing.value.field == "equipment" and "CF-0099" in missing.value.message
        with pytest.raises(InvalidInput):
            materials.equipment_by_scan(s, "  ")


# --- equipment --------------------------------------------------------------------------------


def test_registering_equipment_is_audited_and_an_asset_id_is_unique(db, people):
    register(db)
    assert '"kind": "centrifuge"' in events(db, "CF-0012", "equipment registered")[0].new_value
    with pytest.raises(Conflict) as twice:
        register(db, "anna")
    assert twice.value.field == "asset_id"
    with pytest.raises(InvalidInput) as bad:
        register(db, asset_id="CF 12/3")
    assert bad.value.field == "asset_id"
    with pytest.raises(Forbidden):
        register(db, "quinn", asset_id="CF-0013")


def test_a_calibration_needs_its_certificate_reference_and_a_future_due_date(db, people):
    register(db, due=TODAY - timedelta(days=3))
    olivia = actor_of(db, "olivia")

    def calibrate(due, reference):
        with db.write() as s:
            materials.record_calibration(s, olivia, materials.equipment_by_asset(s, "CF-0012"), calibration_due=due,
                                         reference=reference, today=TODAY)

    with pytest.raises(InvalidInput) as no_reference:
        calibrate(TODAY + timedelta(days=365), "")
    assert no_reference.value.field == "reference"
    with pytest.raises(InvalidInput) as past:
        calibrate(TODAY, "CAL-2026-044")
    assert past.value.field == "calibration_due"
    calibrate("2027-03-10", "CAL-2026-044")
    done = events(db, "CF-0012", "equipment calibrated")
    assert [(e.old_value, e.new_value, e.reason) for e in done] == [("2026-03-07", "2027-03-10", "CAL-2026-044")]


def test_equipment_in_service_and_calibrated_of_the_right_kind_is_accepted(db, people):
    item = register(db, due=TODAY)
    assert materials.equipment_refusal(item, TODAY, STEP_EQUIPMENT) is None  # due today: not yet past


def test_equipment_past_its_calibration_due_date_is_refused(db, people):
    item = register(db, due=TODAY - timedelta(days=1))
    assert materials.equipment_refusal(item, TODAY, STEP_EQUIPMENT) == (
        "Centrifuge Heraeus (CF-0012) was due for calibration on 2026-03-09.")


def test_equipment_out_of_service_is_refused_and_only_qa_returns_it(db, people):
    register(db)
    with db.write() as s:
        materials.set_in_service(s, actor_of(db, "olivia"), materials.equipment_by_asset(s, "CF-0012"), False,
                                 "rotor imbalance alarm")
    with db.read() as s:
        item = materials.equipment_by_asset(s, "CF-0012")
    assert materials.equipment_refusal(item, TODAY, STEP_EQUIPMENT) == "Centrifuge Heraeus (CF-0012) is out of service."
    with pytest.raises(Forbidden), db.write() as s:
        materials.set_in_service(s, actor_of(db, "olivia"), materials.equipment_by_asset(s, "CF-0012"), True, "fixed")
    with db.write() as s:
        materials.set_in_service(s, actor_of(db, "anna"), materials.equipment_by_asset(s, "CF-0012"), True,
                                 "rotor replaced, service report SR-88")
    assert [e.new_value for e in events(db, "CF-0012") if e.field == "active"] == ["false", "true"]


def test_equipment_of_another_kind_is_refused(db, people):
    item = register(db, asset_id="INC-3", kind="co2_incubator")
    why = materials.equipment_refusal(item, TODAY, STEP_EQUIPMENT)
    assert "is a co2_incubator, not equipment this step uses (it uses: bsc, centrifuge)" in why


def test_calibration_state_colours_the_list(db, people):
    item = register(db, due=TODAY + timedelta(days=14))
    assert materials.calibration_state(item, TODAY) == "due_soon"
    assert materials.calibration_state(item, TODAY - timedelta(days=1)) == "ok"
    assert materials.calibration_state(item, TODAY + timedelta(days=15)) == "overdue"


# --- pages ------------------------------------------------------------------------------------


def test_the_receive_form_keeps_what_was_typed_when_refused(as_, db):
    olivia = as_("olivia")
    assert olivia.get("/materials/new").status_code == 200
    refused = olivia.submit("/materials", {"material_code": "dpbs", "name": "DPBS w/o Ca", "supplier": "Gibco",
                                           "supplier_lot": "DP-77", "expiry": "2001-01-01"})
    assert refused.status_code == 422 and "already past" in refused.text
    assert 'value="DPBS w/o Ca"' in refused.text and 'value="DP-77"' in refused.text
    assert 'value="2001-01-01"' in refused.text
    future = (date.today() + timedelta(days=20)).isoformat()
    done = olivia.submit("/materials", {"material_code": "dpbs", "name": "DPBS w/o Ca", "supplier": "Gibco",
                                        "supplier_lot": "DP/77", "expiry": future})
    assert done.status_code == 303 and done.headers["location"].startswith("/materials/dpbs/DP%2F77")
    page = olivia.get(done.headers["location"])
    assert page.status_code == 200 and "MAT|dpbs|DP/77" in page.text and "material received" in page.text
    assert "expires soon" in page.text and 'name="decision"' not in page.text  # operators do not decide
    listing = olivia.get("/materials?status=quarantine")
    assert "DP/77" in listing.text and "expires soon" in listing.text
    assert "DP/77" not in olivia.get("/materials?status=released").text


def test_qa_releases_a_lot_on_its_page_and_a_missing_reason_is_shown(as_, db):
    olivia, anna = as_("olivia"), as_("anna")
    olivia.submit("/materials", {"material_code": "dpbs", "name": "DPBS", "supplier": "Gibco", "supplier_lot": "DP-1",
                                 "expiry": (date.today() + timedelta(days=300)).isoformat()})
    assert "material lot in quarantine awaits your release or rejection" in anna.get("/").text
    page = anna.get("/materials/dpbs/DP-1")
    assert 'value="release"' in page.text and 'value="reject"' in page.text
    refused = anna.submit("/materials/dpbs/DP-1/decision", {"decision": "release", "reason": ""})
    assert refused.status_code == 422 and "reason is required" in refused.text
    done = anna.submit("/materials/dpbs/DP-1/decision", {"decision": "release", "reason": "CoA 2291 conforms"})
    assert done.status_code == 303
    assert "Material lot released" in anna.get(done.headers["location"]).text.replace("+", " ")
    assert olivia.submit("/materials/dpbs/DP-1/decision", {"decision": "reject", "reason": "x"}).status_code == 403
    assert "in quarantine await" not in anna.get("/").text


def test_equipment_pages_register_calibrate_and_show_overdue_in_red(as_, db):
    olivia = as_("olivia")
    assert olivia.get("/equipment/new").status_code == 200
    refused = olivia.submit("/equipment", {"asset_id": "BSC 1", "equipment_code": "bsc", "name": "Cabinet",
                                           "calibration_due": "2020-01-01"})
    assert refused.status_code == 422 and 'value="Cabinet"' in refused.text and "asset id" in refused.text
    done = olivia.submit("/equipment", {"asset_id": "BSC-1", "equipment_code": "bsc", "name": "Cabinet",
                                        "calibration_due": "2020-01-01"})
    assert done.status_code == 303
    assert done.headers["location"].startswith("/equipment/BSC-1?notice=Equipment%20registered.&nm=")
    listing = olivia.get("/equipment")
    assert "calibration overdue" in listing.text and 'class="tag red"' in listing.text
    assert "piece of equipment is overdue or due for calibration within 14 days" in olivia.get("/").text
    no_ref = olivia.submit("/equipment/BSC-1/calibration", {"calibration_due": "2031-01-01", "reference": ""})
    assert no_ref.status_code == 422 and 'value="2031-01-01"' in no_ref.text
    assert olivia.submit("/equipment/BSC-1/calibration", {"calibration_due": "2031-01-01",
                                                          "reference": "CAL-9"}).status_code == 303
    page = olivia.get("/equipment/BSC-1")
    assert "2031-01-01" in page.text and "CAL-9" in page.text and "calibration overdue" not in page.text
    assert "due for calibration" not in olivia.get("/").text


def test_every_form_on_these_pages_carries_the_csrf_token(as_, db, people):
    receive(db, today=date.today(), expiry=date.today() + timedelta(days=9))
    register(db)
    anna = as_("anna")
    for path in ("/materials/new", "/materials/dpbs/DP-2291", "/equipment/new", "/equipment/CF-0012"):
        page = anna.get(path).text
        tokens = re.findall(r'name="csrf_token" value="([^"]*)"', page)
        assert page.count('<form method="post"') == len(tokens) >= 1 and set(tokens) == {anna.csrf()}


def test_blinded_roles_never_reach_materials_or_equipment(as_):
    for path in ("/materials", "/equipment", "/api/v1/material-lots", "/api/v1/equipment"):
        assert as_("frida").get(path).status_code == 403
        assert as_("mette").get(path).status_code == 403


def test_unknown_lots_and_assets_are_404_pages(as_):
    assert as_("anna").get("/materials/dpbs/none").status_code == 404
    assert as_("anna").get("/equipment/none").status_code == 404
    assert as_("anna").get("/materials?status=lost").status_code == 422


# --- API --------------------------------------------------------------------------------------


def api_as(app, db, username) -> TestClient:
    with db.write() as s:
        token = users.create_token(s, users.cli_actor(), users.by_username(s, username), "test")
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def test_api_round_trip_for_material_lots(app, db, people):
    olivia, anna = api_as(app, db, "olivia"), api_as(app, db, "anna")
    expiry = (date.today() + timedelta(days=100)).isoformat()
    made = olivia.post("/api/v1/material-lots", json={"material_code": "dpbs", "name": "DPBS", "supplier": "Gibco",
                                                      "supplier_lot": "L/1", "expiry": expiry})
    assert made.status_code == 201 and made.json()["status"] == "quarantine"
    assert made.json()["scan_code"] == "MAT|dpbs|L/1"
    bad = olivia.post("/api/v1/material-lots", json={"material_code": "dpbs", "name": "DPBS", "supplier": "Gibco",
                                                     "supplier_lot": "L2", "expiry": "not a date"})
    assert bad.status_code == 422 and bad.json()["field"] == "expiry"
    found = olivia.get("/api/v1/material-lots/by-scan", params={"scan": "MAT|dpbs|L/1"})
    assert found.status_code == 200 and found.json()["supplier_lot"] == "L/1"
    missing = olivia.get("/api/v1/material-lots/by-scan", params={"scan": "dpbs:L9"})
    assert missing.status_code == 404 and missing.json()["field"] == "scan"
    assert olivia.post("/api/v1/material-lots/dpbs/L%2F1/release", json={"reason": "x"}).status_code == 403
    done = anna.post("/api/v1/material-lots/dpbs/L%2F1/release", json={"reason": "CoA conforms"})
    assert done.status_code == 200 and done.json()["status"] == "released"
    released = anna.get("/api/v1/material-lots", params={"status": "released"}).json()["material_lots"]
    assert [r["supplier_lot"] for r in released] == ["L/1"]
    assert anna.get("/api/v1/material-lots", params={"status": "quarantine"}).json()["material_lots"] == []
    assert anna.get("/api/v1/material-lots/dpbs/L%2F1").json()["status"] == "released"


def test_api_round_trip_for_equipment(app, db, people):
    olivia = api_as(app, db, "olivia")
    made = olivia.post("/api/v1/equipment", json={"asset_id": "CF-1", "equipment_code": "centrifuge",
                                                  "name": "Centrifuge", "calibration_due": "2020-05-05"})
    assert made.status_code == 201 and made.json()["calibration_state"] == "overdue"
    due = olivia.get("/api/v1/equipment", params={"due_within_days": 14}).json()["equipment"]
    assert [e["asset_id"] for e in due] == ["CF-1"]
    calibrated = olivia.post("/api/v1/equipment/CF-1/calibrations", json={"calibration_due": "2031-05-05",
                                                                          "reference": "CAL-1"})
    assert calibrated.status_code == 200 and calibrated.json()["calibration_state"] == "ok"
    assert olivia.get("/api/v1/equipment", params={"due_within_days": 14}).json()["equipment"] == []
    out = olivia.post("/api/v1/equipment/CF-1/service", json={"active": False, "reason": "noise"})
    assert out.json()["calibration_state"] == "out_of_service"
    assert olivia.post("/api/v1/equipment/CF-1/service", json={"active": True, "reason": "ok"}).status_code == 403
    assert olivia.get("/api/v1/equipment/CF-9").status_code == 404
    with db.read() as s:
        assert [e.action for e in audit.history(s, actor_of(db, "anna"), "equipment", "CF-1")] == [
            "equipment registered", "equipment calibrated", "equipment taken out of service"]
        assert s.scalars(select(Equipment)).one().active is False
