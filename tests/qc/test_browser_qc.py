"""QC in sets in the real browser: Quinn enters the lot's 20 results in the grid on a tablet, Kim Larsen
(the second QC analyst) reviews them as one set at her desk and signs once. Prints the page loads."""
from __future__ import annotations

import os
import re

import pytest
from sqlalchemy import func, select

from cellbench import demo
from cellbench.models import QcResult, Signature

from .. import test_browser
from ..conftest import PASSWORD, chromium_path, launch_chromium
from .test_sets import ASC, GRID, LOT_STAGE

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(chromium_path() is None,
                                 reason="Chromium is not installed (apt-get install chromium)")]

TABLET, DESK = {"width": 768, "height": 1024}, {"width": 1280, "height": 800}
live_url = test_browser.live_url  # the live server fixture, shared with the browser suite
SHOTS = os.environ.get("CELLBENCH_SCREENSHOTS")  # a folder to keep the screenshots in, for a person to look at


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()


class Loads:
    """Counts the documents a page loads: each navigation, form post and redirect target a person waits for."""

    def __init__(self, page):
        self.count = 0
        page.on("load", lambda _: self.bump())

    def bump(self) -> None:
        self.count += 1


def signed_in(browser, live_url, username, password, viewport):
    page = browser.new_page(viewport=viewport)
    page.goto(f"{live_url}/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_url}/")  # the home page, loaded before the counting starts
    page.wait_for_load_state("load")
    return page


def serious_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page).response["violations"]
    return [f"{v['id']}: {v['help']}" for v in found if v.get("impact") in ("serious", "critical")]


def count(db, *where) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(Signature).where(*where))


def test_twenty_qc_results_are_entered_in_the_grid_and_reviewed_with_one_signature(browser, live_url, demo_world,
                                                                                   tmp_path):
    quinn = signed_in(browser, live_url, "quinn", PASSWORD, TABLET)
    entry = Loads(quinn)
    quinn.goto(f"{live_url}/lots/{ASC}/qc")
    assert quinn.locator("input[name^='value:'], select[name^='value:']").count() == len(LOT_STAGE) == 20
    assert quinn.locator("[name^='value:donor_']").count() == 0  # donor tests are shown, not offered
    for name, value in GRID.items():
        field = quinn.locator(f"[name='{name}']")
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    quinn.screenshot(path=str(tmp_path / "qc-grid-typed.png"), full_page=True)
    quinn.click("#grid button[type=submit]")
    assert "20 results saved" in quinn.inner_text(".notice")
    entered_loads = entry.count
    assert serious_violations(quinn) == []
    quinn.screenshot(path=str(tmp_path / "qc-grid-entered.png"), full_page=True)
    with demo_world.read() as s:
        assert s.scalar(select(func.count()).select_from(QcResult)) == 20

    kim = signed_in(browser, live_url, "qc", demo.DEMO_PASSWORD, DESK)
    review = Loads(kim)
    before = count(demo_world)
    kim.goto(f"{live_url}/lots/{ASC}/qc")
    assert kim.locator("#review input[name=result]:checked").count() == 20  # all pending review, by default
    kim.fill("#review input[name=password]", demo.DEMO_PASSWORD)
    assert serious_violations(kim) == []
    kim.locator("#review").screenshot(path=str(tmp_path / "qc-review-set.png"))
    kim.click("#review button.primary")
    assert "20 results reviewed under one signature" in kim.inner_text(".notice")
    signatures = count(demo_world) - before
    assert "Every test required for release has a reviewed, passing result." in kim.inner_text("main")
    assert re.search(r"Kim Larsen · reviewed", kim.inner_text("#results"))
    kim.screenshot(path=str(tmp_path / "qc-grid-reviewed.png"), full_page=True)
    if SHOTS:
        for name in ("qc-grid-typed.png", "qc-grid-entered.png", "qc-review-set.png", "qc-grid-reviewed.png"):
            (tmp_path / name).replace(os.path.join(SHOTS, name))
    print(f"\nQC in the browser: 20 results entered in {entered_loads} page loads; "
          f"reviewed in {review.count} page loads with {signatures} signature")
    assert entered_loads <= 3 and signatures == 1
