"""The temperature record read at receipt (a logger file, the logger's minimum and maximum, or
none) and the receipt checks: each a small rule that says why the shipment must be held, or None.

The limits are the study's presentation (`cold_chain`), which both arms share: a shipment is judged
by what its study's kits are, never by one arm's specification."""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session

from .. import studies
from ..errors import InvalidInput
from ..models import Study

MAX_LOGGER_LINES = 100_000
PLAUSIBLE_C = (-273.15, 80.0)

LOGGER_SOURCES = ("csv", "manual", "missing")


@dataclass(frozen=True)
class ColdChain:
    """How a study's kits are stored and travel, from its presentation: the same for both arms."""

    storage: str  # e.g. "≤ −150 °C, vapour-phase liquid nitrogen"
    storage_max_c: float
    transport: str
    transport_max_c: float  # above this in transit the shipment is held
    hold: timedelta  # the shipper's validated hold time; a longer transit is not covered


def cold_chain(study: Study) -> ColdChain:
    shared = studies.definition(study).presentation
    return ColdChain(shared.storage, shared.storage_max_c, shared.transport, shared.transport_max_c,
                     timedelta(days=shared.transport_hold_days))


def cold_chain_of(session: Session, study_id: int | None) -> ColdChain:
    """The cold chain of the study a shipment or kit belongs to."""
    return cold_chain(studies.by_id(session, study_id))


@dataclass
class LoggerRecord:
    """The temperature record read at receipt: a logger file, min/max typed from the logger, or none."""

    source: str
    minimum: float | None = None
    maximum: float | None = None
    readings: list[tuple[datetime, float]] = field(default_factory=list)
    outside_transit: int = 0  # readings before dispatch or after receipt, kept but not judged


def _temperature(text_: str | None) -> float | None:
    cleaned = (text_ or "").strip().replace("\u2212", "-").replace("°C", "").replace("°", "").strip()
    if "," in cleaned and "." not in cleaned:
        cleaned = cleaned.replace(",", ".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) and PLAUSIBLE_C[0] <= value <= PLAUSIBLE_C[1] else None


def _moment(text_: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text_.strip())
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def _show(cell: str) -> str:
    cell = cell.strip()
    return cell if len(cell) <= 40 else cell[:37] + "..."


def parse_logger_csv(content: str | bytes | None) -> list[tuple[datetime, float]]:
    """A logger export, one reading a line: `timestamp,temperature` (ISO 8601 with its UTC offset,
    degrees Celsius). An optional header line; ';' also accepted as the separator (then ',' may be
    the decimal mark). Any bad line is refused by its number; nothing is stored from a bad file."""
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput("The logger file is not UTF-8 text. Export it as CSV.", field="logger_csv") from None
    content = (content or "").lstrip("\ufeff")
    if not content.strip():
        raise InvalidInput("The logger file is empty.", field="logger_csv")
    first = next(line for line in content.splitlines() if line.strip())
    delimiter = ";" if ";" in first else ","
    readings: list[tuple[datetime, float]] = []
    seen_first = False
    reader = csv.reader(io.StringIO(content), delimiter=delimiter)
    try:
        for cells in reader:
            line = reader.line_num
            if line > MAX_LOGGER_LINES:
                raise InvalidInput(f"The logger file has more than {MAX_LOGGER_LINES} lines.", field="logger_csv")
            if not any(c.strip() for c in cells):
                continue
            is_first, seen_first = not seen_first, True
            if is_first and cells and _moment(cells[0]) is None and not cells[0].strip()[:1].isdigit():
                continue  # a header line
            if len(cells) != 2:
                raise InvalidInput(f"Line {line}: expected two columns (timestamp, temperature); found {len(cells)}.",
                                   field="logger_csv")
            at = _moment(cells[0])
            if at is None:
                raise InvalidInput(f"Line {line}: '{_show(cells[0])}' is not a date and time with its UTC offset "
                                   "(for example 2026-03-01T08:00:00Z).", field="logger_csv")
            value = _temperature(cells[1])
            if value is None:
                raise InvalidInput(f"Line {line}: '{_show(cells[1])}' is not a temperature in °C.", field="logger_csv")
            if readings and at < readings[-1][0]:
                raise InvalidInput(f"Line {line}: the time goes back before the line above it.", field="logger_csv")
            readings.append((at, value))
    except csv.Error as error:
        raise InvalidInput(f"Line {reader.line_num}: {error}.", field="logger_csv") from None
    if not readings:
        raise InvalidInput("The logger file has no readings.", field="logger_csv")
    return readings


def logger_record(source: str | None, *, csv_content: str | bytes | None = None, minimum: str | float | None = None,
                  maximum: str | float | None = None) -> LoggerRecord:
    """Validate what the pharmacist gives as the shipment's temperature record."""
    source = (source or "").strip().lower()
    if source not in LOGGER_SOURCES:
        raise InvalidInput("Say how the logger record comes: uploaded file, minimum and maximum read from the "
                           "logger, or missing.", field="logger_source")
    if source == "missing":
        return LoggerRecord("missing")
    if source == "csv":
        return LoggerRecord("csv", readings=parse_logger_csv(csv_content))
    low = _temperature(str(minimum)) if minimum is not None else None
    high = _temperature(str(maximum)) if maximum is not None else None
    if low is None:
        raise InvalidInput("Enter the logger's minimum temperature in °C.", field="logger_min")
    if high is None:
        raise InvalidInput("Enter the logger's maximum temperature in °C.", field="logger_max")
    if low > high:
        raise InvalidInput("The minimum is above the maximum.", field="logger_min")
    return LoggerRecord("manual", minimum=low, maximum=high)


def judge_transit(logger: LoggerRecord, dispatched: datetime, received: datetime) -> None:
    """A logger file's readings count from dispatch to receipt: a logger started at room
    temperature before it went into the shipper is not an excursion."""
    if logger.source != "csv":
        return
    inside = [value for at, value in logger.readings if dispatched <= at <= received]
    logger.outside_transit = len(logger.readings) - len(inside)
    if inside:
        logger.minimum, logger.maximum = min(inside), max(inside)


# The receipt checks: each a small rule that says why the shipment must be held, or None.
def seal_broken(seal_intact: bool, logger: LoggerRecord, minutes: int, chain: ColdChain) -> str | None:
    return None if seal_intact else "the seal was not intact on arrival"


def no_temperature_record(seal_intact: bool, logger: LoggerRecord, minutes: int, chain: ColdChain) -> str | None:
    if logger.source == "missing":
        return "no temperature record: the logger record is missing"
    if logger.maximum is None:
        return "the logger file has no reading between dispatch and receipt"
    return None


def temperature_excursion(seal_intact: bool, logger: LoggerRecord, minutes: int, chain: ColdChain) -> str | None:
    if logger.maximum is not None and logger.maximum > chain.transport_max_c:
        return f"the temperature reached {logger.maximum:g} °C, above the {chain.transport_max_c:g} °C limit"
    return None


def transit_beyond_hold_time(seal_intact: bool, logger: LoggerRecord, minutes: int, chain: ColdChain) -> str | None:
    hold = int(chain.hold.total_seconds() // 60)
    if minutes > hold:
        return f"the transit took {minutes} minutes, beyond the dry shipper's validated {hold} minutes"
    return None


RECEIPT_CHECKS = (seal_broken, no_temperature_record, temperature_excursion, transit_beyond_hold_time)
