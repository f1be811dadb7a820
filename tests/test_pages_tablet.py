"""The bench and the site at the tablet's 768×1024 (issue 14): every nav link whole and in sight, no
page wider than the screen, identifiers on one line, and every button, button-styled link and form
control at least 44 px high. With CELLBENCH_SHOTS=<folder>, the pages are saved there as PNG too,
to be looked at."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from cellbench import demo

from .conftest import chromium_path, launch_chromium
from .test_browser import live_url  # noqa: F401  # the live server fixture

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(chromium_path() is None,
                                 reason="Chromium is not installed (apt-get install chromium)")]

TABLET = {"width": 768, "height": 1024}
TOUCH_PX = 44

# What the page measures of itself: nav links cut or out of sight, the page's width, identifiers
# broken over lines, and controls smaller than a fingertip.
MEASURE = """() => {
  const visible = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0
                         && getComputedStyle(e).visibility !== 'hidden'; };
  const name = e => (e.innerText || e.value || e.name || e.outerHTML.slice(0, 60)).trim().slice(0, 40);
  const height = e => e.getBoundingClientRect().height;
  const nav = [...document.querySelectorAll('nav.main a')].filter(a => {
    const r = a.getBoundingClientRect();
    return r.left < 0 || r.right > innerWidth || a.scrollWidth > a.clientWidth + 1; }).map(name);
  const ids = [...document.querySelectorAll('td:first-child a, code, .code, .kitno')].filter(visible)
    .filter(e => e.getClientRects().length > 1 || height(e) > 2.2 * parseFloat(getComputedStyle(e).fontSize))
    .map(name);
  const controls = 'button, a.button, input:not([type=hidden]):not([type=checkbox]):not([type=radio]), select';
  const small = [...document.querySelectorAll(controls)].filter(visible).filter(e => height(e) < TOUCH - 0.5)
    .map(e => name(e) + ' ' + Math.round(height(e)) + 'px');
  return {nav, width: document.documentElement.scrollWidth, ids, small};
}""".replace("TOUCH", str(TOUCH_PX))


def signed_in_page(browser, live, username):
    page = browser.new_context(viewport=TABLET).new_page()
    page.goto(f"{live}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", demo.DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def test_the_bench_and_the_scan_station_fit_a_tablet_and_take_a_fingertip(demo_trial_world, live_url):  # noqa: F811
    from playwright.sync_api import sync_playwright

    shots = os.environ.get("CELLBENCH_SHOTS")
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        operator = signed_in_page(browser, live_url, "operator")
        operator.goto(f"{live_url}/lots")
        lot_url = operator.get_attribute("table td:first-child a[href^='/lots/']", "href")
        pages = {"home-qa": ("qa", "/"), "lot": ("operator", lot_url), "lots": ("operator", "/lots"),
                 "scan": ("supply", "/scan"), "shipments": ("pharmacist", "/shipments"),
                 "audit": ("qa", "/audit")}
        found = {}
        for what, (username, url) in pages.items():
            page = operator if username == "operator" else signed_in_page(browser, live_url, username)
            page.goto(live_url + url)
            measured = page.evaluate(MEASURE)
            if shots:
                Path(shots).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(shots) / f"{what}.png"), full_page=what != "audit")
            problems = {k: v for k, v in measured.items() if (v if k != "width" else v > TABLET["width"])}
            if problems:
                found[f"{username} {url}"] = problems
        browser.close()
    assert found == {}
