"""Input parsing shared by every form and API model: text, dates, numbers.

One rule each, so that a refusal reads the same wherever the value was typed, names the field,
and is raised before anything is written. Values may arrive as typed strings (forms, CSV) or as
already-typed objects (the JSON API, the demo); both go through the same checks.
"""
from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from . import clock
from .errors import InvalidInput, NotFound

# The largest id either engine stores (a signed 64-bit integer): a larger one names no row, and
# asking the database for it overflows (PostgreSQL) or raises (SQLite) instead of finding nothing.
MAX_DB_ID = 2**63 - 1
# Nothing cellbench records happened before it went to work: a year-1 or 1970 time is a typing slip
# or a default, not a harvest. Recorded times may run a little ahead of the server's clock (a site
# in another zone, a clock a few minutes fast), not more.
EARLIEST = date(2000, 1, 1)
AHEAD = timedelta(days=1)
# Expiries and calibration due dates are planned, but not beyond this.
YEARS_AHEAD = 10
# Temperatures anywhere in the cold chain: not below absolute zero, not hotter than boiling water.
TEMPERATURE_C = (-273.15, 100.0)
# Longer than any number a person types or an instrument reports: refused before it is converted,
# so a 401-digit "number" never reaches float() or an integer comparison.
_NUMBER_LENGTH = 40
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_WHOLE = re.compile(r"[+-]?[0-9]+")


def plain_decimal(typed: str) -> bool:
    """Whether text is a decimal number as cellbench reads one: ASCII digits, a point, an exponent;
    short enough to convert. Python's float() would also take "1_00", "١٢" and " nan "."""
    return len(typed) <= _NUMBER_LENGTH and _DECIMAL.fullmatch(typed) is not None


def huge(value: int | float) -> bool:
    """Whether an already-typed number (from JSON) is beyond anything measured: math.isfinite()
    itself overflows on a 401-digit integer."""
    return (isinstance(value, int) and abs(value) >= 10**_NUMBER_LENGTH) or not math.isfinite(value)


def db_id(value: object, field: str, what: str = "record") -> int:
    """An id typed or sent for a lookup: ASCII digits naming a row the database could hold; any other
    id names nothing, so it is 'not found' (404) rather than bad input or an overflow."""
    typed = ("" if value is None or isinstance(value, bool) else str(value)).strip()
    if not (typed.isascii() and typed.isdigit() and len(typed) <= 19 and 1 <= int(typed) <= MAX_DB_ID):
        raise NotFound(f"There is no {what} '{typed[:20]}'.", field=field)
    return int(typed)


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
    """A calendar date, typed as YYYY-MM-DD (a datetime gives its date), from 2000 to ten years ahead:
    no date cellbench records or plans lies outside that."""
    if isinstance(value, datetime):
        result = value.date()
    elif isinstance(value, date):
        result = value
    else:
        typed = (value or "").strip()
        if not typed:
            raise InvalidInput(f"The {what} is required (YYYY-MM-DD).", field=field)
        try:
            result = date.fromisoformat(typed)
        except ValueError:
            raise InvalidInput(f"The {what} '{typed[:40]}' is not a date (YYYY-MM-DD).", field=field) from None
    if result < EARLIEST:
        raise InvalidInput(f"The {what} cannot be before {EARLIEST.isoformat()}.", field=field)
    if result > _years_ahead():
        raise InvalidInput(f"The {what} cannot be more than {YEARS_AHEAD} years ahead.", field=field)
    return result


def past_day(value: date | str | None, field: str, what: str) -> date:
    """A date on which something happened (a consent, a donation, a sample, a destruction): not in the future."""
    result = day(value, field, what)
    if result > clock.today() + AHEAD:
        raise InvalidInput(f"The {what} cannot be in the future.", field=field)
    return result


def expiry(value: date | str | None, field: str = "expiry", what: str = "expiry date") -> date:
    """An expiry date: at most ten years ahead (no material or product here keeps longer)."""
    return day(value, field, what)


def calibration_due(value: date | str | None, field: str = "calibration_due",
                    what: str = "calibration due date") -> date:
    """When an instrument's calibration falls due: at most ten years ahead."""
    return day(value, field, what)


def _years_ahead() -> date:
    today = clock.today()
    return today.replace(year=today.year + YEARS_AHEAD, day=28 if (today.month, today.day) == (2, 29) else today.day)


def temperature(value: object, field: str, what: str) -> float:
    """A temperature in °C measured anywhere in the cold chain: a finite number from absolute zero to 100 °C."""
    return number(value, field, what, minimum=TEMPERATURE_C[0], maximum=TEMPERATURE_C[1])


def number(value: object, field: str, what: str, *, minimum: float | None = None,
           maximum: float | None = None) -> float:
    """A finite decimal number ("1.5" or "1,5"), within the bounds when given."""
    if isinstance(value, bool):
        raise InvalidInput(f"The {what} is a number, not true or false.", field=field)
    if isinstance(value, int | float) and huge(value):  # before str(): no 4,300-digit work
        raise InvalidInput(f"The {what} must be a finite number of sensible size.", field=field)
    typed = ("" if value is None else str(value)).strip().replace(",", ".")
    if not typed:
        raise InvalidInput(f"The {what} is required.", field=field)
    if typed.lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity"):
        raise InvalidInput(f"The {what} must be a finite number.", field=field)
    if len(typed) > _NUMBER_LENGTH:
        raise InvalidInput(f"The {what} is at most {_NUMBER_LENGTH} characters.", field=field)
    if not plain_decimal(typed):  # ASCII digits only: no "1_00", no other scripts' digits
        raise InvalidInput(f"The {what} '{typed[:40]}' is not a number.", field=field)
    result = float(typed)
    if not math.isfinite(result):
        raise InvalidInput(f"The {what} must be a finite number.", field=field)
    if minimum is not None and result < minimum:
        raise InvalidInput(f"The {what} is at least {minimum:g}.", field=field)
    if maximum is not None and result > maximum:
        raise InvalidInput(f"The {what} is at most {maximum:g}.", field=field)
    return result


def whole(value: object, field: str, what: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """A whole number in ASCII digits, within the bounds when given."""
    typed = ("" if value is None or isinstance(value, bool) else str(value)).strip()
    if not _WHOLE.fullmatch(typed) or len(typed) > _NUMBER_LENGTH:
        raise InvalidInput(f"Give the {what} as a whole number.", field=field)
    result = int(typed)
    if minimum is not None and result < minimum:
        raise InvalidInput(f"The {what} is at least {minimum}.", field=field)
    if maximum is not None and result > maximum:
        raise InvalidInput(f"The {what} is at most {maximum}.", field=field)
    if abs(result) > MAX_DB_ID:  # nothing counted or numbered here is larger, and no database column holds it
        raise InvalidInput(f"The {what} is too large.", field=field)
    return result


def seen_version(value: object) -> int | None:
    """The row version a form was rendered with, None when it sent none; a version no row can have
    reads as none too, and the state check then decides (no overflow on the conditional update)."""
    typed = ("" if value is None else str(value)).strip()
    return int(typed) if typed.isascii() and typed.isdigit() and len(typed) <= 19 and int(typed) <= MAX_DB_ID else None


def moment(value: datetime | str | None, field: str, what: str, where: ZoneInfo | None = None) -> datetime:
    """A date and time as typed. 'YYYY-MM-DD HH:MM' is a time where the person is (the site's zone,
    or the bench's), as every time on the pages is shown; an ISO time with its offset or Z is taken
    as it says. Stored as UTC by the caller. It is something that happened: from 2000 on and not
    more than a day ahead of the server's clock (recorded_moment)."""
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
    moment_ = moment_ if moment_.tzinfo is not None else moment_.replace(tzinfo=where or clock.zone())
    return recorded_moment(moment_, field, what)


def recorded_moment(value: datetime, field: str, what: str) -> datetime:
    """A time at which something was done or measured (a harvest, a receipt, a logger reading):
    not before 2000-01-01 and not more than a day ahead. An offset that carries the time past the
    calendar's ends (year 1 at +14:00) is refused like any other implausible time."""
    try:
        in_utc = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        raise InvalidInput(f"The {what} is not a plausible date and time.", field=field) from None
    if in_utc.date() < EARLIEST:
        raise InvalidInput(f"The {what} cannot be before {EARLIEST.isoformat()}.", field=field)
    if in_utc > clock.utcnow() + AHEAD:
        raise InvalidInput(f"The {what} cannot be in the future.", field=field)
    return value
