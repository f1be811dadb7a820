"""The real browser: Debian's Chromium driven by Playwright against a live server."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .bedside_support import scanned_at_bedside
from .conftest import PASSWORD, chromium_path, launch_chromium, served
from .eligible import eligible

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(chromium_path() is None,
                                 reason="Chromium is not installed (apt-get install chromium)")]


@pytest.fixture
def live_url(app, people):
    with served(app) as url:
        yield url


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        yield browser.new_page(viewport={"width": 1024, "height": 768})
        browser.close()


def sign_in(page, live_url, username, password=PASSWORD):
    page.goto(f"{live_url}/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_a_qa_reviewer_signs_in_reviews_the_audit_trail_and_signs_out(page, live_url, tmp_path):
    sign_in(page, live_url, "anna", "wrong password")
    assert "Sign-in failed: the username or password is wrong" in page.inner_text(".error")
    assert page.input_value("input[name=username]") == "anna"  # nothing to re-type but the password
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    assert page.inner_text("h1").startswith("Good to see you, Anna")
    page.click(".queue-item a[href='/audit/review']")
    page.fill("input[name=comment]", "routine weekly review")
    page.fill("input[name=password]", PASSWORD)
    page.click("button.primary")
    assert "Audit-trail review signed." in page.inner_text(".notice")
    assert "Anna QA" in page.inner_text("table") and "reviewed" in page.inner_text("table")
    page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
    page.click("text=Sign out")
    assert "You are signed out." in page.inner_text(".notice")


def test_an_admin_creating_a_mixed_role_user_sees_why_and_keeps_the_form(page, live_url):
    sign_in(page, live_url, "adam")
    page.goto(f"{live_url}/admin/users/new")
    page.fill("input[name=username]", "nina")
    page.fill("input[name=full_name]", "Nina Nurse")
    page.fill("input[name=password]", PASSWORD)
    page.check("input[value=pharmacist]")
    page.check("input[value=qa]")
    page.click("button.primary")
    assert "blinded role" in page.inner_text(".error")
    assert page.input_value("input[name=full_name]") == "Nina Nurse"
    assert page.is_checked("input[value=pharmacist]") and page.is_checked("input[value=qa]")
    page.uncheck("input[value=qa]")
    page.fill("input[name=password]", PASSWORD)
    page.click("button.primary")
    assert page.inner_text("h1").startswith("Nina Nurse")




def test_an_operator_records_a_step_on_the_tablet_page(page, live_url, effective_specs):
    page.set_viewport_size({"width": 820, "height": 1180})  # a tablet, portrait
    sign_in(page, live_url, "olivia")
    page.goto(f"{live_url}/lots")
    page.select_option("select[name=product]", "saline-placebo")
    page.click("button.primary")
    page.click("text=Start this step")
    # A click waits only for the next page to start loading; the check-as-typed script must have run
    # before anything is typed (on a loaded CI machine the fill once beat it).
    page.wait_for_load_state("load")
    assert page.locator(".limit-warning:visible").count() == 0  # no warning before anything is typed
    page.fill("input[name='v:units_received']", "5000")
    warning = page.locator("fieldset:has(input[name='v:units_received']) .limit-warning")
    expect(warning).to_be_visible()  # checked as it is typed, before saving
    page.fill("input[name='v:units_received']", "200")
    expect(warning).to_be_hidden()
    for name, value in {"supplier": "B. Braun", "product_name": "NaCl 0.9 %", "supplier_batch": "NACL-9",
                        "supplier_expiry": "2028-01-31"}.items():
        page.fill(f"input[name='v:{name}']", value)
    page.click("fieldset:has(input[name='v:received_at']) button[data-now]")
    # Now writes the moment as pages show a time: the tablet's zone with its offset, never raw ISO.
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d [+-]\d\d:\d\d", page.input_value("input[name='v:received_at']"))
    page.select_option("select[name='v:packaging_intact']", "yes")
    page.fill("input[name=password]", PASSWORD)
    page.click("text=Sign: performed")  # one form: the values and the signature in one save
    expect(page.locator(".notice")).to_contain_text("Signed: performed.")
    assert "NACL-9" in page.inner_text("table.values") and "Olivia Operator" in page.inner_text("table.values")


# --- the site, on a tablet, with a scanner -----------------------------------------------------
# A USB or Bluetooth scanner is a keyboard: it types the label's QR payload into the focused field
# and presses Enter. These tests type the same way (page.keyboard), never page.fill.

TABLET = {"width": 768, "height": 1024}
STUDY = "NCT07290946"
SITE = "RH-ENT"


def label(number: str) -> str:
    """What the scanner types for a kit's label: the signed QR payload."""
    from cellbench import qrpayload

    from .conftest import SECRET

    return qrpayload.make_payload(number, SECRET)


def scan(page, code: str) -> None:
    """Type a code into whatever has the focus and press Enter, as the scanner does; wait for the answer."""
    page.keyboard.type(code)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def focused_field(page) -> dict:
    return page.evaluate("""() => { const e = document.activeElement;
        return {name: e.name || null, value: e.value ?? null,
                start: e.selectionStart ?? null, end: e.selectionEnd ?? null}; }""")


def fits_the_width(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def without(text: str, *numbers: str) -> str:
    for number in numbers:
        text = text.replace(number, "KIT")
    return text


def test_the_scan_station_answers_each_label_in_large_type_and_is_ready_for_the_next(page, live_url, kit_world):
    page.set_viewport_size(TABLET)
    sign_in(page, live_url, "frida")
    page.goto(f"{live_url}/scan")
    assert focused_field(page)["name"] == "code", "the scan field has the focus: the scanner can type at once"
    active, placebo = kit_world.pair

    scan(page, label(active))
    verdict = page.locator("#verdict .verdict")
    assert "accepted" in verdict.get_attribute("class")
    assert active in verdict.inner_text() and "Released" in verdict.inner_text()
    assert float(page.eval_on_selector("#verdict .big", "e => parseFloat(getComputedStyle(e).fontSize)")) >= 28
    assert focused_field(page) == {"name": "code", "value": "", "start": 0, "end": 0}, "empty and focused"
    said_for_active = verdict.inner_text()

    page.click("h1")  # a tap beside the field: the scanner's keys still land in it
    scan(page, label(placebo))
    assert without(verdict.inner_text(), placebo) == without(said_for_active, active), \
        "an active and a placebo kit get the same verdict but for the kit number"
    assert page.locator("table tbody tr").count() == 2, "both sightings are listed under the last scans"
    assert fits_the_width(page)
    nav = page.locator("nav.main")
    cut = page.eval_on_selector_all("nav.main a", "links => links.filter(a => a.getBoundingClientRect().right > "
                                    "innerWidth || a.scrollWidth > a.clientWidth + 1).map(a => a.innerText)")
    assert cut == [], "every nav link is whole and in sight on the tablet (the nav wraps, it is never cut)"
    here, shown = page.locator("nav.main [aria-current=page]").bounding_box(), nav.bounding_box()
    assert page.inner_text("nav.main [aria-current=page]") == "Scan" and here["x"] >= 0 and \
        here["x"] + here["width"] <= shown["x"] + shown["width"], "the current page's link is in view"

    other = "3" if active[-1] != "3" else "4"
    scan(page, active[:-1] + other)  # a kit number typed without the "typed by hand" mark: not a scan
    assert "refused" in verdict.get_attribute("class")
    assert "a kit number alone is not a scan" in verdict.inner_text() and "Nothing was recorded" in verdict.inner_text()
    typed = focused_field(page)
    assert typed["name"] == "code" and typed["value"] == active[:-1] + other
    assert (typed["start"], typed["end"]) == (0, len(typed["value"])), \
        "the refused code is selected: the next scan replaces it"

    from cellbench import qrpayload

    scan(page, qrpayload.make_payload(active, "a-key-cellbench-never-issued-0123456789abcdef"))  # a forged label
    assert "refused" in verdict.get_attribute("class")
    assert "Label refused" in verdict.inner_text() and "signature" in verdict.inner_text()

    scan(page, label(active))  # the next scan replaces the refused code instead of adding to it
    assert "accepted" in verdict.get_attribute("class") and active in verdict.inner_text()
    assert page.locator("table tbody tr").count() == 3, "refused scans record nothing"

    page.click("input[name=station]")  # she names her station, then scans with the focus still there
    page.keyboard.type("RH-ENT pharmacy, freezer 1")
    scan(page, label(placebo))
    assert "accepted" in verdict.get_attribute("class") and placebo in verdict.inner_text()
    assert page.input_value("input[name=station]") == "RH-ENT pharmacy, freezer 1", \
        "the label did not go into the station"
    assert "RH-ENT pharmacy, freezer 1" in page.inner_text("table tbody tr:first-child")
    assert focused_field(page)["name"] == "code"


def test_receiving_a_shipment_kit_by_kit_counts_up_and_keeps_the_field_ready(page, live_url, kit_world, as_):
    kits = kit_world.active[:2] + kit_world.placebo[:2]
    sara = as_("sara")
    number = sara.post("/api/v1/shipments", json={"study": STUDY, "site": SITE}).json()["number"]
    for kit in kits:
        assert sara.post(f"/api/v1/shipments/{number}/kits", json={"code": label(kit)}).status_code == 200
    assert sara.post(f"/api/v1/shipments/{number}/dispatch", json={
        "shipper_id": "DS-07", "seal_number": "SEAL-1234", "logger_id": "LOG-88"}).status_code == 200

    page.set_viewport_size(TABLET)
    sign_in(page, live_url, "frida")
    page.click(f".queue-item a[href='/shipments/{number}']")  # her work queue: the one shipment in transit
    progress = page.locator(".progress")
    assert progress.inner_text().startswith("0 of 4 scanned")
    assert focused_field(page)["name"] == "code"
    verdict = page.locator("#verdict")
    for n, kit in enumerate(kits, 1):
        scan(page, label(kit))
        assert progress.inner_text().startswith(f"{n} of 4 scanned")
        assert kit in verdict.inner_text() and "On the manifest" in verdict.inner_text()
        assert focused_field(page) == {"name": "code", "value": "", "start": 0, "end": 0}
        assert page.locator("tr.scanned").count() == n, "the kit's row is ticked off"
    assert fits_the_width(page)

    scan(page, label(kit_world.active[2]))  # a kit that is not in this shipment
    assert "Refused" in verdict.inner_text() and "Nothing was recorded" in verdict.inner_text()
    assert progress.inner_text().startswith("4 of 4 scanned")
    assert focused_field(page)["name"] == "code"
    assert page.input_value("input[name=code]") == "", "the refused code is shown in the verdict, not left in the field"


def site_with_a_participant(db, as_, kit_world, screening: str = "SCR-001") -> tuple[str, str]:
    """kit_world's kits in the site's pharmacy, a sealed randomisation list and one randomised participant."""
    from .trialworld import randomisation_list, to_site

    randomisation_list(db)
    to_site(db, kit_world.active + kit_world.placebo)
    ida = as_("ida")
    enrolled = ida.post("/api/v1/participants", json={"study": STUDY, "site": SITE, "screening_number": screening})
    assert enrolled.status_code == 201
    randomised = ida.post(f"/api/v1/participants/{STUDY}/{screening}/randomise", json=eligible(STUDY))
    assert randomised.status_code == 200, randomised.text
    return f"/api/v1/participants/{STUDY}/{screening}/visits/1", randomised.json()["randomisation_number"]


def test_the_pharmacist_dispenses_the_assigned_kit_and_a_wrong_kit_is_refused_without_a_hint_of_its_arm(
        page, live_url, kit_world, as_, db):
    _visit, participant = site_with_a_participant(db, as_, kit_world)
    page.set_viewport_size(TABLET)
    sign_in(page, live_url, "frida")
    page.goto(f"{live_url}/dispensing")
    page.locator("tr", has_text=participant).locator("text=Assign a kit").click()
    page.click("button:has-text('Assign a kit')")
    assigned = page.inner_text(".kitno.huge").strip()
    assert f"Kit {assigned} is assigned: fetch it and scan its label." in page.inner_text(".notice")
    assert focused_field(page)["name"] == "code"

    said = {}
    for arm, kits in (("active", kit_world.active), ("placebo", kit_world.placebo)):
        wrong = next(k for k in kits if k != assigned)
        scan(page, label(wrong))
        verdict = page.inner_text("#verdict")
        assert "Refused" in verdict and f"This is kit {wrong}; the kit assigned to this visit is {assigned}." in verdict
        # kit numbers are random letters and may spell "ARM" or "ASC": the words are looked for around them
        words = without(without(verdict, wrong), assigned).lower()
        assert not any(word in words for word in ("placebo", "active", "saline", "arm", "asc"))
        assert focused_field(page)["name"] == "code"
        said[arm] = without(verdict, wrong)
    assert said["active"] == said["placebo"], "a wrong kit of either arm gets the same refusal"

    scan(page, label(assigned))
    assert f"Kit {assigned} dispensed to the preparer." in page.inner_text(".notice")
    assert "Dispensed to the preparer" in page.inner_text("dl.facts")
    assert fits_the_width(page)


def test_the_preparer_starts_the_clock_and_the_investigator_records_both_glands(page, live_url, kit_world, as_, db):
    visit, _participant = site_with_a_participant(db, as_, kit_world)
    kit = as_("frida").post(f"{visit}/assign").json()["kit_number"]
    assert as_("frida").post(f"{visit}/dispense", json={"code": label(kit)}).status_code == 200

    page.set_viewport_size(TABLET)
    sign_in(page, live_url, "jonas")
    page.goto(f"{live_url}/preparation")
    assert kit in page.inner_text("table:below(h2:has-text('Dispensed, waiting'))")
    assert focused_field(page)["name"] == "code"
    scan(page, label(kit))
    assert f"Kit {kit}: the clock is running." in page.inner_text(".notice")
    running = page.locator("tr", has_text=kit)
    left = running.locator("[role=timer]").inner_text()
    minutes, seconds = (int(x) for x in left.removesuffix(" left").split(":"))
    assert 58 * 60 <= minutes * 60 + seconds <= 60 * 60 and seconds < 60, left  # the 60-minute use window
    assert fits_the_width(page)
    page.click("text=Sign out")
    scanned_at_bedside(as_("ida"), visit)  # the preparer's record, then the card and syringe labels at the bed

    sign_in(page, live_url, "ida")
    page.goto(f"{live_url}/participants/{STUDY}/SCR-001")
    page.click("text=Record administration")
    assert page.locator("[role=timer]").first.inner_text().endswith("left")
    for gland in ("left", "right"):
        form = page.locator(f"form:has(button:has-text('Record {gland} gland'))")
        form.locator("input[name=volume_ml]").click()
        page.keyboard.type("1.0")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert f"{gland.capitalize()} gland recorded." in page.inner_text(".notice")
    done = page.locator(".glands fieldset.done")
    assert done.count() == 2 and "1.0 mL" in done.nth(0).inner_text() and "Ida Investigator" in done.nth(1).inner_text()
    assert "Administered" in page.inner_text("dl.facts")
    assert fits_the_width(page)
