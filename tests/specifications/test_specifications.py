"""Product specifications: the shipped TOML files, the loader's checks, and the pure judging functions."""
from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from cellbench.specifications import (
    COMPUTED,
    Criterion,
    LimitCheck,
    Parameter,
    SpecificationError,
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

REPO_SPECS = Path(__file__).resolve().parents[2] / "specs"


@pytest.fixture(scope="module")
def asc():
    return load_spec_file(REPO_SPECS / "asc-cs10" / "v1.toml")


@pytest.fixture(scope="module")
def placebo():
    return load_spec_file(REPO_SPECS / "saline-placebo" / "v1.toml")


def release_test(spec, code):
    return next(t for t in spec.tests if t.code == code)


def step_(spec, code):
    return next(s for s in spec.steps if s.code == code)


def param_(step, code):
    return next(p for p in step.parameters if p.code == code)


# --------------------------------------------------------------------------------------- shipped files

def test_the_repository_specs_folder_is_used_in_a_source_checkout():
    assert specs_root() == REPO_SPECS


def test_load_all_returns_every_shipped_version_sorted_by_product_and_version():
    specs = load_all()
    assert [(s.product.code, s.product.version) for s in specs] == [("asc-cs10", 1), ("asc-cs10", 2),
                                                                     ("saline-placebo", 1), ("saline-placebo", 2)]


def test_the_asc_product_is_frozen_in_vapour_phase_nitrogen_with_a_one_hour_thaw_window(asc):
    p = asc.product
    assert (p.kind, p.expiry_basis, p.use_window_minutes) == ("asc", "freeze_date", 60)
    assert "−150 °C" in p.storage and "vapour" in p.storage
    assert 6 <= p.shelf_life_frozen_months <= 60
    assert p.dose.units_per_gland == 1
    # the declared dose per gland is what one vial holds at the target concentration
    per_gland = p.dose.target_concentration_per_ml * p.dose.volume_per_gland_ml
    assert per_gland == pytest.approx(p.dose.viable_cells_per_gland)


def test_the_placebo_has_the_same_clock_and_volumes_a_blinded_user_handles(asc, placebo):
    assert placebo.product.kind == "placebo"
    assert placebo.product.use_window_minutes == asc.product.use_window_minutes
    assert placebo.product.dose.units_per_gland == asc.product.dose.units_per_gland
    assert placebo.product.dose.volume_per_gland_ml == asc.product.dose.volume_per_gland_ml
    assert placebo.product.expiry_basis == "supplier_expiry" and placebo.product.shelf_life_frozen_months is None
    check_blinding_parity(asc, placebo)


REFERENCE_TESTS = {
    # donor eligibility: serology, NAT, sample timing
    "donor_anti_hiv": "negative", "donor_hbsag": "negative", "donor_anti_hbc": "negative",
    "donor_anti_hcv": "negative", "donor_syphilis": "negative", "donor_anti_htlv": "negative",
    "donor_nat_hiv": "negative", "donor_nat_hbv": "negative", "donor_nat_hcv": "negative",
    "donor_sample_timing": "conforms",
    # final product
    "sterility": "no_growth", "endotoxin": "range", "mycoplasma": "not_detected", "viability": "range",
    "post_thaw_viability": "range", "cell_dose": "range",
    "identity_cd73": "range", "identity_cd90": "range", "identity_cd105": "range",
    "purity_cd45": "range", "purity_cd34": "range", "purity_cd14": "range", "purity_cd19": "range",
    "purity_hla_dr": "range", "appearance": "conforms",
    # record checks
    "single_donor": "conforms", "raw_materials": "conforms", "storage_history": "conforms",
    "label_identity": "conforms",
}


def test_every_release_test_of_the_reference_table_is_in_the_asc_spec_with_its_kind(asc):
    kinds = {t.code: t.acceptance.kind for t in asc.tests}
    assert {code: kinds.get(code) for code in REFERENCE_TESTS} == REFERENCE_TESTS


def test_the_published_cscc_limits_are_kept_exactly(asc):
    endotoxin = release_test(asc, "endotoxin")
    assert (endotoxin.unit, endotoxin.acceptance.max, endotoxin.acceptance.max_inclusive) == ("IU/mL", 70, False)
    viability = release_test(asc, "viability")
    assert (viability.unit, viability.acceptance.min, viability.acceptance.min_inclusive) == ("%", 80, False)
    assert endotoxin.acceptance.describe(endotoxin.unit) == "< 70 IU/mL"
    assert viability.acceptance.describe(viability.unit) == "> 80 %"


def test_identity_and_purity_markers_have_sensible_flow_cytometry_limits(asc):
    for marker in ("cd73", "cd90", "cd105"):
        criterion = release_test(asc, f"identity_{marker}").acceptance
        assert 80 <= criterion.min <= 95 and criterion.max is None
    for marker in ("cd45", "cd34", "cd14", "cd19", "hla_dr"):
        criterion = release_test(asc, f"purity_{marker}").acceptance
        assert criterion.min is None and 0 < criterion.max <= 10


def test_the_cell_dose_range_contains_the_declared_dose_per_vial(asc):
    criterion = release_test(asc, "cell_dose").acceptance
    declared_millions = asc.product.dose.viable_cells_per_gland / asc.product.dose.units_per_gland / 1e6
    assert criterion.min < declared_millions < criterion.max
    assert evaluate(criterion, declared_millions) is Verdict.PASS


def test_only_post_release_checks_are_exempt_from_the_release_gate(asc):
    exempt = {t.code for t in asc.tests if not t.required_for_release}
    assert exempt == {"post_thaw_viability", "label_identity"}


def test_the_asc_batch_record_has_every_step_in_manufacturing_order(asc):
    assert [s.code for s in asc.steps] == [
        "tissue_receipt", "enzymatic_isolation", "expansion_passage", "harvest", "wash", "count",
        "formulation", "fill", "controlled_rate_freezing", "storage_transfer", "qc_and_retained_samples",
    ]


def test_critical_steps_need_a_second_person(asc):
    verified = {s.code for s in asc.steps if s.verify}
    critical = {"tissue_receipt", "count", "formulation", "fill", "controlled_rate_freezing", "storage_transfer"}
    assert critical <= verified


def test_tissue_receipt_records_the_donation_as_received_and_its_check_character(asc):
    receipt = step_(asc, "tissue_receipt")
    assert {"donation_id", "din_check_character", "transport_temperature", "tissue_volume", "tissue_mass"} <= {
        p.code for p in receipt.parameters}
    assert param_(receipt, "donation_id").type == "text"
    check_char = param_(receipt, "din_check_character")
    assert check_limits(check_char, "H") is LimitCheck.WITHIN
    assert check_limits(check_char, "*") is LimitCheck.WITHIN
    with pytest.raises(ValueError, match="format"):
        check_limits(check_char, "HH")


def test_expansion_is_one_entry_per_passage_in_the_closed_bioreactor_with_platelet_lysate(asc):
    expansion = step_(asc, "expansion_passage")
    assert expansion.repeat is not None and expansion.repeat.label == "Passage" and expansion.repeat.min == 1
    assert {"cells_seeded", "cells_harvested", "viability", "population_doublings", "confluence"} <= {
        p.code for p in expansion.parameters}
    assert param_(expansion, "population_doublings").computed == "population_doublings"
    assert "hpl" in {m.code for m in expansion.materials}
    assert any("Quantum" in e.name for e in expansion.equipment)


def test_formulation_computes_the_cs10_volume_and_limits_the_final_dmso(asc):
    formulation = step_(asc, "formulation")
    assert [m.name for m in formulation.materials] == ["CryoStor CS10"]
    computed = {p.code: p.computed for p in formulation.parameters if p.computed}
    assert computed == {"final_volume": "formulation.final_volume", "cs10_volume": "formulation.cs10_volume",
                        "final_dmso": "formulation.final_dmso"}
    dmso = param_(formulation, "final_dmso")
    assert dmso.max == 10.0 and 8 <= dmso.min < 10
    assert check_limits(dmso, 9.6) is LimitCheck.WITHIN
    assert check_limits(dmso, 8.5) is LimitCheck.OUT_OF_LIMITS


def test_every_computed_marker_names_a_known_computation(asc):
    for step in asc.steps:
        for p in step.parameters:
            assert p.computed is None or p.computed in COMPUTED


def test_fill_freeze_and_storage_carry_sensible_limits(asc):
    fill = step_(asc, "fill")
    assert param_(fill, "fill_volume").min < asc.product.dose.fill_volume_ml < param_(fill, "fill_volume").max
    freezing = step_(asc, "controlled_rate_freezing")
    assert param_(freezing, "end_temperature").max <= -80
    assert {e.name for e in freezing.equipment} == {"Controlled-rate freezer"}
    storage = step_(asc, "storage_transfer")
    assert storage.repeat.label == "Vial"  # one position per vial
    assert {"vial_id", "tank", "rack", "box", "position"} <= {p.code for p in storage.parameters}
    assert param_(storage, "tank_temperature").max == -150
    for step in asc.steps:
        for p in step.parameters:
            if p.min is not None and p.max is not None:
                assert p.min < p.max or (p.min == p.max == 0), f"{step.code}.{p.code}"


def test_the_placebo_record_covers_receipt_certificate_inspection_and_count(placebo):
    assert [s.code for s in placebo.steps] == [
        "supplier_receipt", "certificate_check", "visual_inspection", "unit_count_and_storage"]
    receipt = step_(placebo, "supplier_receipt")
    assert param_(receipt, "supplier_batch").type == "text"
    assert param_(receipt, "supplier_expiry").type == "date"
    assert {t.code: t.acceptance.kind for t in placebo.tests} == {
        "certificate": "conforms", "product_identity": "conforms", "appearance": "conforms",
        "container_integrity": "conforms", "storage_history": "conforms"}


def test_a_loaded_specification_cannot_be_changed_in_memory(asc):
    with pytest.raises(ValidationError):
        asc.product.use_window_minutes = 90


def test_content_for_signature_binds_the_parsed_content_to_the_exact_file_bytes(asc, tmp_path):
    source = REPO_SPECS / "asc-cs10" / "v1.toml"
    signed = asc.content_for_signature()
    assert signed["file_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest() == asc.sha256
    assert (signed["product"], signed["version"]) == ("asc-cs10", 1)
    json.dumps(signed)  # JSON-able as it is
    assert load_spec_file(source).content_hash() == asc.content_hash()

    copy = tmp_path / "asc-cs10" / "v1.toml"
    copy.parent.mkdir()
    copy.write_bytes(source.read_bytes() + b"\n# a comment QA has not seen\n")
    commented = load_spec_file(copy)
    assert commented.content_for_signature()["content"] == signed["content"]
    assert commented.content_hash() != asc.content_hash()


# ------------------------------------------------------------------------------------ malformed files

MINIMAL = '''
[product]
code = "demo"
version = 1
kind = "placebo"
name = "Demo placebo"
storage = "Room temperature"
expiry_basis = "supplier_expiry"

[product.dose]
unit = "ampoule"
units_per_gland = 1
fill_volume_ml = 10.0
volume_per_gland_ml = 1.0

[[tests]]
code = "appearance"
name = "Appearance"
method = "Visual"
stage = "final_product"
acceptance = "conforms"

[[tests]]
code = "endotoxin"
name = "Endotoxin"
method = "LAL"
unit = "IU/mL"
stage = "final_product"
acceptance = { kind = "range", max = 70, max_inclusive = false }

[[steps]]
code = "receipt"
title = "Receipt"
materials = [ { code = "saline", name = "Sodium chloride 0.9 %" } ]

[[steps.parameters]]
code = "units"
label = "Units"
type = "number"
min = 1
max = 10

[[steps]]
code = "inspection"
title = "Inspection"
verify = true

[[steps.parameters]]
code = "batch"
label = "Batch"
type = "text"

[[steps.parameters]]
code = "volume"
label = "Volume"
type = "number"
unit = "mL"
min = 1
max = 5
'''


def write(tmp_path: Path, text: str, folder: str = "demo", name: str = "v1.toml") -> Path:
    path = tmp_path / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def edited(old: str, new: str, text: str = MINIMAL) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def failure(tmp_path: Path, text: str, **where) -> SpecificationError:
    path = write(tmp_path, text, **where)
    with pytest.raises(SpecificationError) as caught:
        load_spec_file(path)
    assert caught.value.file == str(path) and str(path) in str(caught.value)
    return caught.value


def test_the_minimal_file_used_below_is_valid(tmp_path):
    spec = load_spec_file(write(tmp_path, MINIMAL))
    assert [s.code for s in spec.steps] == ["receipt", "inspection"]
    assert spec.steps[1].parameters[1].required is True  # defaults are filled in


def test_a_toml_syntax_error_names_the_file_and_line(tmp_path):
    error = failure(tmp_path, edited('name = "Demo placebo"', 'name = "Demo placebo'))
    assert error.line == 6
    assert error.path.startswith("line 6")
    assert "TOML syntax error" in error.message and "line 6" in str(error)


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "demo" / "v1.toml"
    path.parent.mkdir()
    path.write_bytes(MINIMAL.replace("Room temperature", "15–25 °C").encode("cp1252", errors="replace"))
    with pytest.raises(SpecificationError, match="not UTF-8"):
        load_spec_file(path)


@pytest.mark.parametrize(("old", "new", "path", "message"), [
    ('code = "endotoxin"', 'code = "appearance"', "tests[1].code", "duplicate code 'appearance'"),
    ('code = "inspection"', 'code = "receipt"', "steps[1].code", "duplicate code 'receipt'"),
    ('code = "volume"', 'code = "batch"', "steps[1].parameters[1].code", "duplicate code 'batch'"),
    ("min = 1\nmax = 5", "min = 6\nmax = 5", "steps[1].parameters[1].max", "max (5) is less than min (6)"),
    ('label = "Batch"\ntype = "text"', 'label = "Batch"\ntype = "choice"\nchoices = []',
     "steps[1].parameters[0].choices", "at least one choice"),
    ('label = "Batch"\ntype = "text"', 'label = "Batch"\ntype = "choice"',
     "steps[1].parameters[0].choices", "at least one choice"),
    ('label = "Batch"\ntype = "text"', 'label = "Batch"\ntype = "choice"\nchoices = ["a", "a"]',
     "steps[1].parameters[0].choices", "unique"),
    ('label = "Batch"\ntype = "text"', 'label = "Batch"\ntype = "text"\nmax = 3',
     "steps[1].parameters[0].max", "applies only to number parameters"),
    ('label = "Batch"\ntype = "text"', 'label = "Batch"\ntype = "text"\nexpected = true',
     "steps[1].parameters[0].expected", "applies only to boolean parameters"),
    ('label = "Batch"\ntype = "text"', 'label = "Batch"\ntype = "text"\npattern = "[A-Z"',
     "steps[1].parameters[0].pattern", "not a valid regular expression"),
    ('unit = "mL"', 'unit = "mL"\ncomputed = "magic"', "steps[1].parameters[1].computed",
     "unknown computation 'magic'"),
    ('type = "text"', 'type = "string"', "steps[1].parameters[0].type", "Input should be"),
    ("max = 70, max_inclusive", "max = \"70\", max_inclusive", "tests[1].acceptance.max", "valid number"),
    ("max = 70, max_inclusive", "min = 80, max = 70, max_inclusive", "tests[1].acceptance.max",
     "max (70) is less than min (80)"),
    ("max = 70, max_inclusive = false", "min = 70, max = 70, max_inclusive = false", "tests[1].acceptance",
     "range is empty"),
    ('{ kind = "range", max = 70, max_inclusive = false }', '{ kind = "range" }', "tests[1].acceptance",
     "needs min, max or both"),
    ('acceptance = "conforms"', 'acceptance = { kind = "conforms", max = 3 }', "tests[0].acceptance.max",
     "belong to a 'range' criterion"),
    ('acceptance = "conforms"', 'acceptance = "sterile"', "tests[0].acceptance.kind", "Input should be"),
    ('stage = "final_product"\nacceptance = "conforms"', 'stage = "final_product"\nunit = "%"\nacceptance = "conforms"',
     "tests[0].unit", "a unit belongs to a numeric range"),
    ("max_inclusive = false", "max_inclusve = false", "tests[1].acceptance.max_inclusve", "unknown key"),
    ('name = "Appearance"\n', "", "tests[0].name", "required key is missing"),
    ('verify = true', 'verify = "yes"', "steps[1].verify", "valid boolean"),
    ('code = "units"', 'code = "Units count"', "steps[0].parameters[0].code", "pattern"),
    ('title = "Inspection"', 'title = "Inspection"\nrepeat = { label = "Unit", min = 3, max = 2 }',
     "steps[1].repeat.max", "less than min"),
    ('title = "Inspection"', 'title = "Inspection"\nmaterials = [ { code = "saline", name = "Saline" } ]',
     "steps[1].materials[0].name", "called 'Sodium chloride 0.9 %' in an earlier step"),
    ('kind = "placebo"', 'kind = "placebo"\nshelf_life_frozen_months = 12', "product.shelf_life_frozen_months",
     "must be absent"),
    ('volume_per_gland_ml = 1.0', 'volume_per_gland_ml = 1.0\nviable_cells_per_gland = 25e6',
     "product.dose.viable_cells_per_gland", "a placebo contains no cells"),
    ('kind = "placebo"', 'kind = "asc"', "product.dose.viable_cells_per_gland", "required for an ASC product"),
    ('expiry_basis = "supplier_expiry"', 'expiry_basis = "freeze_date"', "product.shelf_life_frozen_months",
     "required when expiry_basis is 'freeze_date'"),
    ('volume_per_gland_ml = 1.0', 'volume_per_gland_ml = 0', "product.dose.volume_per_gland_ml", "greater than 0"),
    ('volume_per_gland_ml = 1.0', 'volume_per_gland_ml = nan', "product.dose.volume_per_gland_ml", "finite"),
    ('\n[product]\n', '\napproved_by = "QA"\n[product]\n', "approved_by", "unknown key"),
])
def test_each_rule_names_the_path_inside_the_file(tmp_path, old, new, path, message):
    error = failure(tmp_path, edited(old, new))
    assert error.path == path
    assert message in error.message
    assert f": {path}" in str(error)


def test_the_error_also_names_the_codes_along_the_path_so_nobody_miscounts(tmp_path):
    error = failure(tmp_path, edited("min = 1\nmax = 5", "min = 6\nmax = 5"))
    assert "(step 'inspection', parameter 'volume')" in str(error)


def test_the_version_inside_must_match_the_file_name(tmp_path):
    error = failure(tmp_path, MINIMAL, name="v2.toml")
    assert error.path == "product.version"
    assert "does not match the file name v2.toml" in error.message


def test_a_file_not_named_by_its_version_is_refused(tmp_path):
    error = failure(tmp_path, MINIMAL, name="draft.toml")
    assert "v<version>.toml" in error.message


def test_the_product_code_must_match_its_folder(tmp_path):
    error = failure(tmp_path, MINIMAL, folder="other-product")
    assert error.path == "product.code"
    assert "folder name 'other-product'" in error.message


ASC_MINIMAL = MINIMAL
for old, new in (('kind = "placebo"', 'kind = "asc"'), ('code = "demo"', 'code = "demo-asc"'),
                 ('expiry_basis = "supplier_expiry"', 'expiry_basis = "freeze_date"\nshelf_life_frozen_months = 24'),
                 ("volume_per_gland_ml = 1.0", "volume_per_gland_ml = 1.0\nviable_cells_per_gland = 25e6\n"
                                               "target_concentration_per_ml = 25e6")):
    ASC_MINIMAL = edited(old, new, ASC_MINIMAL)


def test_load_all_refuses_a_placebo_whose_use_window_differs_from_the_active_product(tmp_path):
    write(tmp_path, ASC_MINIMAL, folder="demo-asc")
    placebo = write(tmp_path, edited('expiry_basis = "supplier_expiry"',
                                     'expiry_basis = "supplier_expiry"\nuse_window_minutes = 90'))
    with pytest.raises(SpecificationError) as caught:
        load_all(tmp_path)
    assert caught.value.file == str(placebo)
    assert caught.value.path == "product.use_window_minutes"
    assert "unblinds" in caught.value.message


def test_load_all_checks_parity_on_the_latest_versions_only(tmp_path):
    write(tmp_path, ASC_MINIMAL, folder="demo-asc")
    write(tmp_path, edited('expiry_basis = "supplier_expiry"',
                           'expiry_basis = "supplier_expiry"\nuse_window_minutes = 90'))
    write(tmp_path, edited("version = 1", "version = 2"), name="v2.toml")  # v2 is back to the 60 min window
    specs = load_all(tmp_path)
    assert [(s.product.code, s.product.version) for s in specs] == [("demo", 1), ("demo", 2), ("demo-asc", 1)]


def test_load_all_reports_the_first_broken_file(tmp_path):
    write(tmp_path, MINIMAL)
    broken = write(tmp_path, "[product\n", folder="demo-asc")
    with pytest.raises(SpecificationError) as caught:
        load_all(tmp_path)
    assert caught.value.file == str(broken) and caught.value.line == 1


# ------------------------------------------------------------------------------------------ evaluate()

def criterion(**fields) -> Criterion:
    return Criterion(kind="range", **fields)


@pytest.mark.parametrize(("fields", "value", "verdict"), [
    ({"min": 90}, 90, Verdict.PASS),  # ≥ 90: the boundary passes
    ({"min": 90}, 89.99, Verdict.OOS),
    ({"min": 80, "min_inclusive": False}, 80, Verdict.OOS),  # > 80: the boundary fails
    ({"min": 80, "min_inclusive": False}, 80.01, Verdict.PASS),
    ({"max": 70, "max_inclusive": False}, 70, Verdict.OOS),  # < 70
    ({"max": 70, "max_inclusive": False}, 69.99, Verdict.PASS),
    ({"max": 2}, 2, Verdict.PASS),  # ≤ 2
    ({"max": 2}, 2.01, Verdict.OOS),
    ({"min": 20, "max": 30}, 20, Verdict.PASS),
    ({"min": 20, "max": 30}, 30, Verdict.PASS),
    ({"min": 20, "max": 30}, 30.5, Verdict.OOS),
    ({"min": 20, "max": 30}, 19, Verdict.OOS),
    ({"min": 0, "max": 0}, 0, Verdict.PASS),
])
def test_evaluate_a_numeric_result_against_a_range(fields, value, verdict):
    assert evaluate(criterion(**fields), value) is verdict


@pytest.mark.parametrize(("kind", "result", "verdict"), [
    ("negative", "Negative", Verdict.PASS),
    ("negative", "  NEGATIVE ", Verdict.PASS),
    ("negative", "positive", Verdict.OOS),
    ("not_detected", "not detected", Verdict.PASS),
    ("not_detected", "Not_Detected", Verdict.PASS),
    ("not_detected", "not-detected", Verdict.PASS),
    ("not_detected", "Detected", Verdict.OOS),
    ("conforms", "Conforms", Verdict.PASS),
    ("conforms", "does not conform", Verdict.OOS),
    ("no_growth", "No growth", Verdict.PASS),
    ("no_growth", "growth", Verdict.OOS),
])
def test_evaluate_a_qualitative_result_ignoring_case_and_spacing(kind, result, verdict):
    assert evaluate(Criterion(kind=kind), result) is verdict


def test_verdicts_are_stored_as_pass_and_oos():
    assert [v.value for v in Verdict] == ["pass", "oos"]


@pytest.mark.parametrize(("acceptance", "value", "expected"), [
    (criterion(max=70), "69", "expected a number"),
    (criterion(max=70), True, "expected a number"),
    (criterion(max=70), None, "expected a number"),
    (criterion(max=70), math.nan, "finite"),
    (Criterion(kind="negative"), 0, "expected the text 'negative' or 'positive'"),
    (Criterion(kind="negative"), "negtive", "expected 'negative' or 'positive'"),
    (Criterion(kind="no_growth"), "sterile", "expected 'no growth' or 'growth'"),
])
def test_evaluate_refuses_a_result_of_the_wrong_type_or_an_unknown_word(acceptance, value, expected):
    with pytest.raises(ValueError, match=expected):
        evaluate(acceptance, value)


def test_evaluate_against_the_shipped_asc_spec(asc):
    assert evaluate(release_test(asc, "viability").acceptance, 80.0) is Verdict.OOS
    assert evaluate(release_test(asc, "viability").acceptance, 92.5) is Verdict.PASS
    assert evaluate(release_test(asc, "endotoxin").acceptance, 70) is Verdict.OOS
    assert evaluate(release_test(asc, "mycoplasma").acceptance, "Not detected") is Verdict.PASS
    assert evaluate(release_test(asc, "sterility").acceptance, "No growth") is Verdict.PASS


def test_criteria_describe_themselves_for_a_certificate():
    assert criterion(min=20, max=30).describe("%") == "20 – 30 %"
    assert criterion(min=20, max=30, max_inclusive=False).describe() == "≥ 20 and < 30"
    assert Criterion(kind="not_detected").describe() == "Not detected"
    assert Criterion(kind="conforms", text="Clear").describe() == "Conforms: Clear"


# -------------------------------------------------------------------------------------- check_limits()

NUMBER = Parameter(code="volume", label="Volume", type="number", unit="mL", min=1, max=5)


@pytest.mark.parametrize(("value", "result"), [
    (1, LimitCheck.WITHIN), (5, LimitCheck.WITHIN), (3.3, LimitCheck.WITHIN), ("4.5", LimitCheck.WITHIN),
    (0.99, LimitCheck.OUT_OF_LIMITS), (5.01, LimitCheck.OUT_OF_LIMITS), (" 7 ", LimitCheck.OUT_OF_LIMITS),
])
def test_number_limits_are_inclusive(value, result):
    assert check_limits(NUMBER, value) is result


@pytest.mark.parametrize(("value", "expected"), [
    ("4,5", "decimal point"), ("abc", "expected a number"), (True, "expected a number"),
    ("nan", "finite"), (None, "required"), ("  ", "required"),
])
def test_an_unparseable_number_raises(value, expected):
    with pytest.raises(ValueError, match=expected):
        check_limits(NUMBER, value)


def test_a_number_without_limits_is_always_within():
    assert check_limits(Parameter(code="n", label="N", type="number"), -1e9) is LimitCheck.WITHIN


def test_an_optional_parameter_may_be_left_empty():
    optional = Parameter(code="mass", label="Mass", type="number", min=40, max=1000, required=False)
    assert check_limits(optional, None) is LimitCheck.WITHIN
    assert parse_value(optional, "") is None


def test_a_boolean_with_an_expected_answer_is_out_of_limits_when_answered_otherwise():
    intact = Parameter(code="intact", label="Intact", type="boolean", expected=True)
    assert check_limits(intact, True) is LimitCheck.WITHIN
    assert check_limits(intact, "yes") is LimitCheck.WITHIN
    assert check_limits(intact, False) is LimitCheck.OUT_OF_LIMITS
    assert check_limits(intact, "No") is LimitCheck.OUT_OF_LIMITS
    with pytest.raises(ValueError, match="yes or no"):
        check_limits(intact, "maybe")
    with pytest.raises(ValueError, match="yes or no"):
        check_limits(intact, 1)


def test_a_choice_must_be_one_of_its_choices():
    system = Parameter(code="system", label="System", type="choice", choices=["ISBT 128 DIN", "SEC-DI"])
    assert check_limits(system, "SEC-DI") is LimitCheck.WITHIN
    with pytest.raises(ValueError, match="expected one of 'ISBT 128 DIN', 'SEC-DI'"):
        check_limits(system, "sec-di")


def test_text_is_kept_exactly_as_entered():
    donation = Parameter(code="donation_id", label="Donation", type="text")
    assert parse_value(donation, "G123498654321 ") == "G123498654321 "
    with pytest.raises(ValueError, match="expected text"):
        check_limits(donation, 123)


def test_a_datetime_typed_without_offset_is_the_benchs_time_and_dates_must_be_plain_dates():
    moment = Parameter(code="at", label="At", type="datetime")
    aware = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
    assert check_limits(moment, aware) is LimitCheck.WITHIN
    assert parse_value(moment, "2026-05-01T09:30:00+02:00") == datetime.fromisoformat("2026-05-01T07:30:00+00:00")
    # typed as the pages show times (the bench is in Copenhagen: +02:00 in May, +01:00 in December)
    assert parse_value(moment, "2026-05-01 09:30") == datetime.fromisoformat("2026-05-01T07:30:00+00:00")
    assert parse_value(moment, "2026-12-05 09:44") == datetime.fromisoformat("2026-12-05T08:44:00+00:00")
    for bad, expected in (("yesterday", "ISO date and time"), (date(2026, 5, 1), "ISO date and time")):
        with pytest.raises(ValueError, match=expected):
            check_limits(moment, bad)
    expiry = Parameter(code="expiry", label="Expiry", type="date")
    assert parse_value(expiry, "2027-05-31") == date(2027, 5, 31)
    with pytest.raises(ValueError, match="ISO date"):
        check_limits(expiry, aware)
    with pytest.raises(ValueError, match="ISO date"):
        check_limits(expiry, "31/05/2027")


# ----------------------------------------------------------------------------------------- arithmetic

def test_formulation_without_residual_gives_pure_cs10_at_ten_percent_dmso():
    f = formulate_in_cs10(250e6, 25e6)
    assert (f.final_volume_ml, f.cs10_volume_ml, f.final_dmso_percent) == (10.0, 10.0, 10.0)


def test_formulation_with_a_residual_volume_dilutes_the_dmso():
    # 260 × 10^6 viable cells at 25 × 10^6/mL → 10.4 mL; 0.4 mL left over the pellet → add 10.0 mL CS10;
    # DMSO = 10 % × 10.0 / 10.4 = 9.615 %
    f = formulate_in_cs10(260e6, 25e6, residual_volume_ml=0.4)
    assert f.final_volume_ml == pytest.approx(10.4)
    assert f.cs10_volume_ml == pytest.approx(10.0)
    assert f.final_dmso_percent == pytest.approx(9.6154, abs=1e-4)


def test_formulation_works_in_millions_as_well_as_in_cells():
    assert formulate_in_cs10(260, 25, residual_volume_ml=0.4) == formulate_in_cs10(260e6, 25e6, residual_volume_ml=0.4)


def test_formulation_result_checked_against_the_shipped_dmso_limit(asc):
    dmso = param_(step_(asc, "formulation"), "final_dmso")
    small_residual = formulate_in_cs10(260e6, 25e6, residual_volume_ml=0.5)  # 9.52 %
    large_residual = formulate_in_cs10(260e6, 25e6, residual_volume_ml=2.0)  # 8.08 %
    assert check_limits(dmso, small_residual.final_dmso_percent) is LimitCheck.WITHIN
    assert check_limits(dmso, large_residual.final_dmso_percent) is LimitCheck.OUT_OF_LIMITS


@pytest.mark.parametrize(("args", "kwargs", "expected"), [
    ((250e6, 25e6), {"residual_volume_ml": 10.0}, "already fills the final volume"),
    ((0, 25e6), {}, "must be positive"),
    ((250e6, 0), {}, "must be positive"),
    ((250e6, 25e6), {"residual_volume_ml": -0.1}, "not negative"),
    (("250e6", 25e6), {}, "expected a number"),
])
def test_formulation_refuses_impossible_inputs(args, kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        formulate_in_cs10(*args, **kwargs)


def test_population_doublings_per_passage():
    assert population_doublings(10, 80) == pytest.approx(3.0)
    assert population_doublings(25e6, 25e6) == 0
    with pytest.raises(ValueError, match="positive"):
        population_doublings(0, 80)
