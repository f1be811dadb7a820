"""The accountability report's figures table, drawn a row at a time for speed, is the same PDF as
the ruled grid every printed record uses would draw: same pages, same rules, same text."""
from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cellbench.accountability.site_report import COLUMNS, HEADINGS, figures_table
from cellbench.reports import certificate_start

PRINTED = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def _pdf(rows: list[list[str]], *, fast: bool) -> bytes:
    pdf = certificate_start("Accountability — S at X", "Accountability S X", "Figures. ", zone=ZoneInfo("UTC"),
                            printed_by="Mette Monitor", printed_at=PRINTED)
    pdf.creation_date = PRINTED  # the only thing that differs between two renderings otherwise
    pdf.heading("Figures by blinded lot")
    if fast:
        figures_table(pdf, rows)
    else:
        pdf.grid(("Blinded lot", *HEADINGS), (18, *([8] * len(COLUMNS))), rows)
    pdf.heading("Source data verifications")
    return bytes(pdf.output())


def _rows(count: int, code: str = "BL-{:05d}") -> list[list[str]]:
    return [[code.format(n), *(str((n * (i + 3)) % 997) for i in range(len(COLUMNS)))] for n in range(count)]


def test_the_figures_table_over_several_pages_is_the_grid_byte_for_byte():
    rows = _rows(300)
    fast = _pdf(rows, fast=True)
    assert fast == _pdf(rows, fast=False)
    assert len(re.findall(rb"/Type /Page\b", fast)) > 3, "the table runs over pages, its heading repeated"


def test_a_code_that_is_not_one_word_is_drawn_by_the_grid_as_before():
    long = "BL 2026: ÆØÅ with spaces that wrap inside its column, and then some more words"
    rows = [*_rows(20), [long, *["1"] * len(COLUMNS)]]
    assert _pdf(rows, fast=True) == _pdf(rows, fast=False)
