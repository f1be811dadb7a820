"""Stored text as people read it (cellbench/display.py), typed times as site time, and error pages
that name a field in words (issue 14)."""
from __future__ import annotations

import html
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from cellbench import display, inputs
from cellbench.errors import InvalidInput
from cellbench.steps.values import utc_iso

from .demo_pages import visible_text

COPENHAGEN = ZoneInfo("Europe/Copenhagen")


def test_a_stored_utc_time_reads_in_site_time_with_its_offset_in_one_format():
    assert display.moment_text("2026-12-05T09:44+00:00", COPENHAGEN) == "2026-12-05 10:44 +01:00"
    assert display.moment_text("2026-07-29T07:52:00.001271Z", COPENHAGEN) == "2026-07-29 09:52 +02:00"
    assert display.moment(datetime(2026, 12, 6, 5, 44, tzinfo=UTC), COPENHAGEN) == "2026-12-06 06:44 +01:00"
    assert display.moment_text("NACL-26A03", COPENHAGEN) == "NACL-26A03"  # not a time: as it is


def test_an_audit_value_reads_in_words_and_site_time_and_typed_text_stays_as_typed():
    summary = '{"at": "2026-07-29T07:52:00.001271Z", "by": "Ida Krogh", "volume_ml": 1.0, "kits_missing": []}'
    assert display.value_text(summary, COPENHAGEN) == ("at: 2026-07-29 09:52 +02:00; by: Ida Krogh; volume mL: 1.0; "
                                                       "kits missing: none")
    assert display.value_text("in_process", COPENHAGEN) == "in process"
    material = "vial_label lot VIA-2611 (exp. 2027-10-02)"
    assert display.value_text(material, COPENHAGEN) == "vial label lot VIA-2611 (exp. 2027-10-02)"
    assert display.value_text("LOT_A1", COPENHAGEN) == "LOT_A1"
    assert display.value_text("2026-12-05T09:44+00:00 h", COPENHAGEN) == "2026-12-05 10:44 +01:00 h"


def test_keys_read_as_words():
    assert display.words("storage_transfer[3].placed_at") == "storage transfer 3 · placed at"
    assert display.label("qc_result") == "QC result"
    assert display.words("test:anti_hbc") == "test: anti HBc"


def test_a_time_typed_without_offset_is_the_sites_time_and_is_kept_in_utc():
    typed = inputs.moment("2026-12-05 09:44", "at", "time", COPENHAGEN)
    assert typed == datetime(2026, 12, 5, 8, 44, tzinfo=UTC)
    assert utc_iso(typed) == "2026-12-05T08:44+00:00"
    assert inputs.moment("2026-12-05T09:44+00:00", "at", "time", COPENHAGEN) == datetime(2026, 12, 5, 9, 44, tzinfo=UTC)
    with pytest.raises(InvalidInput) as refused:
        inputs.moment("yesterday", "observed_at", "time observed")
    assert refused.value.field == "observed_at" and "YYYY-MM-DD HH:MM" in refused.value.message


def test_an_error_page_names_the_field_in_words_not_by_its_key(as_):
    anna = as_("anna")
    page = anna.get("/audit?since=yesterday")
    text = visible_text(page.text)
    assert page.status_code == 422
    assert "The first day 'yesterday' is not a date" in text
    assert "field:" not in text and "since" not in text.lower().replace("since=", "")
    refused = anna.post("/audit/review", data={"csrf_token": anna.csrf()}, follow_redirects=False)
    assert refused.status_code == 422 and "To seq: field required." in html.unescape(refused.text)
    api = anna.post("/audit/review", data={"csrf_token": anna.csrf()}, headers={"accept": "application/json"})
    assert api.json()["field"] == "to_seq"  # the API keeps the key for programs
