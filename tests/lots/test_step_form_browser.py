"""The step page in Chromium at the tablet's size (768×1024): one form, scans kept without a page
load, the password asked in place after an idle timeout, the verifier co-signing on the same tablet."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from cellbench import lots, steps
from cellbench.models import StepState

from ..conftest import PASSWORD, chromium_path
from ..test_browser import live_url, page, sign_in  # noqa: F401 - the live server and browser fixtures
from .test_step_form import at_the_fill, fill_entry, idle

pytestmark = [pytest.mark.browser, pytest.mark.skipif(chromium_path() is None,
                                                     reason="Chromium is not installed (apt-get install chromium)")]

TABLET = {"width": 768, "height": 1024}
expect.set_options(timeout=15_000)  # two cores shared by the whole suite: the server may be slow to answer


def scan(tab, selector: str, code: str) -> None:
    """A scanner is a keyboard: it types the code into the focused field and presses Enter."""
    tab.click(selector)
    tab.keyboard.type(code)
    tab.keyboard.press("Enter")


def test_a_fill_step_with_values_scans_and_signature_survives_an_idle_timeout_in_two_page_loads(
        page, live_url, db, effective_specs):  # noqa: F811 - fixtures
    number, fill = at_the_fill(db, start=False)
    page.set_viewport_size(TABLET)
    sign_in(page, live_url, "olivia")
    page.goto(f"{live_url}/lots/{number}")
    # What the operator waits for: a page, navigated to or sent by the form's script (the draft's and
    # the renewal's small JSON answers are not pages). The one refused by the ended session is counted apart.
    loads, refused = [], []
    page.on("response", lambda r: (refused if r.status == 401 else loads).append(r.url) if (
        r.request.resource_type == "document" or (r.request.method == "POST" and "/draft" not in r.url
                                                  and "/session/renew" not in r.url)) else None)
    page.click("text=Start this step")
    expect(page.locator("input[name='v:cleanroom']")).to_be_visible()

    # The page opens at the step in hand, its progress in view, the steps done folded away.
    assert "2 of 6 steps done" in page.inner_text("#progress")
    assert page.evaluate("window.scrollY") > 0, "scrolled to the current step"
    assert page.locator("li.step.done > details:not([open])").count() == 2
    now = page.locator("fieldset:has(input[name='v:fill_completed_at']) button[data-now]").bounding_box()
    assert now["height"] >= 44 and now["width"] >= 44, "a gloved finger hits the Now button"

    page.fill("input[name='v:cleanroom']", "Grade A in B")
    page.fill("input[name='v:vials_filled']", "6")
    page.fill("input[name='v:fill_volume']", "1.0")
    page.click("fieldset:has(input[name='v:fill_completed_at']) button[data-now]")
    for material in fill.materials:
        scan(page, "input[name=material_scan]", f"{material.code}:{material.code.upper()}-1")
        expect(page.locator(f"input[name=materials][value='{material.code}:{material.code.upper()}-1']")).to_have_count(1)
    scan(page, "input[name=equipment_scan]", "BSC-1")
    expect(page.locator("fieldset[data-kind=equipment] li")).to_contain_text("BSC-1")
    expect(page.locator(".draft-note")).to_contain_text("Draft, not part of the record until signed")
    assert page.input_value("input[name='v:vials_filled']") == "6", "typing before a scan is still there"
    page.locator("fieldset[data-kind=materials]").scroll_into_view_if_needed()
    page.screenshot(path="/tmp/stepform-step-form.png")

    idle(db, "olivia", 61)  # a long digestion later
    page.fill("input[name=password]", PASSWORD)
    page.click("text=Sign: performed")
    dialog = page.locator("dialog#renew")
    expect(dialog).to_be_visible()
    page.fill("input[name=renew_password]", "not it")
    page.click("dialog#renew button.primary")
    expect(dialog.locator(".why")).to_contain_text("Wrong password")
    page.fill("input[name=renew_password]", PASSWORD)
    page.click("dialog#renew button.primary")
    expect(page.locator(".notice")).to_contain_text("Signed: performed.")
    assert StepState(fill_entry(db, number).state) == StepState.performed
    print(f"fill step (start, values, 2 materials, 1 instrument, signature): {len(loads)} page loads, "
          f"and {len(refused)} save refused by the ended session and sent again after the password")
    assert len(loads) <= 2 and len(refused) == 1, (loads, refused)

    # The verifier signs on the same tablet with their own name and password; Olivia stays signed in.
    page.fill("form.cosign input[name=username]", "victor")
    page.fill("form.cosign input[name=password]", PASSWORD)
    page.click("text=Sign: verified")
    expect(page.locator(".notice")).to_contain_text("Signed: verified.")
    assert "Olivia Operator" in page.inner_text("header .who")
    with db.read() as s:
        entry = steps.entry_of(s, lots.by_number(s, number), "fill", 1)
        assert StepState(entry.state) == StepState.verified
    page.screenshot(path="/tmp/stepform-lot-page.png", full_page=False)


def test_the_step_page_has_no_serious_accessibility_violations(page, live_url, db, effective_specs):  # noqa: F811
    from axe_playwright_python.sync_playwright import Axe

    number, _ = at_the_fill(db)
    page.set_viewport_size(TABLET)
    sign_in(page, live_url, "olivia")
    page.goto(f"{live_url}/lots/{number}")
    page.fill("input[name='v:vials_filled']", "6")
    expect(page.locator(".draft-note")).to_contain_text("Draft")
    violations = [v for v in Axe().run(page).response["violations"] if v["impact"] in ("serious", "critical")]
    assert violations == [], [(v["id"], [n["target"] for n in v["nodes"]][:3]) for v in violations]
