"""CSV for people who open it in a spreadsheet: a cell that starts like a formula is written as text.

Excel, LibreOffice and Google Sheets run a cell that begins with = + - @ (and, in some, a tab or a
carriage return) as a formula, so a participant number or a free text imported from elsewhere could
compute, or call out, when a statistician opens the export. Such a cell is prefixed with a single
quote, which every spreadsheet reads as "this is text" (the OWASP advice for CSV injection).
A number the code itself holds (an int, a float or a Decimal: a count, a temperature of −150) is
written as the number it is, a minus sign and all: only text can carry a formula, and a value typed
by a person reaches the export as text, so "-2+3" in a reason is still neutralised.
Every CSV export goes through `csv_text`, so this is the one place the rule lives.
A time is written as on the pages, in the site's zone with its offset (to the second: an export is a record).
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from . import clock

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: object) -> str:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool) and _finite(value):
        return str(value)  # a number, not text: "-150" cannot run anything
    text = "" if value is None else clock.local_text(value) if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _finite(value: int | float | Decimal) -> bool:
    # "-inf" and "-NaN" are written as text (and so neutralised): no spreadsheet reads them as numbers.
    if isinstance(value, int):
        return True
    return value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([cell(name) for name in header])
    writer.writerows([cell(value) for value in row] for row in rows)
    return out.getvalue()
