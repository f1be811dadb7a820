"""Specifications: the product definition read from specs/ (`definition`) and its versions, which
QA's signature makes effective and immutable (`versions`)."""

from __future__ import annotations

from . import versions
from .definition import (
    COMPUTED,
    CS10_DMSO_PERCENT,
    QUALITATIVE,
    STUDIES_DIR,
    Code,
    Criterion,
    Dose,
    Formulation,
    Item,
    LimitCheck,
    Parameter,
    Product,
    ReleaseTest,
    Repeat,
    Specification,
    SpecificationError,
    Step,
    Verdict,
    check_blinding_parity,
    check_limits,
    evaluate,
    formulate_in_cs10,
    load_all,
    load_spec_file,
    parse_value,
    population_doublings,
    specs_root,
)
from .versions import all_versions, approve, effective, label, parsed, sync_from_files
