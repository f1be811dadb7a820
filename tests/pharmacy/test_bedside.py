"""The bedside check (issue 15): before a dose goes in, the investigator scans the participant's
card and then each syringe label. A card or label that is not this visit's, forged, or for a dose
already given is refused, and the refusal is recorded although nothing else is; a dose is recorded
only after its syringe label passed; the card prints with a QR that scans back; and both arms get
the same card, page and messages, their numbers aside."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import func, select

from cellbench import pharmacy
from cellbench.models import Administration, AuditEvent, BedsideCheck

from ..bedside_support import card_code, recorded_by_preparer, scanned_at_bedside, syringe_code
from .test_pharmacy import (
    STUDY,
    _normalised,
    assign,
    one_of_each_arm,
    payload,
    randomised,
    visit_url,
)

needs_pdftoppm = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) not installed")


def prepared(as_, screening: str) -> tuple[str, str]:
    """A randomised participant whose kit is assigned, dispensed and being thawed: (number, kit)."""
    number = randomised(as_, screening)["randomisation_number"]
    kit = assign(as_, screening).json()["kit_number"]
    assert as_("frida").post(f"{visit_url(screening)}/dispense", json={"code": payload(kit)}).status_code == 200
    jonas = as_("jonas")
    assert jonas.post("/api/v1/preparation", json={"code": payload(kit)}).status_code == 200
    recorded_by_preparer(jonas.app.state.db, STUDY, number)
    return number, kit


def scan(as_, screening: str, code: str):
    return as_("ida").post(f"{visit_url(screening)}/bedside-scans", json={"code": code})


def give(as_, screening: str, gland: str):
    return as_("ida").post(f"{visit_url(screening)}/administrations", json={"gland": gland, "volume_ml": 1.0})


def events(db) -> list[AuditEvent]:
    with db.read() as s:
        return list(s.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def checks(db) -> list[tuple[str, int | None]]:
    with db.read() as s:
        return [(c.kind, c.dose) for c in s.scalars(select(BedsideCheck).order_by(BedsideCheck.id))]


def refused_and_recorded(db, response, message: str, field: str) -> None:
    """422 naming the scan, and one audit event more, the refusal, under the visit: nothing else."""
    assert response.status_code == 422, response.text
    assert response.json() == {"error": message, "field": "code"}
    refusal = events(db)[-1]
    assert (refusal.action, refusal.entity_type, refusal.field, refusal.reason) == (
        "bedside scan refused", "visit", field, message)


def test_a_card_for_another_participant_is_refused_recorded_and_nothing_else_written(site, as_, db):
    number, _kit = prepared(as_, "SCR-001")
    other = randomised(as_, "SCR-002")["randomisation_number"]
    before, visit_version = len(events(db)), as_("ida").get(visit_url("SCR-001")).json()["visit_version"]
    response = scan(as_, "SCR-001", card_code(STUDY, other))
    message = (f"This card is for participant {other} in {STUDY}; this visit is participant {number} in {STUDY}. "
               "Do not go on.")
    refused_and_recorded(db, response, message, "card")
    assert len(events(db)) == before + 1 and events(db)[-1].entity_id == f"{STUDY}/SCR-001/T1"
    assert checks(db) == []
    assert as_("ida").get(visit_url("SCR-001")).json()["visit_version"] == visit_version


def test_a_syringe_label_of_another_kit_or_participant_is_refused_naming_what_was_scanned(site, as_, db):
    number, kit = prepared(as_, "SCR-001")
    other_kit = next(n for n in site.active + site.placebo if n != kit)
    assert scan(as_, "SCR-001", card_code(STUDY, number)).status_code == 201
    refused_and_recorded(db, scan(as_, "SCR-001", syringe_code(other_kit, 2, number)),
                         f"This syringe label is for kit {other_kit}, dose 2; this visit's kit is {kit}. "
                         "Do not give it.", "syringe")
    refused_and_recorded(db, scan(as_, "SCR-001", syringe_code(kit, 1, "X-999")),
                         f"This syringe label is for participant X-999; this visit is participant {number}. "
                         "Do not give it.", "syringe")
    assert checks(db) == [("card", None)]


def test_forged_unsigned_and_foreign_codes_are_refused_and_recorded(site, as_, db):
    number, kit = prepared(as_, "SCR-001")
    card = card_code(STUDY, number)
    forged = ":".join([*card.split(":")[:2], "X-998", card.split(":")[3]])
    refused_and_recorded(db, scan(as_, "SCR-001", forged),
                         "The participant card code's signature does not match: it was not issued by this cellbench "
                         "or was altered; do not use it and report it.", "card")
    refused_and_recorded(db, scan(as_, "SCR-001", f"CBP1:{STUDY}:{number}"),
                         "The participant card code is incomplete or damaged; scan it again.", "card")
    refused_and_recorded(db, scan(as_, "SCR-001", payload(kit)),
                         "This is a kit label. Scan the participant's card, then each syringe label.", "code")
    refused_and_recorded(db, scan(as_, "SCR-001", "hello"), "This is not a participant card or syringe label. "
                         "Scan the participant's card, then each syringe label.", "code")
    assert scan(as_, "SCR-001", card).status_code == 201
    syringe = syringe_code(kit, 1, number)
    refused_and_recorded(db, scan(as_, "SCR-001", syringe.replace(":1:", ":2:")),
                         "The syringe label code's signature does not match: it was not issued by this cellbench or "
                         "was altered; do not use it and report it.", "syringe")
    assert checks(db) == [("card", None)]


def test_a_syringe_label_before_the_card_is_refused_without_a_trace_of_a_check(site, as_, db):
    number, kit = prepared(as_, "SCR-001")
    response = scan(as_, "SCR-001", syringe_code(kit, 1, number))
    assert response.status_code == 422 and response.json()["error"].startswith("Scan the participant's card first")
    assert checks(db) == []


def test_a_dose_already_given_is_refused(site, as_, db):
    number, kit = prepared(as_, "SCR-001")
    scanned_at_bedside(as_("ida"), visit_url("SCR-001"), doses=(1,))
    assert give(as_, "SCR-001", "left").status_code == 201
    refused_and_recorded(db, scan(as_, "SCR-001", syringe_code(kit, 1, number)),
                         f"Dose 1 (left submandibular gland) of kit {kit} is already recorded as administered. "
                         "Do not give it again.", "syringe")


def test_an_administration_without_a_passed_bedside_check_is_refused_naming_the_field(site, as_, db):
    number, kit = prepared(as_, "SCR-001")
    refused = give(as_, "SCR-001", "left")
    assert refused.status_code == 422 and refused.json() == {
        "error": "The left dose has not passed the bedside check: scan the participant's card and the left syringe "
                 "label at the bedside first.", "field": "bedside"}
    assert scan(as_, "SCR-001", card_code(STUDY, number)).status_code == 201
    assert give(as_, "SCR-001", "left").json()["field"] == "bedside"  # the card alone is not the syringe
    assert scan(as_, "SCR-001", syringe_code(kit, 1, number)).status_code == 201
    assert give(as_, "SCR-001", "left").status_code == 201
    assert give(as_, "SCR-001", "right").json()["field"] == "bedside"  # each dose its own syringe
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Administration)) == 1


def test_the_card_then_each_syringe_label_lets_both_doses_be_recorded(site, as_, db):
    number, kit = prepared(as_, "SCR-001")
    card = scan(as_, "SCR-001", card_code(STUDY, number))
    assert card.status_code == 201 and card.json() == {
        "kind": "card", "dose": None,
        "message": f"Card: participant {number} in {STUDY}, as this visit. Now scan each syringe label."}
    for dose, gland in ((1, "left"), (2, "right")):
        syringe = scan(as_, "SCR-001", syringe_code(kit, dose, number))
        assert syringe.status_code == 201 and syringe.json()["dose"] == dose
        assert f"kit {kit}, dose {dose} ({gland} submandibular gland)" in syringe.json()["message"]
        given = give(as_, "SCR-001", gland)
        assert given.status_code == 201, given.text
    assert given.json()["state"] == "administered"
    assert checks(db) == [("card", None), ("syringe", 1), ("syringe", 2)]
    passed = [(e.field, e.new_value) for e in events(db) if e.action == "bedside scan passed"]
    assert [field for field, _ in passed] == ["card", "syringe left", "syringe right"]
    assert kit in passed[1][1] and number in passed[0][1]


def test_the_page_scans_with_a_keyboard_scanner_and_shows_a_line_per_scan(site, as_, db):
    number, _kit = prepared(as_, "SCR-001")
    ida, base = as_("ida"), f"/participants/{STUDY}/SCR-001"
    assert f'href="{base}/visits/1/bedside"' in ida.get(base).text
    page = ida.get(f"{base}/visits/1/bedside").text
    assert 'class="scan-input"' in page and "autofocus" in page and "Nothing scanned yet" in page
    wrong = ida.submit(f"{base}/visits/1/bedside", {"code": card_code(STUDY, "X-999") + "\n"})
    assert wrong.status_code == 422 and "✗ Refused" in wrong.text and "This card is for participant X-999" in wrong.text
    ok = ida.submit(f"{base}/visits/1/bedside", {"code": card_code(STUDY, number)})
    assert ok.status_code == 303 and ok.headers["location"].startswith(f"{base}/visits/1/bedside?notice=")
    page = ida.get(ok.headers["location"]).text
    assert "✓ Matches" in page and page.count('<li class="ok">') == 1 and page.count('<li class="bad">') == 1
    assert as_("jonas").get(f"{base}/visits/1/bedside").status_code == 403  # the preparer does not scan here


def card_pdf(client, screening: str):
    return client.submit(f"/participants/{STUDY}/{screening}/card")


@needs_pdftoppm
def test_the_participant_card_prints_at_card_size_with_a_qr_that_scans_back_and_is_audited(site, as_, db, tmp_path):
    number = randomised(as_, "SCR-001")["randomisation_number"]
    response = card_pdf(as_("ida"), "SCR-001")
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    (tmp_path / "card.pdf").write_bytes(response.content)
    info = subprocess.run(["pdfinfo", str(tmp_path / "card.pdf")], capture_output=True, text=True).stdout
    assert "242.65 x 153.07 pts" in info  # 85.6 x 54 mm
    subprocess.run(["pdftoppm", "-r", "300", "-gray", "-png", str(tmp_path / "card.pdf"), str(tmp_path / "card")],
                   check=True)
    (image,) = tmp_path.glob("card*.png")
    assert [r.text for r in zxingcpp.read_barcodes(Image.open(image))] == [card_code(STUDY, number)]
    text = subprocess.run(["pdftotext", str(tmp_path / "card.pdf"), "-"], capture_output=True, text=True).stdout
    assert "Participant identification — clinical trial" in text and number in text and STUDY in text
    printed = events(db)[-1]
    assert (printed.action, printed.entity_id, printed.user_name) == (
        "participant card printed", f"{STUDY}/SCR-001", "Ida Investigator")
    assert card_pdf(as_("frida"), "SCR-001").status_code == 200  # the site's pharmacist too
    assert card_pdf(as_("jonas"), "SCR-001").status_code == 403


def test_a_card_waits_for_the_randomisation_number(site, as_, db):
    as_("ida").post("/api/v1/participants", json={"study": STUDY, "site": "RH-ENT", "screening_number": "SCR-009"})
    refused = card_pdf(as_("ida"), "SCR-009")
    assert refused.status_code == 422 and "not randomised yet" in refused.text


@needs_pdftoppm
def test_an_active_and_a_placebo_participant_get_the_same_card_page_and_messages(site, as_, db, tmp_path):
    by_arm = one_of_each_arm(as_, db)
    seen: dict[str, dict[str, str]] = {arm: {} for arm in by_arm}
    numbers: dict[str, list[str]] = {}
    spare = iter(site.active + site.placebo)
    for arm, screening in by_arm.items():
        ida, base = as_("ida"), f"/participants/{STUDY}/{screening}/visits/1/bedside"
        number = as_("ida").get(f"/api/v1/participants/{STUDY}/{screening}").json()["randomisation_number"]
        kit = assign(as_, screening).json()["kit_number"]
        as_("frida").post(f"{visit_url(screening)}/dispense", json={"code": payload(kit)})
        as_("jonas").post("/api/v1/preparation", json={"code": payload(kit)})
        recorded_by_preparer(db, STUDY, number)
        used = {n for known in numbers.values() for n in known}
        other = next(n for n in spare if n != kit and n not in used)
        numbers[arm] = [screening, number, kit, other]
        pdf = tmp_path / f"{arm}.pdf"
        pdf.write_bytes(card_pdf(ida, screening).content)
        seen[arm]["card"] = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                                           text=True).stdout
        seen[arm]["empty page"] = ida.get(base).text
        seen[arm]["card scanned"] = ida.get(
            ida.submit(base, {"code": card_code(STUDY, number)}).headers["location"]).text
        seen[arm]["wrong syringe"] = ida.submit(base, {"code": syringe_code(other, 1, number)}).text
        seen[arm]["syringe scanned"] = ida.get(
            ida.submit(base, {"code": syringe_code(kit, 1, number)}).headers["location"]).text
        seen[arm]["given"] = give(as_, screening, "left").text
    for name in seen["active"]:
        assert _normalised(seen["active"][name], numbers["active"]) == _normalised(
            seen["placebo"][name], numbers["placebo"]), name


def test_the_guard_is_one_named_rule_of_the_administration():
    """The rules a dose's syringe must pass before its administration is recorded are one table;
    the preparer's "the syringe was drawn up" is asked by the bedside scan of its label."""
    assert ((pharmacy.syringe_not_checked, "bedside"),) == pharmacy.administration.DOSE_RULES
