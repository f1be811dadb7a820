"""One long word cannot stall a PDF: lines are broken in time linear in the text's length, and a PDF
route that runs past its time limit answers 503 naming the document and stops its renderer."""
from __future__ import annotations

import asyncio
import io
import string
import threading
import time

import pytest
from pypdf import PdfReader

from cellbench import lots, pdf, reports, steps
from cellbench.labels import find_label_fonts
from cellbench.reports import RecordPDF

from ..conftest import actor_of
from ..lots.test_lots import placebo_spec, start_placebo_lot


def long_word(length: int) -> str:
    """One word without a space, of many different characters (so no single width is reused)."""
    alphabet = string.ascii_letters + string.digits
    return (alphabet * (length // len(alphabet) + 1))[:length]


def reads_whole(document: bytes, word: str) -> bool:
    """The word read back piece after piece from the lines it was broken into, in order, whatever
    else (other columns, a footer, a repeated heading) the page puts between its pieces."""
    read = 0
    for token in " ".join(page.extract_text() for page in PdfReader(io.BytesIO(document)).pages).split():
        if word.startswith(token, read) and (len(token) >= 4 or read + len(token) == len(word)):
            read += len(token)
    return read == len(word)


def measuring_in_a_cell(word: str) -> tuple[int, int]:
    """(calls to get_string_width, characters measured) to lay out a table whose one cell holds `word`."""
    document = RecordPDF(find_label_fonts(), "test")
    document.add_page()
    calls, characters = 0, 0
    measure = document.get_string_width

    def counting(text: str, *args, **kwargs) -> float:
        nonlocal calls, characters
        calls, characters = calls + 1, characters + len(text)
        return measure(text, *args, **kwargs)

    document.get_string_width = counting  # type: ignore[method-assign]
    document.grid(("Parameter", "Comment"), (40, 36), [["Transport temperature", word]])
    return calls, characters


def test_breaking_a_word_four_times_as_long_measures_at_most_about_four_times_as_much():
    short_calls, short_characters = measuring_in_a_cell(long_word(1000))
    long_calls, long_characters = measuring_in_a_cell(long_word(4000))
    assert long_calls <= 4.5 * short_calls
    assert long_characters <= 4.5 * short_characters
    # each character's width is measured once, the word itself once: nothing near the old n² prefixes
    assert long_characters < 3 * 4000


def test_a_long_word_is_cut_into_pieces_that_fit_and_read_back_as_the_word():
    widths = {ch: 1.0 + (ord(ch) % 3) for ch in string.ascii_letters + string.digits}
    word = long_word(500)
    pieces, last = pdf.break_word(word, 40.0, widths.__getitem__)
    assert "".join(pieces) == word
    assert all(sum(widths[ch] for ch in piece) <= 40.0 for piece in pieces)
    assert last == sum(widths[ch] for ch in pieces[-1])
    # an ordinary paragraph keeps its words whole; only the word wider than a line is cut
    lines = pdf.wrap([[("a", 1.0), ("bb", 2.0), (word, sum(map(widths.__getitem__, word))), ("c", 1.0)]],
                     40.0, 1.0, widths.__getitem__)
    assert lines[0] == "a bb" and "".join(lines[1:]).replace(" c", "") == word and lines[-1].endswith(" c")


def test_a_4000_character_word_in_a_step_comment_prints_whole_across_lines(db, as_, effective_specs):
    word = long_word(4000)
    number = start_placebo_lot(db)
    receipt = placebo_spec(db).steps[0]
    with db.write() as s:
        steps.start_entry(s, actor_of(db, "olivia"), lots.by_number(s, number), receipt.code, None)
    with db.write() as s:
        steps.record_values(s, actor_of(db, "olivia"), lots.by_number(s, number), receipt.code, 1,
                            {"units_received": steps.ValueInput("1500", comment=word)}, None)
    response = as_("anna").get(f"/lots/{number}/record.pdf")
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    assert reads_whole(response.content, word)
    assert len(PdfReader(io.BytesIO(response.content)).pages) >= 1


def endless(started: threading.Event, stopped: threading.Event) -> bytes:
    """A renderer that would never finish, but reaches its checkpoints: it says when it began and
    when it gave up."""
    started.set()
    try:
        while True:
            pdf.checkpoint()
            time.sleep(0.005)
    except pdf.RenderStopped:
        stopped.set()
        raise


def test_a_record_pdf_past_its_time_limit_is_answered_503_naming_it_and_its_renderer_stops(
        db, app, as_, effective_specs, monkeypatch):
    number = start_placebo_lot(db)
    started, stopped = threading.Event(), threading.Event()
    monkeypatch.setattr(reports, "batch_record_pdf", lambda record, **_: endless(started, stopped))
    app.state.settings.pdf_time_limit_seconds = 0.2
    response = as_("anna").get(f"/lots/{number}/record.pdf")
    assert response.status_code == 503
    assert f"batch record of lot {number}" in response.text and "0.2 s" in response.text
    assert started.is_set() and stopped.wait(5), "the renderer ran on after its deadline"


class Leaving:
    """A client that goes away once the rendering has started."""

    def __init__(self, started: threading.Event):
        self.started = started

    async def is_disconnected(self) -> bool:
        return self.started.is_set()


def test_a_client_that_leaves_sets_the_cancel_flag_and_the_renderer_stops_long_before_its_deadline():
    started, stopped = threading.Event(), threading.Event()
    budget = pdf.Budget(deadline=time.monotonic() + 60)
    begun = time.monotonic()
    with pytest.raises(pdf.PDFTimeout):
        asyncio.run(pdf.render_in_time(Leaving(started), "batch record of lot X", lambda: endless(started, stopped),
                                       60, budget=budget))
    assert budget.cancelled.is_set() and stopped.wait(5)
    assert budget.stopped.wait(5) and time.monotonic() - begun < 30


def test_a_pdf_made_outside_a_route_has_no_deadline():
    """The CLI, a bench or a test wraps text with no budget in force: its checkpoints stop nothing."""
    document = RecordPDF(find_label_fonts(), "test")
    document.set_font("Doc", "", 8)
    lines = pdf.wrap_text(document, long_word(4000), 50.0)
    assert len(lines) > 10 and "".join(lines) == long_word(4000)


def test_a_line_cut_to_fit_keeps_the_longest_start_that_fits_with_its_ellipsis():
    document = RecordPDF(find_label_fonts(), "test")
    document.set_font("Doc", "", 8)
    text = long_word(4000)
    cut = pdf.fit_prefix(document, text, 50.0)
    assert cut.endswith("…") and text.startswith(cut[:-1])
    assert document.get_string_width(cut) <= 50.0 + 1e-9
    assert document.get_string_width(text[:len(cut)] + "…") > 50.0  # one character more would not fit
    lines = pdf.wrap_text(document, f"short words then {text} and more", 50.0)
    assert lines[0] == "short words then" and "".join(lines[1:]).startswith(text)
