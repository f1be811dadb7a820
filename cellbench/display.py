"""Stored text as a person reads it: times in the site's zone with its offset, keys in plain words.

The record keeps what was written (ISO 8601 UTC times, field keys such as `storage_transfer[3].placed_at`,
JSON summaries of what an event changed); pages and CSV exports show it through these functions, so a
stored "2026-12-05T09:44+00:00" reads "2026-12-05 10:44 +01:00" beside every other time, and a key reads
"storage transfer 3 · placed at". Nothing here changes what is stored or what the API returns.
"""
from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from . import clock

# A stored moment: a date, a time to the minute or finer, and a zone (Z or an offset).
_ISO_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})")
_SNAKE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")

# Abbreviations a key spells in lower case, as people write them.
_ABBREVIATIONS = {
    "qc": "QC", "qa": "QA", "qp": "QP", "id": "ID", "ids": "IDs", "hla": "HLA", "dr": "DR", "hiv": "HIV",
    "hbv": "HBV", "hcv": "HCV", "hbc": "HBc", "hbsag": "HBsAg", "htlv": "HTLV", "nat": "NAT", "ml": "mL",
    "utc": "UTC", "asc": "ASC", "coa": "CoA", "csv": "CSV", "dmso": "DMSO", "ln2": "LN2", "eu": "EU",
    "ct": "CT", "din": "DIN", "isbt128": "ISBT 128", "url": "URL", "pdf": "PDF",
}


def moment(value: datetime | None, where: ZoneInfo | None = None) -> str:
    """The one format for a time on a page: '2026-12-06 09:44 +01:00'."""
    return clock.local_text(value, where, clock.MINUTES)


def moment_text(text: str, where: ZoneInfo | None = None) -> str:
    """A stored ISO time ('2026-12-05T09:44:00.123Z', '2026-12-05T09:44+00:00') in site time; other text as it is."""
    stripped = text.strip()
    if not _ISO_MOMENT.fullmatch(stripped):
        return text
    try:
        parsed = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment(parsed, where)


def times_in(text: str, where: ZoneInfo | None = None) -> str:
    """Every stored ISO time inside a longer text, in site time (a value with its unit, a summary)."""
    return _ISO_MOMENT.sub(lambda m: moment_text(m.group(), where), text)


def words(key: str | None) -> str:
    """A key in plain words: 'qc_result' -> 'QC result', 'storage_transfer[3].placed_at' ->
    'storage transfer 3 · placed at', 'test:anti_hbc' -> 'test: anti HBc'."""
    if not key:
        return ""
    text = re.sub(r"\[(\d+)\]", r" \1", str(key))
    text = text.replace(".", " · ").replace(":", ": ")
    return " ".join(_ABBREVIATIONS.get(part, part) for part in text.replace("_", " ").split(" ") if part)


def first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def label(key: str | None) -> str:
    """A key as a heading or label: 'sample_date' -> 'Sample date'."""
    return first_upper(words(key))


def _plain(value: Any, where: ZoneInfo | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return "; ".join(f"{words(k)}: {_plain(v, where)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_plain(v, where) for v in value) if value else "none"
    if isinstance(value, datetime):
        return moment(value, where)
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    if _SNAKE.fullmatch(text):  # an enum value ('in_process'), not typed text
        return words(text)
    return times_in(text, where)


def value_text(stored: str | None, where: ZoneInfo | None = None) -> str:
    """An audit event's old or new value as a person reads it. A JSON summary becomes 'key: value; ...'
    in words, a stored time reads in site time, an enum value in words; typed text stays as typed."""
    if stored is None:
        return ""
    text = stored.strip()
    if text[:1] in "{[":
        try:
            return _plain(json.loads(text), where)
        except ValueError:
            pass
    # Keys and codes the system wrote into a value ('vial_label lot VIA-2611') read in words; a typed
    # identifier keeps its case and so its underscores ('LOT_A1').
    return _SNAKE.sub(lambda m: words(m.group()), times_in(stored, where))
