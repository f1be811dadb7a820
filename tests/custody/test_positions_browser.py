"""In the real browser, as a scanner types: the pharmacist on the shipment page scans a box label,
then each kit out of the dry shipper; every verdict says where the kit went, and the box line counts
up. One pass: when the receipt is complete the kits are in the tank, in their positions."""
from __future__ import annotations

import pytest

from cellbench import custody

from ..conftest import chromium_path
from ..test_browser import live_url, page, sign_in  # noqa: F401  (the live server and browser fixtures)
from .test_custody import arrives, both_arms, dispatched, kit_row, payload
from .test_positions import BOX, TANK, tank_and_box

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed")]


def scan(page, code: str) -> None:  # noqa: F811  (the page fixture's name)
    """A USB scanner: types into the focused field and presses Enter."""
    assert page.evaluate("document.activeElement && document.activeElement.name") == "code"
    page.keyboard.type(code)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def test_the_pharmacist_scans_a_box_label_then_the_kits_and_each_verdict_names_its_position(
        kit_world, as_, db, monkeypatch, page, live_url):  # noqa: F811
    tank_and_box(as_)
    kits_ = both_arms(kit_world)
    number = dispatched(as_, kits_)
    arrives(monkeypatch, db, number)
    sign_in(page, live_url, "frida")
    page.goto(f"{live_url}/shipments/{number}")
    scan(page, BOX)
    assert f"Putting away into box {BOX}" in page.inner_text(".filling")
    for n, kit in enumerate(kits_, 1):
        scan(page, payload(kit))
        verdict = page.inner_text("#verdict")
        assert f"{kit} ✓" in verdict and f"Put it in {TANK} · rack A · box {BOX} · position {n}" in verdict
        assert f"{n} of 10 positions filled" in page.inner_text(".filling")
    page.screenshot(path="/tmp/receipt-one-pass.png", full_page=True)
    page.check("input[name=seal_intact][value=yes]")
    page.check("input[name=logger_source][value=manual]")
    page.fill("input[name=logger_min]", "-189")
    page.fill("input[name=logger_max]", "-163")
    with page.expect_navigation():
        page.click("button:has-text('Complete the receipt')")
    assert "every kit is in the site's stock" in page.inner_text("main")
    with db.read() as s:
        assert [custody.position_of(s, kit_row(db, kit)).position for kit in kits_] == [1, 2, 3, 4]
