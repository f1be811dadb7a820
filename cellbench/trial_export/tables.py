"""The trial events as CSV, one row per event, for an EDC that imports flat files. Cells that a
spreadsheet would run as a formula are written as text (spreadsheet.csv_text); times are the
site's, with their offset."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

from .. import spreadsheet
from ..models import Study
from .events import Subject, TrialEvents
from .odm import Arms
from .odm_clinical import Once

COLUMNS = ("study", "site", "randomisation_number", "event", "treatment", "kit_number", "gland", "volume_ml",
           "time", "reason")
UNBLINDED_COLUMNS = ("arm", "kit_arm")


def _guarded(value: str) -> str:
    """A text cell as spreadsheet.cell writes it: one that starts like a formula, as text."""
    return "'" + value if value.startswith(spreadsheet.FORMULA_STARTS) else value


class _Rows:
    """randomised, dispensed, administered, not administered and unblinded rows per participant;
    `arms` (the unblinded variant) adds the participant's and the kit's arm to every row.

    Each cell is what spreadsheet.cell made of the value before (tests compare the files): a text
    that starts like a formula is prefixed, a treatment number written as the number it is, a time
    as clock.local_text writes it (which starts with a digit); the texts that repeat (the study, a
    site, a gland, a reason) are guarded once per export, not once per cell."""

    def __init__(self, code: str, arms: Arms | None):
        self.code, self.arms = _guarded(code), arms
        self._same = Once(_guarded)

    def page(self, subjects: list[Subject]) -> list[list[str]]:
        rows: list[list[str]] = []
        code, arms = self.code, self.arms
        for s in subjects:
            zone, site, number = s.zone, self._same(s.site_code), _guarded(s.randomisation_number)
            arm = _guarded(arms[0].get(s.randomisation_number, "")) if arms is not None else ""
            first = len(rows)
            rows.append([code, site, number, "randomised", "", "", "", "", _at(s.randomised_at, zone), ""])
            for v in s.visits:
                treatment, kit = str(v.treatment), _guarded(v.kit_number) if v.kit_number else ""
                start = len(rows)
                if kit:
                    rows.append([code, site, number, "dispensed", treatment, kit, "", "", _at(v.dispensed_at, zone),
                                 ""])
                rows.extend([code, site, number, "administered", treatment, kit, self._same(dose.gland),
                             _guarded(f"{dose.volume_ml:g}"), _at(dose.administered_at, zone), ""]
                            for dose in v.administered)
                rows.extend([code, site, number, "not administered", treatment, kit, self._same(dose.gland), "",
                             _at(dose.not_administered_at, zone), self._same(dose.reason)]
                            for dose in v.not_administered)
                if arms is not None:
                    kit_arm = _guarded(arms[1].get(v.kit_number or "", "")) if v.kit_number else ""
                    for row in rows[start:]:
                        row += [arm, kit_arm]
            for u in s.unblindings:
                rows.append([code, site, number, "emergency unblinding", "", "", "", "", _at(u.at, zone),
                             self._same(u.reason_code)])
                if arms is not None:
                    rows[-1] += [arm, ""]
            if arms is not None:
                rows[first] += [arm, ""]
        return rows


def _at(moment: datetime | None, zone: ZoneInfo) -> str:
    """clock.local_text's form ('2026-12-06 09:44:00 +01:00'), for a time in the site's zone."""
    if moment is None:
        return ""
    text = moment.astimezone(zone).isoformat(sep=" ", timespec="seconds")
    return f"{text[:19]} {text[19:]}"


def csv_chunks(study: Study, pages: Iterable[list[Subject]], arms: Arms | None = None) -> Iterator[bytes]:
    """The CSV in pieces: the header, then one piece per page of subjects (spreadsheet.csv_text's
    text, written a page at a time)."""
    header = COLUMNS + (UNBLINDED_COLUMNS if arms is not None else ())
    yield spreadsheet.csv_text(header, []).encode()
    rows = _Rows(study.code, arms)
    for page in pages:
        out = io.StringIO()
        csv.writer(out).writerows(rows.page(page))
        yield out.getvalue().encode()


def csv_text(events: TrialEvents, arms: Arms | None = None) -> str:
    """The whole CSV at once."""
    return b"".join(csv_chunks(events.study, [events.subjects], arms)).decode()
