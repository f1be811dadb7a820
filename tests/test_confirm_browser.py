"""In the real browser: an irreversible action (here, randomising a participant) asks first. The
dialog shows the summary with "Go back" focused and the irreversible choice styled apart; going
back sends nothing, confirming sends the form as filled in. Also the top bar's find field, scanned
into as a scanner types (the code, then Enter)."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from cellbench import pharmacy, studies, users
from cellbench.models import AuditEvent, Participant

from .conftest import chromium_path
from .test_browser import live_url, page, sign_in  # noqa: F401  (the live server and browser fixtures)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed")]
STUDY = "NCT07290946"


def enrolled(db, screening: str) -> None:
    with db.write() as s:
        ida = users.actor(s, users.by_username(s, "ida"))
        pharmacy.enrol(s, ida, studies.by_code(s, STUDY), site_code="RH-ENT", screening_number=screening)


def randomisation_number(db, screening: str) -> str | None:
    with db.read() as s:
        return s.scalars(select(Participant.randomisation_number)
                         .where(Participant.screening_number == screening)).one()


def test_randomising_asks_first_going_back_sends_nothing_confirming_randomises(trial_world, db, page, live_url):  # noqa: F811
    enrolled(db, "SCR-901")
    sign_in(page, live_url, "ida")
    page.goto(f"{live_url}/participants/{STUDY}/SCR-901")
    with db.read() as s:  # after signing in (an event of its own)
        events_before = s.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1))
    page.fill("input[name=consent_date]", "2026-01-05")
    for box in page.query_selector_all("input[type=checkbox][name^=criterion_]"):
        box.check()

    page.click("button:has-text('Randomise')")
    dialog = page.locator("dialog.confirm[open]")
    dialog.wait_for()
    assert "Randomise participant SCR-901 in NCT07290946?" in dialog.inner_text()
    assert "cannot be undone" in dialog.inner_text()
    assert page.evaluate("document.activeElement.textContent") == "Go back", "the usual choice is focused first"
    assert dialog.locator("button.danger").inner_text() == "Randomise SCR-901"
    page.screenshot(path="/tmp/confirm-randomise.png")
    dialog.locator("button:has-text('Go back')").click()
    expect(page.locator("dialog.confirm")).to_have_count(0)  # removed on its close event, a task later
    assert page.url.endswith("/participants/NCT07290946/SCR-901")
    assert randomisation_number(db, "SCR-901") is None, "going back sent nothing"
    with db.read() as s:
        assert s.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)) == events_before

    page.click("button:has-text('Randomise')")
    with page.expect_navigation():  # the confirmed form is posted and its answer page loaded
        page.locator("dialog.confirm[open] button.danger").click()
    number = randomisation_number(db, "SCR-901")
    assert number is not None, "confirming sent the form as filled in"
    assert number in page.inner_text("main")
    with db.read() as s:
        actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.seq > events_before)))
    assert any("randomis" in a for a in actions), actions


def test_a_kit_label_scanned_into_the_top_bar_opens_the_kit(kit_world, page, live_url):  # noqa: F811
    from cellbench import qrpayload

    from .conftest import SECRET

    active = kit_world.active[0]
    sign_in(page, live_url, "frida")
    page.fill("header form.find input[name=q]", qrpayload.make_payload(active, SECRET))
    page.press("header form.find input[name=q]", "Enter")  # what a scanner sends after the code
    page.wait_for_url(f"{live_url}/kits/{active}")
    assert active in page.inner_text("h1")
