"""Judging values against a specification: a QC result against its acceptance criterion (evaluate,
the one function that says pass or out of specification), a batch-record value against its limits,
and the arithmetic of formulation and expansion."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any

from .. import clock, inputs
from ..errors import InvalidInput
from .model import CS10_DMSO_PERCENT, QUALITATIVE, Criterion, Parameter


class Verdict(str, Enum):
    PASS = "pass"  # noqa: S105  # a verdict, not a password
    OOS = "oos"  # out of specification


class LimitCheck(str, Enum):
    WITHIN = "within"
    OUT_OF_LIMITS = "out_of_limits"


def _within(x: float, low: float | None, high: float | None, low_inclusive: bool = True,
            high_inclusive: bool = True) -> bool:
    if low is not None and (x < low or (x == low and not low_inclusive)):
        return False
    return high is None or x < high or (x == high and high_inclusive)


def _number(value: object, what: str, *, from_text: bool) -> float:
    if from_text and isinstance(value, str):
        if "," in value:  # "1,5" is 1.5 in Danish and 15 elsewhere: refuse to guess
            raise ValueError(f"{what}: use a decimal point, not a comma (got {value!r})")
        if value.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
            raise ValueError(f"{what}: expected a finite number, got {value[:40]!r}")
        if not inputs.plain_decimal(value.strip()):  # float() alone takes "1_00" and "١٢"
            raise ValueError(f"{what}: expected a number, got {value[:40]!r}")
        value = float(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what}: expected a number, got {type(value).__name__} {str(value)[:40]!r}")
    if inputs.huge(value):
        raise ValueError(f"{what}: expected a finite number, got {value!r}")
    return float(value)


def evaluate(criterion: Criterion, value: object) -> Verdict:
    """Judge one QC result: a number for a range, the result word for a qualitative criterion."""
    if criterion.kind == "range":
        x = _number(value, "result", from_text=False)
        ok = _within(x, criterion.min, criterion.max, criterion.min_inclusive, criterion.max_inclusive)
        return Verdict.PASS if ok else Verdict.OOS
    passing, failing = QUALITATIVE[criterion.kind]
    if not isinstance(value, str):
        raise ValueError(f"result: expected the text '{passing}' or '{failing}', got {type(value).__name__} {value!r}")
    word = " ".join(value.replace("_", " ").replace("-", " ").lower().split())
    if word == passing:
        return Verdict.PASS
    if word == failing:
        return Verdict.OOS
    raise ValueError(f"result: expected '{passing}' or '{failing}', got {value!r}")


def parse_value(parameter: Parameter, value: object) -> Any:
    """The typed value of a batch-record entry (None if left empty and optional); ValueError if invalid."""
    what = parameter.code
    if value is None or (isinstance(value, str) and not value.strip()):
        if parameter.required:
            raise ValueError(f"{what}: a value is required")
        return None
    kind = parameter.type
    if kind == "number":
        return _number(value, what, from_text=True)
    if kind == "boolean":
        answer = {"true": True, "yes": True, "false": False, "no": False}.get(str(value).strip().lower())
        if isinstance(value, bool) or (isinstance(value, str) and answer is not None):
            return answer
        raise ValueError(f"{what}: expected yes or no, got {value!r}")
    if kind in ("datetime", "date"):
        return _moment(value, what, with_time=kind == "datetime")
    if not isinstance(value, str):
        raise ValueError(f"{what}: expected text, got {type(value).__name__} {value!r}")
    if kind == "choice" and value not in (parameter.choices or []):
        raise ValueError(f"{what}: expected one of {', '.join(map(repr, parameter.choices or []))}, got {value!r}")
    if parameter.pattern and not re.fullmatch(parameter.pattern, value):
        raise ValueError(f"{what}: {value!r} does not have the expected format")
    return value  # text is kept exactly as entered: identifiers are never "corrected"


def _moment(value: object, what: str, *, with_time: bool) -> date | datetime:
    expected = "an ISO date and time" if with_time else "an ISO date"
    try:
        if isinstance(value, str):
            value = (datetime if with_time else date).fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{what}: expected {expected}, got {value!r}") from None
    if not isinstance(value, date) or isinstance(value, datetime) != with_time:
        raise ValueError(f"{what}: expected {expected}, got {type(value).__name__} {value!r}")
    if isinstance(value, datetime) and value.utcoffset() is None:  # typed as shown: the bench's time
        value = value.replace(tzinfo=clock.zone())
    try:  # a harvest in year 1 or 1970 is a slip, not a record
        if isinstance(value, datetime):
            return inputs.recorded_moment(value, "value", what)
        return inputs.day(value, "value", what)
    except InvalidInput as refusal:
        raise ValueError(f"{what}: {refusal.message}") from None


def check_limits(parameter: Parameter, value: object) -> LimitCheck:
    """Whether a batch-step value is within the master batch record's limits (a deviation if not)."""
    parsed = parse_value(parameter, value)
    if parsed is not None and parameter.type == "number":
        within = _within(parsed, parameter.min, parameter.max)
    else:  # only booleans with an expected answer have a "limit" besides numbers
        within = parsed is None or parameter.expected is None or parsed == parameter.expected
    return LimitCheck.WITHIN if within else LimitCheck.OUT_OF_LIMITS


# ----------------------------------------------------------------------------------------- arithmetic

@dataclass(frozen=True)
class Formulation:
    final_volume_ml: float
    cs10_volume_ml: float
    final_dmso_percent: float


def formulate_in_cs10(total_viable_cells: float, target_cells_per_ml: float, *, residual_volume_ml: float = 0.0,
                      cs10_dmso_percent: float = CS10_DMSO_PERCENT) -> Formulation:
    """Volumes for resuspending washed cells in CryoStor CS10 at the target concentration.

    Assumes the pellet is resuspended directly in CS10 after the last wash, so the only other liquid is
    the DMSO-free carrier left over the pellet (residual_volume_ml), which dilutes the DMSO. The volume of
    the cells themselves is ignored, as in the bench calculation; the QC count confirms the concentration.
    Cells and concentration may be in any one scale (cells and cells/mL, or 10^6 cells and 10^6 cells/mL).
    """
    cells = _number(total_viable_cells, "total_viable_cells", from_text=False)
    target = _number(target_cells_per_ml, "target_cells_per_ml", from_text=False)
    residual = _number(residual_volume_ml, "residual_volume_ml", from_text=False)
    if cells <= 0 or target <= 0 or residual < 0:
        raise ValueError("cells and target concentration must be positive and the residual volume not negative")
    final = cells / target
    cs10 = final - residual
    if cs10 <= 0:
        raise ValueError(f"the residual volume ({residual:g} mL) already fills the final volume ({final:.2f} mL)")
    return Formulation(final, cs10, cs10_dmso_percent * cs10 / final)


def population_doublings(cells_seeded: float, cells_harvested: float) -> float:
    seeded = _number(cells_seeded, "cells_seeded", from_text=False)
    harvested = _number(cells_harvested, "cells_harvested", from_text=False)
    if seeded <= 0 or harvested <= 0:
        raise ValueError("cells seeded and harvested must both be positive")
    return math.log2(harvested / seeded)
