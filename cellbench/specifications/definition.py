"""Product specifications: versioned TOML files at specs/<product code>/v<version>.toml.

This module is pure: it parses and checks the files and does the arithmetic and limit checks the batch
record and QC need. Persisting a version and QA's signature over it live elsewhere and build on
Specification.content_for_signature().
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, PrivateAttr, ValidationError, model_validator

from ..config import shipped

CS10_DMSO_PERCENT = 10.0

# Results a qualitative criterion understands: (the result that passes, the result that is OOS).
# Anything else is refused rather than read as OOS, so a typo cannot open an OOS investigation.
QUALITATIVE = {
    "negative": ("negative", "positive"),
    "not_detected": ("not detected", "detected"),
    "conforms": ("conforms", "does not conform"),
    "no_growth": ("no growth", "growth"),
}

# Values cellbench calculates instead of the operator typing them, and what from.
COMPUTED = {
    "total_viable_cells": "viable_concentration × suspension_volume of the same entry",
    "population_doublings": "log2(cells_harvested / cells_seeded) of the same entry (population_doublings())",
    "formulation.final_volume": "count.total_viable_cells ÷ product.dose.target_concentration_per_ml "
                                "(formulate_in_cs10(); mind 10^6 cells against cells/mL)",
    "formulation.cs10_volume": "final volume − residual_volume (formulate_in_cs10())",
    "formulation.final_dmso": "10 % × CS10 volume ÷ final volume (formulate_in_cs10())",
    "dmso_exposure_minutes": "minutes from formulation.cs10_added_at to freeze_started_at",
}


class SpecificationError(ValueError):
    """A specification file that cannot be used: which file, where in it, and what is wrong."""

    def __init__(self, file: str | Path, path: str, message: str, *, line: int | None = None, context: str = ""):
        self.file, self.path, self.message, self.line = str(file), path, message, line
        where = self.file + (f": {path}" if path else "") + (f" ({context})" if context else "")
        super().__init__(f"{where}: {message}")


class _Strict(BaseModel):
    # strict: TOML has real types, so "yes" for a boolean or "70" for a limit is a mistake to report,
    # not to coerce. forbid: a misspelt key (max_inclusve) must not be silently ignored.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class Criterion(_Strict):
    kind: Literal["range", "negative", "not_detected", "conforms", "no_growth"]
    min: FiniteFloat | None = None
    max: FiniteFloat | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True
    text: str | None = None  # what "conforms" means, or a note on a range

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # acceptance = "negative" reads better in the file than acceptance = { kind = "negative" }
        return {"kind": data} if isinstance(data, str) else data

    def describe(self, unit: str | None = None) -> str:
        """The criterion as printed on a certificate of analysis, e.g. '< 70 IU/mL' or '20 – 30 %'."""
        if self.kind != "range":
            word = QUALITATIVE[self.kind][0].capitalize()
            return f"{word}: {self.text}" if self.text else word
        low = None if self.min is None else f"{'≥' if self.min_inclusive else '>'} {self.min:g}"
        high = None if self.max is None else f"{'≤' if self.max_inclusive else '<'} {self.max:g}"
        closed = low and high and self.min_inclusive and self.max_inclusive
        bounds = f"{self.min:g} – {self.max:g}" if closed else " and ".join(filter(None, (low, high)))
        return bounds + (f" {unit}" if unit else "")


class ReleaseTest(_Strict):
    code: Code
    name: str
    method: str
    unit: str | None = None
    stage: Literal["donor", "in_process", "final_product", "batch_record", "storage", "labelling", "stability"]
    acceptance: Criterion
    required_for_release: bool = True


class Parameter(_Strict):
    code: Code
    label: str
    type: Literal["number", "text", "choice", "boolean", "datetime", "date"]
    unit: str | None = None
    min: FiniteFloat | None = None  # limits are inclusive
    max: FiniteFloat | None = None
    choices: list[str] | None = None
    pattern: str | None = None  # text only; the whole value must match
    expected: bool | None = None  # boolean only; the other answer is out of limits
    required: bool = True
    computed: str | None = None  # a key of COMPUTED


class Item(_Strict):
    """A material or a piece of equipment the step needs; its lot or its calibration is recorded."""

    code: Code
    name: str
    required: bool = True


class Repeat(_Strict):
    label: str  # entries are shown as "<label> 1", "<label> 2", ...
    min: int = Field(1, ge=0)
    max: int | None = Field(None, ge=1)


class Step(_Strict):
    code: Code
    title: str
    instructions: str = ""
    verify: bool = False
    repeat: Repeat | None = None
    parameters: list[Parameter] = []
    materials: list[Item] = []
    equipment: list[Item] = []


class Dose(_Strict):
    unit: str
    units_per_gland: int = Field(ge=1)
    fill_volume_ml: FiniteFloat = Field(gt=0)
    volume_per_gland_ml: FiniteFloat = Field(gt=0)
    viable_cells_per_gland: FiniteFloat | None = Field(None, gt=0)
    target_concentration_per_ml: FiniteFloat | None = Field(None, gt=0)


class Product(_Strict):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: int = Field(ge=1)
    kind: Literal["asc", "placebo"]
    name: str
    storage: str
    expiry_basis: Literal["freeze_date", "supplier_expiry"]
    shelf_life_frozen_months: int | None = Field(None, ge=1)
    use_window_minutes: int = Field(60, ge=1)
    change_note: str | None = None
    dose: Dose


class Specification(_Strict):
    product: Product
    tests: list[ReleaseTest] = Field(min_length=1)
    steps: list[Step] = Field(min_length=1)
    _file: str | None = PrivateAttr(None)
    _sha256: str | None = PrivateAttr(None)

    @property
    def file(self) -> str | None:
        return self._file

    @property
    def sha256(self) -> str | None:
        """SHA-256 of the raw file bytes, comments and layout included."""
        return self._sha256

    def content_for_signature(self) -> dict[str, Any]:
        """What QA signs: the parsed content (defaults filled in) and the hash of the exact file."""
        return {
            "product": self.product.code,
            "version": self.product.version,
            "file_sha256": self._sha256,
            "content": self.model_dump(mode="json"),
        }

    def content_hash(self) -> str:
        canonical = json.dumps(self.content_for_signature(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------------- loading

STUDIES_DIR = "studies"  # specs/studies/ holds study definitions (studies.py), not product versions
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.toml$")
_SINGULAR = {"tests": "test", "steps": "step", "parameters": "parameter", "materials": "material"}


def specs_root() -> Path:
    return shipped("specs")


def load_spec_file(path: str | Path) -> Specification:
    path = Path(path)
    named = _VERSION_FILE.match(path.name)
    if not named:
        raise SpecificationError(path, "", "the file name must be v<version>.toml, e.g. v2.toml")
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as e:
        raise SpecificationError(path, "", f"cannot read the file: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise SpecificationError(path, "", f"not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        found = re.search(r"at line (\d+), column (\d+)", str(e))
        line = int(found.group(1)) if found else None
        where = f"line {line}, column {found.group(2)}" if found else ""
        reason = re.sub(r"\s*\(at line \d+, column \d+\)$", "", str(e))  # the path already says where
        raise SpecificationError(path, where, f"TOML syntax error: {reason}", line=line) from None
    try:
        spec = Specification.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        explained = {"missing": "required key is missing", "extra_forbidden": "unknown key (check the spelling)"}
        message = explained.get(first["type"], f"{first['msg']} (got {first['input']!r})")
        raise _error_at(path, data, first["loc"], message) from None
    violation = next(_rule_violations(spec, path, int(named.group(1))), None)
    if violation:
        raise _error_at(path, data, *violation)
    spec._file, spec._sha256 = str(path), hashlib.sha256(raw).hexdigest()
    return spec


def load_all(root: str | Path | None = None) -> list[Specification]:
    """Every version of every product under root (default specs_root()), sorted by product and version."""
    root = Path(root) if root is not None else specs_root()
    specs = [load_spec_file(p) for p in sorted(root.glob("*/*.toml")) if p.parent.name != STUDIES_DIR]
    specs.sort(key=lambda s: (s.product.code, s.product.version))
    latest = {s.product.code: s for s in specs}.values()  # sorted, so the last one per code wins
    for active in (s for s in latest if s.product.kind == "asc"):
        for placebo in (s for s in latest if s.product.kind == "placebo"):
            check_blinding_parity(active, placebo)
    return specs


def check_blinding_parity(active: Specification, placebo: Specification) -> None:
    """Refuse an active/placebo pair that differs in anything the blinded people at the site handle."""
    def seen_blinded(s: Specification) -> dict[str, Any]:
        return {"product.use_window_minutes": s.product.use_window_minutes,
                "product.dose.units_per_gland": s.product.dose.units_per_gland,
                "product.dose.volume_per_gland_ml": s.product.dose.volume_per_gland_ml}
    theirs = seen_blinded(active)
    for where, mine in seen_blinded(placebo).items():
        if mine != theirs[where]:
            raise SpecificationError(placebo.file or placebo.product.code, where,
                                     f"{mine} differs from {theirs[where]} in {active.file or active.product.code};"
                                     " active and placebo must match or the difference unblinds")


def _dotted(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _error_at(path: Path, data: Any, loc: tuple[str | int, ...], message: str) -> SpecificationError:
    # Name the codes along the path too: "steps[6]" is easy to miscount, "step 'formulation'" is not.
    names, node, container = [], data, None
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(part, int) and isinstance(node, dict) and isinstance(node.get("code"), str):
            names.append(f"{_SINGULAR.get(container, container)} '{node['code']}'")
        container = part
    return SpecificationError(path, _dotted(loc), message, context=", ".join(names))


_ONLY_FOR = {"unit": "number", "min": "number", "max": "number", "computed": "number",
             "choices": "choice", "pattern": "text", "expected": "boolean"}


def _rule_violations(spec: Specification, path: Path, file_version: int) -> Iterator[tuple[tuple, str]]:
    """Rules pydantic cannot express, as (location, message), in file order."""
    p = spec.product
    if p.code != path.parent.name:
        yield ("product", "code"), f"'{p.code}' does not match the folder name '{path.parent.name}'"
    if p.version != file_version:
        yield ("product", "version"), f"version {p.version} does not match the file name {path.name}"
    if p.expiry_basis == "freeze_date" and p.shelf_life_frozen_months is None:
        yield ("product", "shelf_life_frozen_months"), "required when expiry_basis is 'freeze_date'"
    if p.expiry_basis == "supplier_expiry" and p.shelf_life_frozen_months is not None:
        yield ("product", "shelf_life_frozen_months"), "must be absent when the supplier's expiry applies"
    for name in ("viable_cells_per_gland", "target_concentration_per_ml"):
        present = getattr(p.dose, name) is not None
        if p.kind == "asc" and not present:
            yield ("product", "dose", name), "required for an ASC product"
        if p.kind == "placebo" and present:
            yield ("product", "dose", name), "a placebo contains no cells"
    yield from _duplicates(("tests",), spec.tests)
    for i, test in enumerate(spec.tests):
        yield from _criterion_violations(("tests", i), test)
    yield from _duplicates(("steps",), spec.steps)
    first_name: dict[tuple[str, str], str] = {}
    for i, step in enumerate(spec.steps):
        if step.repeat and step.repeat.max is not None and step.repeat.min > step.repeat.max:
            yield ("steps", i, "repeat", "max"), f"max ({step.repeat.max}) is less than min ({step.repeat.min})"
        for kind in ("parameters", "materials", "equipment"):
            yield from _duplicates(("steps", i, kind), getattr(step, kind))
        for j, parameter in enumerate(step.parameters):
            yield from _parameter_violations(("steps", i, "parameters", j), parameter)
        for kind in ("materials", "equipment"):
            for j, item in enumerate(getattr(step, kind)):
                name = first_name.setdefault((kind, item.code), item.name)
                if name != item.name:
                    yield ("steps", i, kind, j, "name"), f"'{item.code}' is called '{name}' in an earlier step"


def _duplicates(at: tuple, items: list[Any]) -> Iterator[tuple[tuple, str]]:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.code in seen:
            yield (*at, i, "code"), f"duplicate code '{item.code}'"
        seen.add(item.code)


def _criterion_violations(at: tuple, test: ReleaseTest) -> Iterator[tuple[tuple, str]]:
    c, here = test.acceptance, (*at, "acceptance")
    if c.kind == "range":
        if c.min is None and c.max is None:
            yield here, "a range needs min, max or both"
        elif c.min is not None and c.max is not None:
            if c.min > c.max:
                yield (*here, "max"), f"max ({c.max:g}) is less than min ({c.min:g})"
            elif c.min == c.max and not (c.min_inclusive and c.max_inclusive):
                yield here, "the range is empty: nothing could pass"
        return
    stray = sorted({"min", "max", "min_inclusive", "max_inclusive"} & c.model_fields_set)
    if stray:
        yield (*here, stray[0]), f"limits belong to a 'range' criterion, not to '{c.kind}'"
    if test.unit is not None:
        yield (*at, "unit"), f"a unit belongs to a numeric range, not to '{c.kind}'"


def _parameter_violations(at: tuple, p: Parameter) -> Iterator[tuple[tuple, str]]:
    for name, only_type in _ONLY_FOR.items():
        if getattr(p, name) is not None and p.type != only_type:
            yield (*at, name), f"'{name}' applies only to {only_type} parameters, not to {p.type}"
    if p.min is not None and p.max is not None and p.min > p.max:
        yield (*at, "max"), f"max ({p.max:g}) is less than min ({p.min:g})"
    if p.type == "choice" and not p.choices:
        yield (*at, "choices"), "a choice parameter needs at least one choice"
    if p.choices and len(set(p.choices)) != len(p.choices):
        yield (*at, "choices"), "choices must be unique"
    if p.pattern is not None:
        try:
            re.compile(p.pattern)
        except re.error as e:
            yield (*at, "pattern"), f"not a valid regular expression: {e}"
    if p.computed is not None and p.computed not in COMPUTED:
        yield (*at, "computed"), f"unknown computation '{p.computed}'; known: {', '.join(sorted(COMPUTED))}"


# ------------------------------------------------------------------------------------ judging values

class Verdict(str, Enum):
    PASS = "pass"
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
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"{what}: expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what}: expected a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
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
    if with_time and value.utcoffset() is None:  # a naive time cannot be placed on the UTC record
        raise ValueError(f"{what}: the date and time needs a time zone offset")
    return value


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
