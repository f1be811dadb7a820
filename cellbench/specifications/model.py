"""Product specifications: what a specs/<product code>/v<version>.toml file says, as strict models
(a misspelt key or a string where a number belongs is an error, never coerced).

Pure: nothing here reads the database. Persisting a version and QA's signature over it live in
`versions` and build on Specification.content_for_signature().
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, PrivateAttr, model_validator

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
    manufacturer: str | None = None  # as the registry names it; versions before the presentation lack it
    storage: str
    expiry_basis: Literal["freeze_date", "supplier_expiry"]
    shelf_life_frozen_months: int | None = Field(None, ge=1)
    use_window_minutes: int = Field(60, ge=1)
    change_note: str | None = None
    dose: Dose


class Presentation(_Strict):
    """How the filled product reaches the site, beyond what [product] says (fill, storage, use window,
    shelf life). A study's two arms must present alike (studies.presentation_mismatch)."""

    container: str
    appearance: str  # as far as the outer kit shows it
    storage_max_c: FiniteFloat
    transport: str
    transport_max_c: FiniteFloat
    thaw: str


class Specification(_Strict):
    product: Product
    presentation: Presentation | None = None  # absent in versions written before issue 13 (saline v1)
    tests: list[ReleaseTest] = Field(min_length=1)
    steps: list[Step] = Field(min_length=1)
    _file: str | None = PrivateAttr(None)
    _sha256: str | None = PrivateAttr(None)

    def presented(self) -> dict[str, Any]:
        """What this product shows at the site, keyed as a study's [presentation] (empty: undeclared)."""
        if self.presentation is None:
            return {}
        p = self.product
        return {**self.presentation.model_dump(), "manufacturer": p.manufacturer, "storage": p.storage,
                "fill_volume_ml": p.dose.fill_volume_ml, "use_window_minutes": p.use_window_minutes,
                "shelf_life_months": p.shelf_life_frozen_months if p.expiry_basis == "freeze_date" else None}

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
