"""The real browser: Debian's Chromium driven by Playwright against a live server."""
from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn

from .conftest import PASSWORD, chromium_path

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed (apt-get install chromium)")]


@pytest.fixture
def live_url(app, people):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield browser.new_page(viewport={"width": 1024, "height": 768})
        browser.close()


def sign_in(page, live_url, username, password=PASSWORD):
    page.goto(f"{live_url}/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_a_qa_reviewer_signs_in_reviews_the_audit_trail_and_signs_out(page, live_url, tmp_path):
    sign_in(page, live_url, "anna", "wrong password")
    assert "Unknown username or wrong password" in page.inner_text(".error")
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
    assert page.locator(".limit-warning:visible").count() == 0  # no warning before anything is typed
    page.fill("input[name='v:units_received']", "5000")
    warning = page.locator("fieldset:has(input[name='v:units_received']) .limit-warning")
    assert warning.is_visible()  # checked as it is typed, before saving
    page.fill("input[name='v:units_received']", "200")
    assert not warning.is_visible()
    for name, value in {"supplier": "B. Braun", "product_name": "NaCl 0.9 %", "supplier_batch": "NACL-9",
                        "supplier_expiry": "2028-01-31"}.items():
        page.fill(f"input[name='v:{name}']", value)
    page.click("fieldset:has(input[name='v:received_at']) button[data-now]")
    assert "T" in page.input_value("input[name='v:received_at']")
    page.select_option("select[name='v:packaging_intact']", "yes")
    page.click("text=Save values")
    assert "Saved." in page.inner_text(".notice")
    assert "NACL-9" in page.inner_text("table.values") and "Olivia Operator" in page.inner_text("table.values")
