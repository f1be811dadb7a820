"""What every printed record shares: a time is written one way and never broken across lines, a
column is widened to its widest word, and a unit is printed as a person writes it."""
from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pypdf import PdfReader

from cellbench.labels import find_label_fonts
from cellbench.reports import RecordPDF, keep_whole, when
from cellbench.specifications import unit_text

ZONE = ZoneInfo("Europe/Copenhagen")
SIGNED = datetime(2026, 12, 5, 9, 44, tzinfo=UTC)


def lines_of(pdf: RecordPDF) -> list[str]:
    reader = PdfReader(io.BytesIO(bytes(pdf.output())))
    return [line.strip() for page in reader.pages for line in page.extract_text().split("\n")]


def new_pdf() -> RecordPDF:
    pdf = RecordPDF(find_label_fonts(), "test")
    pdf.add_page()
    return pdf


def test_a_time_is_written_in_site_time_to_the_second_with_its_offset():
    assert when(SIGNED, ZONE) == "2026-12-05 10:44:00 +01:00"
    assert when(None, ZONE) == ""


def test_a_narrow_column_is_widened_until_its_time_fits_on_one_line():
    pdf = new_pdf()
    time = when(SIGNED, ZONE)
    # the time column is given a tenth of the page: far narrower than the time
    pdf.grid(("Time", "Note"), (10, 90), [[time, "signed"], [f"at {time} by Anna Berg", "x"]])
    lines = lines_of(pdf)
    assert any(line.startswith(time) for line in lines), lines
    assert not any(re.fullmatch(r"[+-]\d\d:\d\d?|\d", line) for line in lines), lines  # no "+01:0" / "0"


def test_a_long_paragraph_breaks_around_times_never_inside_them():
    pdf = new_pdf()
    time = when(SIGNED, ZONE)
    pdf.line_of([("", " ".join(f"signed {time};" for _ in range(12)))])
    text = "\n".join(lines_of(pdf))
    assert text.count(time) == 12, text


def test_times_keep_whole_only_where_they_are():
    assert keep_whole("at 2026-12-05 10:44:00 +01:00 by") == "at 2026-12-05\u00a010:44:00\u00a0+01:00 by"
    assert keep_whole("no time here: none") == "no time here: none"


def test_units_read_as_a_person_writes_them_and_the_font_prints_them():
    assert unit_text("10^6 cells/mL") == "× 10⁶ cells/mL"
    assert unit_text("20 – 30 10^6 viable cells/vial") == "20 – 30 × 10⁶ viable cells/vial"
    assert unit_text("%") == "%" and unit_text(None) == ""
    pdf = new_pdf()
    assert pdf.clean("25 × 10⁶ viable cells/vial") == "25 × 10⁶ viable cells/vial"  # nothing the font lacks


def test_a_record_drawn_in_the_faces_parsed_once_is_the_record_drawn_in_faces_read_the_plain_way(monkeypatch):
    # RecordPDF draws in copies of the label faces parsed once per process (labels/fonts.py);
    # the bytes are those of fonts read by fpdf2 itself, first record of a process or later.
    from cellbench.labels import fonts

    def record() -> bytes:
        pdf = new_pdf()
        pdf.set_creation_date(SIGNED)
        pdf.heading("Certificate")
        pdf.grid(("Kit", "Signed"), (30, 70), [[f"K-{n:04d}", when(SIGNED, ZONE)] for n in range(40)])
        return bytes(pdf.output())

    shared = [record(), record()]
    monkeypatch.setattr(fonts, "_parsed", lambda path, style: None)  # what add_font reads itself
    assert shared[0] == shared[1] == record()
