"""axe-core on every page of the demo, at the tablet's 768×1024, for every demo role (issue 14).

The pages are the ones each demo person reaches by following links from home (tests/demo_pages.py);
a shape of page (the same route with another lot or kit) is checked once, by the first role that
reaches it, so that the run stays within a couple of minutes. One browser; one context per role.
"""
from __future__ import annotations

import os
import time

import pytest

from cellbench import demo

from .conftest import chromium_path, launch_chromium, sign_in
from .demo_pages import DEMO_ROLES, shape, walk
from .test_browser import live_url  # noqa: F401  # the live server fixture

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(chromium_path() is None,
                                 reason="Chromium is not installed (apt-get install chromium)")]

TABLET = {"width": 768, "height": 1024}
BLOCKING = ("serious", "critical")
# Pages other helpers of issue 14 rewrite: their findings are reported, not failed here. shape -> why.
THEIRS: dict[str, str] = {}


def pages_by_role(app) -> dict[str, list[str]]:
    """Each role's pages, a shape once over all roles (the first role to reach it checks it)."""
    seen: set[str] = set()
    found: dict[str, list[str]] = {}
    for username in DEMO_ROLES:
        client = sign_in(app, username, demo.DEMO_PASSWORD)

        def get(url: str, client=client) -> tuple[int, str]:
            response = client.get(url, follow_redirects=False)
            return response.status_code, response.text

        pages = walk(get, per_shape=1, skip_shapes=seen)
        found[username] = [url for url in pages.pages if shape(url) not in seen]
        seen |= {shape(url) for url in pages.pages}
    return found


def test_no_page_of_any_demo_role_has_a_serious_or_critical_accessibility_violation(app, demo_trial_world, live_url):  # noqa: F811
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import sync_playwright

    urls = pages_by_role(app)
    assert sum(map(len, urls.values())) > 60  # the walk reached the demo's pages, not just home
    axe = Axe()
    found: dict[str, list[str]] = {}
    theirs: dict[str, list[str]] = {}
    took: dict[str, float] = {}
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        for username, pages in urls.items():
            context = browser.new_context(viewport=TABLET)
            context.add_init_script(axe.axe_script)  # on every page before it loads: no injection per page
            page = context.new_page()
            page.goto(f"{live_url}/login")
            page.fill("input[name=username]", username)
            page.fill("input[name=password]", demo.DEMO_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            for url in pages:
                started = time.monotonic()
                page.goto(live_url + url)
                result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
                bad = [f"{v['id']} ({v['impact']}): {v['nodes'][0]['target']} {v['help']}"
                       for v in result["violations"] if v["impact"] in BLOCKING]
                if bad:
                    (theirs if shape(url) in THEIRS else found)[f"{username} {url}"] = bad
                took[f"{username} {url}"] = time.monotonic() - started
            context.close()
        browser.close()
    if os.environ.get("CELLBENCH_AXE_REPORT"):  # what the run found and where its time went
        print(f"{len(took)} pages in {sum(took.values()):.0f} s; slowest:",
              sorted(took.items(), key=lambda item: -item[1])[:12])
        print("found:", found, "\npages other helpers rewrite:", theirs)
    assert found == {}
