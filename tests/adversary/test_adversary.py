"""The blind under an adversary (issue 12): a whole simulated trial, then every predictor against
the sealed truth. Each channel must predict arms no better than a coin (exact binomial test,
p > 0.01 over at least 200 guesses); and the battery must have the power to see an ordered kit
assignment, which it is shown to detect on a small trial run with the old rule."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cellbench import kits, sealed

from ..conftest import chain_for
from . import predictors
from .simulation import Trial
from .world import Plan, trial_app


def _run(worlds, tmp_path_factory, tag: str, plan: Plan):
    database = worlds.restore(chain_for({"effective_specs"}), tmp_path_factory.mktemp(tag) / "trial.db")
    try:
        trial = Trial(database, trial_app(database), plan)
        seen, truth = trial.run()
        return trial, seen, truth
    finally:
        worlds.release(database)


@pytest.fixture(scope="module")
def trial(worlds, tmp_path_factory):
    """The full trial, built once for the module (about a minute on SQLite)."""
    return _run(worlds, tmp_path_factory, "adversary", Plan())


@pytest.fixture(scope="module")
def results(trial) -> list[predictors.Result]:
    _, seen, truth = trial
    found = predictors.run_all(seen, truth)
    print("\nadversarial blinding test: each channel's arm guesses against the sealed truth")
    for result in found:
        print("  " + result.line())
    return found


def test_the_trial_happened_as_planned(trial):
    simulated, seen, truth = trial
    assigned = [a for a in seen.attempts if a.kit is not None]
    refused = [a for a in seen.attempts if a.kit is None]
    treated = {(a.participant, a.treatment) for a in assigned}
    assert len({p for p, _ in treated if p.startswith("X")}) == 100
    assert len({p for p, _ in treated if p.startswith("S")}) == 40
    assert sum(1 for p, t in treated if p.startswith("X") and t == 2) >= 95  # all but a dropped one
    assert refused and all("No kit is available" in a.refusal for a in refused if a.refusal)
    assert len(seen.quarantine_snapshots) == 2
    # the supply plan never leaves one arm out of stock at the site while the other is there
    assert simulated.one_arm_refusals == 0
    assert set(truth.kit_arm.values()) == {"active", "placebo"}


@pytest.mark.parametrize("channel", [p.__name__ for p in predictors.PREDICTORS])
def test_no_channel_predicts_arms_better_than_chance(results, channel):
    result = next(r for r in results if r.channel == channel)
    assert result.n >= predictors.MIN_N, f"{channel}: only {result.n} guesses; the trial must give it more"
    assert result.p > predictors.ALPHA, f"the blind leaks through {channel}: {result.line()}"


def test_the_binomial_test_is_exact():
    assert predictors.binomial_p(5, 10) == 1.0
    assert predictors.binomial_p(0, 10) == pytest.approx(2 / 1024)
    assert predictors.binomial_p(10, 10) == pytest.approx(2 / 1024)
    # 125 of 200 right: twice the tail sum of comb(200, k) for k <= 75, over 2**200
    assert predictors.binomial_p(125, 200) == pytest.approx(0.00049943, rel=1e-4)


@contextmanager
def ordered_assignment() -> Iterator[None]:
    """The old rule (earliest blinded expiry, then the lowest kit number) around whatever
    sealed.assign_kit now does: every kit the door would give is collected (by excluding the ones
    already seen), then the first in that order is taken."""
    original = sealed.assign_kit

    def first_in_order(session, actor, study, number, site_id, **options):
        excluded, offered = list(options.pop("exclude", ())), []
        while (kit := original(session, actor, study, number, site_id, exclude=excluded, **options)) is not None:
            offered.append(kit)
            excluded.append(kit.id)
        return min(offered, key=lambda kit: (kits.blinded_lot_of(session, kit).expiry, kit.number), default=None)

    sealed.assign_kit = first_in_order
    try:
        yield
    finally:
        sealed.assign_kit = original


def test_the_battery_detects_an_ordered_assignment(worlds, tmp_path_factory):
    """The power of the battery: on a small trial whose kits are assigned by the old rule, the
    assignment-order predictor sees it (p < 0.01)."""
    with ordered_assignment():
        _, seen, truth = _run(worlds, tmp_path_factory, "ordered", Plan(seed=5).scaled(0.3))
    result = predictors.score("assignment_order", predictors.assignment_order(seen, truth))
    print(f"\nordered assignment, small trial: {result.line()}")
    assert result.p < predictors.ALPHA and result.accuracy > 0.5
