"""The browser walk's fixtures: a live server on the test's database, one Chromium with a device per
person, a clock that moves forward, and the page-load counter (walking.py).

tests/test_browser.py has a `live_url` of its own; it asks for `people`, which would put the test
people under the demo world (tests/conftest.py `chain_for`) and seed the demo without its trial
story. The walk needs the demo exactly as `cellbench demo` makes it, so its server asks for the
app alone.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col

from cellbench import clock as cellbench_clock
from cellbench.models import WebSession

from ..conftest import launch_chromium, served
from .walking import Walk


@pytest.fixture
def live_url(app):
    """The app served in a thread of this process (so a patched clock reaches it)."""
    with served(app) as url:
        yield url


@pytest.fixture
def chromium():
    """Debian's Chromium (never a downloaded browser); each person gets a context of their own."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        yield browser
        browser.close()


@pytest.fixture
def clock(monkeypatch, db):
    """cellbench's clock, moved forward as the trial's calendar moves (a courier's day, four months
    between treatments). The live server runs in this process, so patching the clock's source
    reaches every page. People keep their tablets in use meanwhile: their sessions are touched at
    the new time, so the idle timeout does not sign them out of a walk that skipped months."""
    shift = [timedelta()]
    monkeypatch.setattr(cellbench_clock, "_source", lambda: cellbench_clock.wall_now() + shift[0])

    def advance(**delta) -> None:
        shift[0] += timedelta(**delta)
        with db.write() as s:
            s.execute(update(WebSession).where(col(WebSession.ended_at).is_(None))
                      .values(last_seen_at=cellbench_clock.utcnow()))

    return advance


@pytest.fixture
def walk(chromium, live_url, clock, tmp_path):
    """The walk: people signed in on their own devices, page loads counted per task; the table is
    printed at the end (run with -s to see it), pass or fail."""
    walking = Walk(chromium, live_url, tmp_path)
    yield walking
    if walking.tasks:
        print("\n" + walking.table())
