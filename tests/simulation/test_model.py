"""The supply simulation's model: reproducible from its seed, and right where the answer can be
worked out by hand (one site, steady enrolment, nobody lost, lots whose size divides the need)."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from cellbench.simulation import Parameters, defaults, simulate
from cellbench.studies import load_study_file

from ..conftest import ROOT

STUDY_FILE = ROOT / "specs" / "studies" / "NCT07290946.toml"


@pytest.fixture(scope="module")
def mesrix() -> Parameters:
    definition, _ = load_study_file(STUDY_FILE)
    return defaults(definition)


def one_site(p: Parameters, *, low: int = 2, high: int = 4, **changes) -> Parameters:
    """MESRIX-more at Rigshospitalet alone, randomised evenly, nobody screen-failing or dropping out,
    in blocks of two (so 100 participants are exactly 50 per arm)."""
    arms = tuple(replace(arm, site_min=(low,), site_max=(high,), **changes.pop("arm", {})) for arm in p.arms)
    return replace(p, sites=("RH-ENT",), screen_failure=0.0, dropout=0.0, steady_enrolment=True, block_sizes=(2,),
                   arms=arms, runs=200, **changes)


def made(res) -> np.ndarray:
    kits_per_lot = np.array([arm.kits_per_lot(res.params.vials_per_kit) for arm in res.params.arms])
    return res.lots_started * kits_per_lot


def test_the_same_seed_gives_the_same_figures_and_another_seed_other_figures(mesrix):
    small = replace(mesrix, runs=300)
    first, again, other = simulate(small), simulate(small), simulate(replace(small, seed=small.seed + 1))
    for name in ("kits_needed_by_month", "lots_started_by_month", "stockout", "expired", "left_over",
                 "last_visit_day"):
        assert np.array_equal(getattr(first, name), getattr(again, name)), name
    assert not np.array_equal(first.kits_needed_by_month, other.kits_needed_by_month)
    assert not np.array_equal(first.last_visit_day, other.last_visit_day)


def test_with_nobody_lost_every_participant_takes_one_kit_per_treatment(mesrix):
    res = simulate(one_site(mesrix))
    assert (res.kits_needed.sum(axis=1) == 100 * 2).all()
    assert (res.kits_needed == [100, 100]).all(), "blocks of two: 50 participants per arm, two kits each"
    assert (res.kits_needed_by_month.sum(axis=2) == res.kits_needed).all()
    assert (res.never_dispensed == 0).all()


def test_the_fewest_lots_are_the_vials_needed_divided_by_the_vials_a_lot_gives(mesrix):
    res = simulate(one_site(mesrix))
    # 100 kits × 2 vials per arm: 200 / 10 ASC vials a lot = 20 lots; 200 / 41 saline vials = 4.9, so 5
    assert (res.lots_minimum == [math.ceil(200 / 10), math.ceil(200 / 41)]).all()
    assert (res.lots_started >= res.lots_minimum).all(), "the weekly plan never makes fewer than needed"


def test_nothing_expires_when_the_shelf_life_outlasts_the_trial_and_every_kit_is_accounted_for(mesrix):
    res = simulate(one_site(mesrix, shelf_life_months=240))
    assert (res.expired == 0).all()
    dispensed = res.kits_needed - res.never_dispensed
    assert (made(res) == dispensed + res.left_over).all(), "kits made = used + left over"
    assert (res.stockout.mean(axis=0) < 0.5).all()


def test_every_kit_expires_unused_when_the_shelf_life_ends_before_the_first_visit(mesrix):
    # Lots start 90 days before the first visit and expire 28 days (to freezing) + 15 days later.
    res = simulate(one_site(mesrix, shelf_life_months=0.5))
    assert (res.kits_needed == res.never_dispensed).all(), "no visit ever got a kit"
    assert res.stockout.all()
    assert (res.expired + res.left_over == made(res)).all()
    kits_per_lot = np.array([arm.kits_per_lot(2) for arm in res.params.arms])
    assert (res.expired >= res.lots_before_first_visit * kits_per_lot).all(), "the first lots all expired"
    assert (res.expired > 0).all()


def test_no_stock_out_with_a_minimum_above_the_whole_need_and_always_one_with_no_stock(mesrix):
    plenty = simulate(one_site(mesrix, low=300, high=300, shelf_life_months=240, lead_days=400,
                               arm={"lots_per_month": 60}))
    assert not plenty.stockout.any()
    none = simulate(one_site(mesrix, low=0, high=0))
    assert none.stockout.all(), "with nothing kept at the site, the first visit of each arm finds no kit"


def test_mesrix_more_as_its_study_file_says_gives_figures_within_their_bounds(mesrix):
    res = simulate(mesrix)
    assert res.params.runs == 1000
    total = res.kits_needed.sum(axis=1)
    # 100 participants, 10 % drop out before treatment 2: 190 kits expected, never more than 200
    assert 185 <= total.mean() <= 195 and total.max() <= 200 and total.min() >= 100
    assert ((res.stockout.mean(axis=0) >= 0) & (res.stockout.mean(axis=0) <= 1)).all()
    assert (res.lots_started >= res.lots_minimum).all()
    assert (res.expired == 0).all(), "24 months' shelf life, lots made as the visits come: nothing expires"
    assert res.lots_before_first_visit[:, 0].min() >= 1, "ASC lots are started before the first site opens"
    assert not res.bound_reached
