"""Specifications: the product definition (`model`) read from specs/ (`loading`), the judging of
values and results against it (`values`), and its versions, which QA's signature makes effective
and immutable (`versions`)."""

from __future__ import annotations

from . import versions
from .loading import STUDIES_DIR, check_blinding_parity, load_all, load_spec_file, specs_root
from .model import (
    COMPUTED,
    CS10_DMSO_PERCENT,
    QUALITATIVE,
    Code,
    Criterion,
    Dose,
    Item,
    Parameter,
    Product,
    ReleaseTest,
    Repeat,
    Specification,
    SpecificationError,
    Step,
)
from .units import unit_text
from .values import (
    Formulation,
    LimitCheck,
    Verdict,
    check_limits,
    evaluate,
    formulate_in_cs10,
    parse_value,
    population_doublings,
)
from .versions import all_versions, approve, effective, label, parsed, sync_from_files
