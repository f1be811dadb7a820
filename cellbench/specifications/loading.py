"""Loading specifications from specs/: every file parsed, checked against the rules pydantic cannot
express, and named precisely (file, path, step or test code) when it cannot be used."""
from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..config import shipped
from .model import COMPUTED, Parameter, ReleaseTest, Specification, SpecificationError

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
        # what each presents at the site too, once both declare it (older versions did not)
        shown = {f"presentation.{key}": value for key, value in s.presented().items()
                 if active.presentation and placebo.presentation}
        return {"product.use_window_minutes": s.product.use_window_minutes,
                "product.dose.units_per_gland": s.product.dose.units_per_gland,
                "product.dose.volume_per_gland_ml": s.product.dose.volume_per_gland_ml, **shown}
    theirs = seen_blinded(active)
    for where, mine in seen_blinded(placebo).items():
        if mine != theirs.get(where):
            named = f"{active.product.code} v{active.product.version}"
            raise SpecificationError(placebo.file or placebo.product.code, where,
                                     f"{mine} differs from {theirs.get(where)} in {named};"
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
            names.append(f"{_SINGULAR.get(str(container), str(container))} '{node['code']}'")
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
