"""The simulation form's fields: defaults from the study file and the specifications, and every bad
value refused with the field named, before anything is simulated."""
from __future__ import annotations

import pytest

from cellbench.errors import InvalidInput
from cellbench.simulation import as_form, defaults, from_form
from cellbench.studies import load_study_file

from ..conftest import ROOT


@pytest.fixture(scope="module")
def definition():
    return load_study_file(ROOT / "specs" / "studies" / "NCT07290946.toml")[0]


def test_the_defaults_come_from_the_study_file_and_the_specifications(definition):
    p = from_form(definition, {})
    assert (p.participants, p.treatments, p.interval_days, p.window_days) == (100, 2, 120, 14)
    assert (p.vials_per_kit, p.shelf_life_months, p.do_not_ship_days, p.transit_days) == (2, 24, 30, 2)
    assert p.sites == ("RH-ENT", "AUH-ENT") and p.block_sizes == (2, 4, 6)
    assert [(a.code, a.share, a.lot_vials) for a in p.arms] == [("active", 0.5, 10), ("placebo", 0.5, 41)]
    assert p.runs == 1000


def test_the_form_round_trips_its_own_values(definition):
    p = defaults(definition)
    assert from_form(definition, as_form(p)) == p


@pytest.mark.parametrize(("field", "value", "says"), [
    ("screened_per_site_month", "-2", "at least"),
    ("screened_per_site_month", "nan", "finite"),
    ("dropout", "inf", "finite"),
    ("runs", "999999999", "at most"),
    ("runs", "10", "at least"),
    ("participants", "1e9", "whole number"),
    ("active.lot_vials", "1", "fills no kit"),
    ("active.RH-ENT.max", "1", "below its minimum"),
    ("enrolment", "sometimes", "random"),
    ("window_days", "60", "half the interval"),
])
def test_a_bad_value_is_refused_naming_its_field(definition, field, value, says):
    with pytest.raises(InvalidInput) as refused:
        from_form(definition, {field: value})
    assert refused.value.field == field
    assert says in refused.value.message


def test_work_that_would_stall_the_page_is_refused_by_the_field_that_causes_it(definition):
    with pytest.raises(InvalidInput) as slow:
        from_form(definition, {"participants": "2000", "screened_per_site_month": "0.1"})
    assert slow.value.field == "screened_per_site_month" and "years" in slow.value.message
    with pytest.raises(InvalidInput) as many:
        from_form(definition, {"runs": "5000", "screened_per_site_month": "1"})
    assert many.value.field == "runs"
    with pytest.raises(InvalidInput) as tiny:
        from_form(definition, {"participants": "2000", "screened_per_site_month": "50", "active.lot_vials": "2"})
    assert tiny.value.field == "active.lot_vials"


def test_a_shipment_takes_no_longer_than_the_dry_shippers_hold_time(definition):
    with pytest.raises(InvalidInput) as refused:
        from_form(definition, {"transit_days": "8"})
    assert refused.value.field == "transit_days" and "at most 7" in refused.value.message


def test_the_most_runs_the_page_allows_for_mesrix_more_still_run_within_their_bound(definition):
    with pytest.raises(InvalidInput) as refused:
        from_form(definition, {"runs": "5000"})
    allowed = int(refused.value.message.split("at most ")[1].split(" ")[0])
    assert 2000 < allowed < 5000
    assert from_form(definition, {"runs": str(allowed)}).runs == allowed
