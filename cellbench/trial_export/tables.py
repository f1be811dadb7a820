"""The trial events as CSV, one row per event, for an EDC that imports flat files. Cells that a
spreadsheet would run as a formula are written as text (spreadsheet.csv_text); times are the
site's, with their offset.

The rows are written as text, a line per event, not handed to csv.writer cell by cell: at ten years
an export holds tens of thousands of rows, and making a list per row and a call per cell was most of
its time. The text is what csv.writer wrote (tests compare it with tests/trial_export_reference.py
byte for byte): cells joined by commas, lines ended by CRLF, and a cell that holds a comma, a quote
or a line break quoted by csv.writer itself (_cell)."""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator

from .. import spreadsheet
from ..models import Study
from .events import Subject, TrialEvents
from .local_times import Moment, SiteTimes, Zones
from .odm import Arms
from .odm_clinical import Once

COLUMNS = ("study", "site", "randomisation_number", "event", "treatment", "kit_number", "gland", "volume_ml",
           "time", "reason")
UNBLINDED_COLUMNS = ("arm", "kit_arm")
# what makes csv.writer (the excel dialect, minimal quoting) quote a cell
_QUOTED = re.compile('[,"\r\n]')


def _cell(value: str) -> str:
    """A text cell as spreadsheet.csv_text writes it: one that starts like a formula, as text; one
    that csv.writer would quote, quoted by csv.writer."""
    text = "'" + value if value.startswith(spreadsheet.FORMULA_STARTS) else value
    if _QUOTED.search(text) is None:
        return text
    out = io.StringIO()
    csv.writer(out).writerow([text, ""])  # two cells: a lone empty cell is written as "" by some versions
    return out.getvalue()[:-3]  # without the empty cell's comma and the CRLF


class _Rows:
    """randomised, dispensed, administered, not administered and unblinded lines per participant;
    `arms` (the unblinded variant) adds the participant's and the kit's arm to every line.

    Each cell is what spreadsheet.cell made of the value before: a text that starts like a formula
    is prefixed, a treatment number written as the number it is, a time as clock.local_text writes
    it (which starts with a digit and holds no comma); the texts that repeat (the study, a site, a
    gland, a reason, an arm, a volume) are made once per export, not once per cell."""

    def __init__(self, code: str, arms: Arms | None):
        self.code, self.arms = _cell(code), arms
        self._same = Once(_cell)
        self._zones = Zones()

    def page(self, subjects: list[Subject]) -> str:
        lines: list[str] = []
        add, same, arms = lines.append, self._same, self.arms
        for s in subjects:
            times = self._zones(s.zone)
            head = f"{self.code},{same(s.site_code)},{_cell(s.randomisation_number)},"
            arm = same(arms[0].get(s.randomisation_number)) if arms is not None else ""
            tail = f",{arm},\r\n" if arms is not None else "\r\n"  # the rows without a kit
            add(f"{head}randomised,,,,,{_at(times, s.randomised_at)},{tail}")
            for v in s.visits:
                kit = _cell(v.kit_number) if v.kit_number else ""
                kit_arm = same(arms[1].get(v.kit_number or "")) if arms is not None and kit else ""
                kit_tail = tail if arms is None else f",{arm},{kit_arm}\r\n"
                if kit:
                    add(f"{head}dispensed,{v.treatment},{kit},,,{_at(times, v.dispensed_at)},{kit_tail}")
                for dose in v.administered:
                    add(f"{head}administered,{v.treatment},{kit},{same(dose.gland)},{self._volume(dose.volume_ml)},"
                        f"{_at(times, dose.administered_at)},{kit_tail}")
                for dose in v.not_administered:
                    add(f"{head}not administered,{v.treatment},{kit},{same(dose.gland)},,"
                        f"{_at(times, dose.not_administered_at)},{same(dose.reason)}{kit_tail}")
            for u in s.unblindings:
                add(f"{head}emergency unblinding,,,,,{_at(times, u.at)},{same(u.reason_code)}{tail}")
        return "".join(lines)

    def _volume(self, volume: float | None) -> str:
        return self._same(f"{volume:g}")  # None fails here as it did before (the column is NOT NULL)


def _at(times: SiteTimes, moment: Moment | None) -> str:
    """clock.local_text's form ('2026-12-06 09:44:00 +01:00'), for a time in the site's zone."""
    return "" if moment is None else times.csv(moment)


def csv_chunks(study: Study, pages: Iterable[list[Subject]], arms: Arms | None = None) -> Iterator[bytes]:
    """The CSV in pieces: the header, then one piece per page of subjects (spreadsheet.csv_text's
    text, written a page at a time)."""
    header = COLUMNS + (UNBLINDED_COLUMNS if arms is not None else ())
    yield spreadsheet.csv_text(header, []).encode()
    rows = _Rows(study.code, arms)
    for page in pages:
        yield rows.page(page).encode()


def csv_text(events: TrialEvents, arms: Arms | None = None) -> str:
    """The whole CSV at once."""
    return b"".join(csv_chunks(events.study, [events.subjects], arms)).decode()
