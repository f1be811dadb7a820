"""Every page a demo user reaches reads in site time and plain words (issue 14).

Each demo person walks from home through every link their pages show (tests/demo_pages.py); on
every page, no time is shown raw (ISO 8601 with its 'T') or without the site's offset, and no key,
enum value or snake_case word reaches the text a person reads, outside codes set apart as codes.
The audit-trail CSV is read the same way.
"""
from __future__ import annotations

import csv
import io
import re

import pytest

from cellbench import demo

from .conftest import sign_in
from .demo_pages import DEMO_ROLES, Walk, shape, visible_text, walk

RAW_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
# A date and time of day on a page: it must be followed by the site's offset (Copenhagen: +01:00 in
# winter, +02:00 in summer), in the one format '2026-12-06 09:44 +01:00'.
SHOWN_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2})?(?! [+-]\d{2}:\d{2})")
SITE_OFFSET = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2})? ([+-]\d{2}:\d{2})")
SNAKE = re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b")



_WALKED: dict[str, tuple[Walk, dict[str, str]]] = {}



@pytest.fixture
def walks(app, demo_trial_world) -> dict[str, tuple[Walk, dict[str, str]]]:
    """Each demo person's pages (url -> html) and the audit CSV files they link to (url -> text).
    Walked once for this module: the demo world is restored unchanged for every test, and reading
    pages changes nothing a page shows, so the tests here read the same walk."""
    if not _WALKED:
        seen: set[str] = set()
        for username in DEMO_ROLES:
            client = sign_in(app, username, demo.DEMO_PASSWORD)

            def get(url: str, client=client) -> tuple[int, str]:
                response = client.get(url, follow_redirects=False)
                return response.status_code, response.text

            pages = walk(get, skip_shapes=seen)
            seen |= {shape(url) for url in pages.pages}
            exports = sorted(url for url in pages.files if url.startswith("/audit.csv"))[:6]
            _WALKED[username] = (pages, {url: client.get(url).text for url in exports})
    return _WALKED


def problems(page_html: str) -> list[str]:
    shown, words = visible_text(page_html), visible_text(page_html, codes=False)
    found = [f"raw time {m.group()!r}" for m in RAW_TIME.finditer(shown)]
    found += [f"time without offset {m.group()!r}" for m in SHOWN_TIME.finditer(shown)]
    found += [f"offset {m.group(1)} is not Copenhagen's" for m in SITE_OFFSET.finditer(shown)
              if m.group(1) not in ("+01:00", "+02:00")]
    found += [f"key {m.group()!r}" for m in SNAKE.finditer(words)]
    return found


def report(walks) -> dict[str, list[str]]:
    bad: dict[str, list[str]] = {}
    for username, (pages, _) in walks.items():
        for url, page_html in pages.pages.items():
            found = problems(page_html)
            if found:
                bad[f"{username} {url}"] = sorted(set(found))[:6]
    return bad


def test_every_page_of_every_demo_role_shows_times_in_site_time_and_words_not_keys(walks):
    assert sum(len(w.pages) for w, _ in walks.values()) > 150  # the walk reached the demo, not just home
    assert report(walks) == {}


def broken_links(walks) -> dict[str, list[tuple[str, int, str]]]:
    return {username: w.broken for username, (w, _) in walks.items() if w.broken}


def test_no_link_on_a_demo_page_leads_to_a_refusal_or_nowhere(walks):
    assert broken_links(walks) == {}




def test_the_audit_trail_csv_gives_every_time_in_site_time(walks):
    exports = walks["qa"][1]
    assert exports
    for url, text in exports.items():
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0][:3] == ["seq", "hash", "time"], url
        for row in rows[1:]:
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \+0[12]:00", row[2]), row
            assert not any(RAW_TIME.search(cell) for cell in row), row
