"""The scan station and the scan endpoint: label codes decoded from real QR images, verdicts the
same for both arms, refusals that say why, every sighting on record."""
from __future__ import annotations

import io
import re

import zxingcpp
from PIL import Image
from sqlalchemy import select

from cellbench import qrpayload
from cellbench.models import AuditEvent, CustodyEvent

from ..conftest import SECRET


def _decoded(number: str) -> str:
    image = Image.open(io.BytesIO(qrpayload.qr_png(qrpayload.make_payload(number, SECRET))))
    (barcode,) = zxingcpp.read_barcodes(image)
    return barcode.text


def test_a_scanned_label_gets_a_verdict_and_the_sighting_is_recorded(kit_world, as_, db):
    active, placebo = kit_world.pair
    client = as_("frida")
    answers = {}
    for number in (active, placebo):
        response = client.post("/api/v1/scan", json={"code": _decoded(number), "station": "RH-ENT pharmacy"})
        assert response.status_code == 200, response.text
        answers[number] = response.json()
    assert answers[active]["kit_number"] == active and answers[active]["ok"] is True
    assert {k: v for k, v in answers[active].items() if k != "kit_number"} == \
        {k: v for k, v in answers[placebo].items() if k != "kit_number"}, "the verdict is the same for both arms"
    with db.read() as s:
        scans = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "scanned")).all()
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "kit scanned")).all()
    assert len(scans) == 2 and {e.to_place for e in scans} == {"RH-ENT pharmacy"}
    assert {e.entity_id for e in events} == {active, placebo} and {e.user_name for e in events} == {"Frida Pharmacist"}


def test_forged_altered_and_mistyped_codes_are_refused_naming_the_code(kit_world, as_, db):
    number = kit_world.active[0]
    genuine = _decoded(number)
    other_char = "3" if number[0] != "3" else "4"
    altered = genuine.replace(number, other_char + number[1:], 1)
    typed = {"manual": True, "manual_reason": "label frosted over"}
    cases = [
        ({"code": qrpayload.make_payload(number, "another-secret-key-that-cellbench-never-issued")},
         "signature does not match"),
        ({"code": altered}, "label code"),
        ({"code": number[:-1] + ("3" if number[-1] != "3" else "4"), **typed}, "check character does not match"),
        ({"code": number}, "a kit number alone is not a scan"),
        ({"code": ""}, "Scan the kit's label"),
    ]
    with db.read() as s:
        before = len(s.scalars(select(CustodyEvent)).all())
    client = as_("frida")
    for body, words in cases:
        response = client.post("/api/v1/scan", json=body)
        assert response.status_code in (404, 422), (body, response.text)
        assert response.json()["field"] == "code" and words in response.json()["error"], response.json()
    with db.read() as s:
        assert len(s.scalars(select(CustodyEvent)).all()) == before, "a refused scan records nothing"


def test_the_station_page_answers_in_large_type_and_is_ready_for_the_next_scan(kit_world, as_):
    client = as_("frida")
    page = client.get("/scan")
    assert page.status_code == 200 and "autofocus" in page.text
    answer = client.submit("/scan", {"code": _decoded(kit_world.placebo[0]), "station": "Pharmacy desk"})
    assert answer.status_code == 200
    assert "verdict accepted" in answer.text and kit_world.placebo[0] in answer.text
    assert re.search(r'name="code" value=""', answer.text), "the field is empty for the next scan"
    assert 'value="Pharmacy desk"' in answer.text, "the station is remembered"
    refused = client.submit("/scan", {"code": "XXXX-XXXX-X"})
    assert refused.status_code == 422 and "verdict refused" in refused.text


def test_admins_and_lab_roles_cannot_scan(kit_world, as_):
    for who in ("adam", "olivia"):
        assert as_(who).post("/api/v1/scan", json={"code": kit_world.active[0]}).status_code == 403


def test_a_verdicts_json_holds_every_field_of_the_verdict_with_the_expiry_as_a_date():
    from dataclasses import asdict
    from datetime import date

    from cellbench.custody.scanning import Verdict

    for expiry in (date(2027, 3, 1), None):
        verdict = Verdict(True, "3HJY-7F7J-W", "at_site", "At site", "XB26-901", expiry, "Freezer 1", "Store it.")
        assert verdict.as_json() == {**asdict(verdict), "expiry": expiry.isoformat() if expiry else None}
