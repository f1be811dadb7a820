"""The batch record page's own work: a read that does not grow with the lot, signature lines worked
out once in Python that read exactly as the shared `signature` macro, and entries' tables written
out in Python with every recorded text escaped."""
from __future__ import annotations

from datetime import UTC, date, datetime
from types import SimpleNamespace

from sqlalchemy import event

from cellbench import reports
from cellbench.models import Meaning
from cellbench.web.batch_record import Moments, signature_line, uses, value_rows

from ..lots.test_lots import start_placebo_lot
from .test_batch_record import finished_lot  # noqa: F401  (a fixture)


def statements_reading(db, number: str) -> tuple[reports.BatchRecord, list[str]]:
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_rest) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with db.read() as s:
            record = reports.batch_record(s, number)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    return record, seen


def size(record: reports.BatchRecord) -> tuple[int, int, int, int]:
    entries = [e for s in record.steps for e in s.entries]
    return (len(entries), sum(len(line.rows) for e in entries for line in e.lines),
            sum(len(e.signatures) for e in entries), len(record.vials))


def test_a_finished_lot_is_read_in_as_many_statements_as_a_lot_just_started(db, finished_lot):  # noqa: F811
    started = start_placebo_lot(db)
    small, small_statements = statements_reading(db, started)
    big, big_statements = statements_reading(db, finished_lot["number"])
    assert size(small) == (0, 0, 0, 0)
    entries, values, signatures, vials = size(big)
    assert entries == 6 and values > 30 and signatures > 10 and vials > 0 and big.deviations and big.corrections
    assert len(big_statements) == len(small_statements)


def test_a_signature_line_reads_as_the_signature_macro(app):
    env = app.state.templates.env
    macro = env.get_template("_macros.html").module.signature
    at = Moments(env.filters["local"])
    signed = reports.SignatureView(7, "Olivia <O'Brien> & co", datetime(2026, 3, 29, 0, 59, 30, 5, tzinfo=UTC),
                                   Meaning.performed, "step_entry", "12", "ab&cd\"ef", None, None)
    assert signature_line(signed, at) == macro(signed)
    signed.invalidated_at = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    signed.invalidated_reason = "value <supplier_batch> corrected: \"digits\" & more"
    assert signature_line(signed, at) == macro(signed)
    assert "invalidated" in signature_line(signed, at) and "+01:00" in signature_line(signed, at)


def test_times_worked_out_once_a_minute_read_as_the_local_filter(app):
    """The page shows times to the minute: moments within one minute share one worked-out text, and
    each reads exactly as the templates' `local` filter would show it."""
    local = app.state.templates.env.filters["local"]
    at = Moments(local)
    first = datetime(2026, 3, 29, 0, 59, 1, 250, tzinfo=UTC)  # an hour before summer time begins
    moments = [first, first.replace(second=59, microsecond=999999), first.replace(minute=0, hour=1), None]
    for moment in moments * 2:
        assert at[moment] == local(moment)
    assert "+01:00" in at[first] and "+02:00" in at[moments[2]] and at[None] == ""


def test_recorded_text_in_an_entrys_table_and_uses_is_escaped_as_the_templates_escape_it(app):
    """The values table and the uses are written out in Python, not by the template: every recorded
    text is still escaped (a value, a comment, a name, a label, a material), and a time reads as the
    local filter shows it."""
    at = Moments(app.state.templates.env.filters["local"])
    moment = datetime(2026, 3, 29, 0, 59, 30, tzinfo=UTC)
    value = reports.ValueRow(1, "x", "<b>5</b>", "g & co", False, False, "it's \"odd\"", None, "Olivia <O'Brien>",
                             moment, None, None)
    line = reports.ParameterLine("x", "Mass <raw>", None, "≤ 4 g", [value], [])
    material = SimpleNamespace(name="Medium <A>", supplier="S&S", supplier_lot="L<1>", expiry=date(2027, 1, 2))
    equipment = SimpleNamespace(name="Balance \"B\"", asset_id="<EQ-1>", calibration_due=date(2027, 1, 1))
    entry = reports.EntryRecord(None, "", [line], [material], [equipment], [])
    rows, listed = str(value_rows(entry, at)), str(uses(entry))
    assert "<b>" not in rows and "<raw>" not in rows and "<O'Brien>" not in rows
    for shown in ("&lt;b&gt;5&lt;/b&gt; g &amp; co", "Mass &lt;raw&gt;", "it&#39;s &#34;odd&#34;",
                  "Olivia &lt;O&#39;Brien&gt;", str(at[moment]), 'class="oos"', "OUT OF LIMITS"):
        assert shown in rows, shown
    for shown in ("Medium &lt;A&gt; (S&amp;S)", "supplier lot L&lt;1&gt;", "expiry 2027-01-02",
                  "Balance &#34;B&#34;", "asset &lt;EQ-1&gt;", "calibration due 2027-01-01"):
        assert shown in listed, shown
