"""Input parsing shared by every form and API model: text, dates, numbers.

One rule each, so that a refusal reads the same wherever the value was typed, names the field,
and is raised before anything is written. Values may arrive as typed strings (forms, CSV) or as
already-typed objects (the JSON API, the demo); both go through the same checks.
"""
from __future__ import annotations

import math
from datetime import date, datetime
from zoneinfo import ZoneInfo

from . import clock
from .errors import InvalidInput


def text(value: object, field: str, what: str, max_length: int) -> str:
    """Required text, trimmed, at most `max_length` characters."""
    result = optional_text(value, field, what, max_length)
    if not result:
        raise InvalidInput(f"The {what} is required.", field=field)
    return result


def optional_text(value: object, field: str, what: str, max_length: int) -> str:
    """Text that may be left empty (""), trimmed, at most `max_length` characters."""
    result = ("" if value is None else str(value)).strip()
    if len(result) > max_length:
        raise InvalidInput(f"The {what} is at most {max_length} characters.", field=field)
    return result


def optional_email(value: object, field: str = "email") -> str | None:
    """An email address, or None when left empty: one @, no spaces, a dot in the domain."""
    result = optional_text(value, field, "email address", 200)
    if not result:
        return None
    local, at, domain = result.rpartition("@")
    if not at or not local or "." not in domain.strip(".") or any(c.isspace() for c in result) or "," in result:
        raise InvalidInput(f"'{result}' is not an email address (name@example.org).", field=field)
    return result


def day(value: date | str | None, field: str, what: str) -> date:
    """A calendar date, typed as YYYY-MM-DD (a datetime gives its date)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    typed = (value or "").strip()
    if not typed:
        raise InvalidInput(f"The {what} is required (YYYY-MM-DD).", field=field)
    try:
        return date.fromisoformat(typed)
    except ValueError:
        raise InvalidInput(f"The {what} '{typed[:40]}' is not a date (YYYY-MM-DD).", field=field) from None


def number(value: object, field: str, what: str, *, minimum: float | None = None,
           maximum: float | None = None) -> float:
    """A finite decimal number ("1.5" or "1,5"), within the bounds when given."""
    typed = ("" if value is None else str(value)).strip().replace(",", ".")
    if not typed:
        raise InvalidInput(f"The {what} is required.", field=field)
    if not typed.isascii() or "_" in typed:
        raise InvalidInput(f"The {what} '{typed[:40]}' is not a number.", field=field)
    try:
        result = float(typed)
    except (ValueError, OverflowError):
        raise InvalidInput(f"The {what} '{typed[:40]}' is not a number.", field=field) from None
    if not math.isfinite(result):
        raise InvalidInput(f"The {what} must be a finite number.", field=field)
    if minimum is not None and result < minimum:
        raise InvalidInput(f"The {what} is at least {minimum:g}.", field=field)
    if maximum is not None and result > maximum:
        raise InvalidInput(f"The {what} is at most {maximum:g}.", field=field)
    return result


def whole(value: object, field: str, what: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """A whole number in ASCII digits, within the bounds when given."""
    typed = ("" if value is None else str(value)).strip()
    if not typed.lstrip("-").isdigit() or not typed.isascii():
        raise InvalidInput(f"Give the {what} as a whole number.", field=field)
    result = int(typed)
    if minimum is not None and result < minimum:
        raise InvalidInput(f"The {what} is at least {minimum}.", field=field)
    if maximum is not None and result > maximum:
        raise InvalidInput(f"The {what} is at most {maximum}.", field=field)
    return result


def moment(value: datetime | str | None, field: str, what: str, where: ZoneInfo | None = None) -> datetime:
    """A date and time as typed. 'YYYY-MM-DD HH:MM' is a time where the person is (the site's zone,
    or the bench's), as every time on the pages is shown; an ISO time with its offset or Z is taken
    as it says. Stored as UTC by the caller."""
    if isinstance(value, datetime):
        moment_ = value
    else:
        typed = (value or "").strip()
        if not typed:
            raise InvalidInput(f"The {what} is required (YYYY-MM-DD HH:MM).", field=field)
        try:
            moment_ = datetime.fromisoformat(typed.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"The {what} '{typed[:40]}' is not a date and time (YYYY-MM-DD HH:MM).",
                               field=field) from None
    return moment_ if moment_.tzinfo is not None else moment_.replace(tzinfo=where or clock.zone())
