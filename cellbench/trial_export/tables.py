"""The trial events as CSV, one row per event, for an EDC that imports flat files. Cells that a
spreadsheet would run as a formula are written as text (spreadsheet.csv_text); times are the
site's, with their offset."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from .. import clock, spreadsheet
from ..models import Study
from .events import Subject, TrialEvents
from .odm import Arms

COLUMNS = ("study", "site", "randomisation_number", "event", "treatment", "kit_number", "gland", "volume_ml",
           "time", "reason")
UNBLINDED_COLUMNS = ("arm", "kit_arm")


def _rows(code: str, subjects: list[Subject], arms: Arms | None) -> list[list[object]]:
    """randomised, dispensed, administered, not administered and unblinded rows per participant;
    `arms` (the unblinded variant) adds the participant's and the kit's arm to every row."""
    rows: list[list[object]] = []
    for s in subjects:
        def at(moment, zone=s.zone) -> str:
            return clock.local_text(moment, zone)

        def row(event: str, treatment: object = "", kit: str | None = "", gland: str = "", volume: object = "",
                time: str = "", reason: str | None = "", subject=s) -> None:
            line: list[object] = [code, subject.site_code, subject.randomisation_number, event, treatment, kit or "",
                                  gland, volume, time, reason or ""]
            if arms is not None:
                line += [arms[0].get(subject.randomisation_number, ""), arms[1].get(kit or "", "") if kit else ""]
            rows.append(line)

        row("randomised", time=at(s.randomised_at))
        for v in s.visits:
            if v.kit_number:
                row("dispensed", v.treatment, v.kit_number, time=at(v.dispensed_at))
            for dose in v.administered:
                row("administered", v.treatment, v.kit_number, dose.gland, f"{dose.volume_ml:g}",
                    at(dose.administered_at))
            for dose in v.not_administered:
                row("not administered", v.treatment, v.kit_number, dose.gland, time=at(dose.not_administered_at),
                    reason=dose.reason)
        for u in s.unblindings:
            row("emergency unblinding", time=at(u.at), reason=u.reason_code)
    return rows


def csv_chunks(study: Study, pages: Iterable[list[Subject]], arms: Arms | None = None) -> Iterator[bytes]:
    """The CSV in pieces: the header, then one piece per page of subjects (spreadsheet.csv_text's
    text, written a page at a time)."""
    header = COLUMNS + (UNBLINDED_COLUMNS if arms is not None else ())
    yield spreadsheet.csv_text(header, []).encode()
    for page in pages:
        out = io.StringIO()
        csv.writer(out).writerows([spreadsheet.cell(value) for value in row] for row in _rows(study.code, page, arms))
        yield out.getvalue().encode()


def csv_text(events: TrialEvents, arms: Arms | None = None) -> str:
    """The whole CSV at once."""
    return b"".join(csv_chunks(events.study, [events.subjects], arms)).decode()
