"""The Monte-Carlo model: many runs of one trial at once, every array carrying the runs as its first
axis, so that numpy does the work and Python only steps through the days.

One run: participants are randomised at each site as a Poisson process (or evenly, for a check by
hand) until the target is reached, their arms from one central list of permuted blocks; each
treatment after the first falls at its target day ± a uniform offset within the window, unless the
participant has dropped out. A visit takes one kit of the arm from its site's stock, first-expiring
first, and only a kit still in date; a visit that finds none waits (a stock-out) until a kit comes.

Supply: every morning each site and arm below its minimum is refilled to its maximum from the bench
(counting kits in transit and visits waiting), first-expiring first and never a kit within the
do-not-ship days of its expiry; shipments arrive after the transit days. Every week the bench starts
lots of an arm, within its capacity, when the kits it has, has in production, in transit and at the
sites fall short of the visits forecast over its lead time plus a month (from the participants already
randomised and the expected pace), plus what the sites hold at their maxima, as long as the trial
still needs kits of the arm. A lot's kits expire a shelf life after freezing.

Days count from the first site's opening (day 0); the first lots may start `lead_days` before it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .parameters import DAYS_PER_MONTH, MAX_DAYS, Parameters, lots_bound

NEVER = np.int64(1) << 40


@dataclass(frozen=True)
class Results:
    """Per run (first axis) and arm (second axis, in Parameters.arms order); months count from the
    first site's opening (month 0), `first_month` being the month of the first lot's start."""

    params: Parameters
    first_month: int
    kits_needed_by_month: np.ndarray  # (runs, arms, months)
    lots_started_by_month: np.ndarray  # (runs, arms, months)
    kits_needed: np.ndarray  # (runs, arms): visits that took, or waited for, a kit
    lots_minimum: np.ndarray  # (runs, arms): ceil(vials needed / vials a lot gives): no waste at all
    lots_started: np.ndarray  # (runs, arms): what the weekly rule started
    lots_before_first_visit: np.ndarray  # (runs, arms): started before day 0
    stockout: np.ndarray  # (runs, arms, sites) bool: a visit found no kit in date
    expired: np.ndarray  # (runs, arms): kits that expired unused before the trial's last visit
    left_over: np.ndarray  # (runs, arms): kits in date, unused, at the last visit
    never_dispensed: np.ndarray  # (runs, arms): visits still waiting for a kit at the end
    last_visit_day: np.ndarray  # (runs,)
    bound_reached: bool  # some run wanted more lots than the simulation holds (lots_bound)
    seconds: float

    @property
    def months(self) -> np.ndarray:
        return np.arange(self.first_month, self.first_month + self.kits_needed_by_month.shape[2])


def _take(need: np.ndarray, avail: np.ndarray) -> np.ndarray:
    """Kits taken from each lot (last axis, in order of expiry) to meet `need`: the first-expiring first."""
    before = np.cumsum(avail, axis=-1) - avail
    return np.clip(need[..., None] - before, 0, avail)


def _arms(rng: np.random.Generator, runs: int, n: int, block_sizes: tuple[int, ...],
          ratios: tuple[int, ...]) -> np.ndarray:
    """Each run's central randomisation list: blocks of random size from the study's, each holding
    the arms in their ratio, in random order within the block."""
    sizes = np.asarray(block_sizes)
    blocks = n // int(sizes.min()) + 1
    size = rng.choice(sizes, (runs, blocks))
    ends = size.cumsum(axis=1)
    starts = ends - size
    # Which block holds each position: one searchsorted over all runs, each run's ends moved apart.
    shift = int(ends[:, -1].max()) + 1
    row = np.arange(runs)[:, None]
    position = np.arange(n)[None, :]
    block = np.searchsorted((ends + row * shift).ravel(), (position + row * shift).ravel(), side="right")
    block = block.reshape(runs, n) - row * blocks
    order = np.argsort(block + rng.random((runs, n)), axis=1)  # a random order within each block
    fraction = (position - np.take_along_axis(starts, block, 1)) / np.take_along_axis(size, block, 1)
    shares = np.cumsum(ratios)[:-1] / sum(ratios)
    arm = np.empty((runs, n), dtype=np.int64)
    np.put_along_axis(arm, order, np.searchsorted(shares, fraction, side="right"), 1)
    return arm


def _visits(p: Parameters, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(randomisation day, site, arm) per run and participant, and each treatment's day and whether
    it happens (the participant has not dropped out)."""
    runs, n, sites = p.runs, p.participants, len(p.sites)
    per_site_day = p.randomised_per_day / sites
    if p.steady_enrolment:
        times = np.broadcast_to(np.arange(n) / per_site_day, (runs, sites, n))
    else:
        times = rng.exponential(1 / per_site_day, (runs, sites, n)).cumsum(axis=2)
    flat = times.reshape(runs, sites * n)
    order = np.argsort(flat, axis=1, kind="stable")[:, :n]  # the first n randomised, whichever site
    randomised = np.floor(np.take_along_axis(flat, order, 1)).astype(np.int64)
    site = order // n
    arm = _arms(rng, runs, n, p.block_sizes, tuple(a.ratio for a in p.arms))
    later = np.arange(p.treatments) * p.interval_days
    offset = (np.zeros((runs, n, p.treatments), dtype=np.int64) if p.steady_enrolment
              else rng.integers(-p.window_days, p.window_days + 1, (runs, n, p.treatments)))
    offset[..., 0] = 0
    day = randomised[..., None] + later + offset
    stays = rng.random((runs, n, p.treatments)) >= p.dropout
    stays[..., 0] = True
    return randomised, site, arm, day, np.logical_and.accumulate(stays, axis=2)


def simulate(p: Parameters) -> Results:
    started_at = time.perf_counter()
    rng = np.random.default_rng(p.seed)
    runs, n_sites, n_arms = p.runs, len(p.sites), len(p.arms)
    randomised, site, arm, day, happens = _visits(p, rng)
    t0 = -p.lead_days
    last_visit = np.where(happens, day, t0).max(axis=(1, 2))
    n_days = min(int(last_visit.max()) - t0 + p.transit_days + 2, int(MAX_DAYS * 1.5))
    run_of = np.broadcast_to(np.arange(runs)[:, None, None], day.shape)
    arm_of = np.broadcast_to(arm[..., None], day.shape)
    site_of = np.broadcast_to(site[..., None], day.shape)
    kept = happens & (day - t0 < n_days)
    cell = (((day - t0) * runs + run_of) * n_arms + arm_of) * n_sites + site_of
    demand = np.bincount(cell[kept], minlength=n_days * runs * n_arms * n_sites).astype(np.int32)
    demand = demand.reshape(n_days, runs, n_arms, n_sites)
    busy: np.ndarray = np.asarray(demand.reshape(n_days, -1).any(axis=1))
    rand_cell = ((randomised - t0) * runs + np.arange(runs)[:, None]) * n_arms + arm
    randomised_by = np.bincount(rand_cell.ravel(), minlength=n_days * runs * n_arms)[: n_days * runs * n_arms]
    randomised_by = randomised_by.reshape(n_days, runs, n_arms).cumsum(axis=0, dtype=np.int32)

    def randomised_until(index: int) -> np.ndarray:  # (runs, arms) randomised on or before day index
        return randomised_by[min(index, n_days - 1)] if index >= 0 else np.zeros((runs, n_arms), np.int32)

    lots = max(lots_bound(p, a) for a in p.arms)
    kits_per_lot = np.array([a.kits_per_lot(p.vials_per_kit) for a in p.arms])
    share = np.array([a.share for a in p.arms])
    make = np.array([a.make_days for a in p.arms])
    ready = make + np.array([a.release_days for a in p.arms])
    capacity = np.array([a.lots_per_month for a in p.arms])
    site_min = np.array([a.site_min for a in p.arms])[None]  # (1, arms, sites)
    site_max = np.array([a.site_max for a in p.arms])[None]
    horizon = ready + p.transit_days + 28  # the forecast covers a lot's lead time and a month more
    survive = (1 - p.dropout) ** np.arange(p.treatments)

    start = np.full((runs, n_arms, lots), NEVER)
    release = np.full((runs, n_arms, lots), NEVER)
    expiry = np.full((runs, n_arms, lots), -NEVER)
    bench = np.zeros((runs, n_arms, lots), np.int32)  # kits made (released or not), not yet shipped
    stock = np.zeros((runs, n_arms, n_sites, lots), np.int32)
    slots = p.transit_days + 1
    pipe = np.zeros((slots, runs, n_arms, n_sites, lots), np.int32)
    in_transit = np.zeros((runs, n_arms, n_sites), np.int32)
    waiting = np.zeros((runs, n_arms, n_sites), np.int32)
    on_hand = np.zeros((runs, n_arms, n_sites), np.int32)  # kits in date at each site, kept as kits move
    loaded = [False] * slots  # which day's arrivals hold anything
    expiring: set[int] = set()  # the days some lot expires
    ship_margin = max(p.do_not_ship_days, p.transit_days)  # not within do-not-ship days, nor expiring in transit
    stockout = np.zeros((runs, n_arms, n_sites), bool)
    started = np.zeros((runs, n_arms), np.int64)
    credit = np.broadcast_to(np.maximum(capacity, 1.0), (runs, n_arms)).copy()

    for i in range(n_days):
        t = t0 + i
        slot = i % slots
        if loaded[slot]:
            arriving = pipe[slot]
            came = arriving.sum(axis=-1)
            stock += arriving
            on_hand += came  # shipped only with more days to expiry than the transit: in date on arrival
            in_transit -= came
            arriving[...] = 0
            loaded[slot] = False
        if t in expiring:  # kits of lots expiring today leave the sites' usable stock
            on_hand -= np.where((expiry == t)[:, :, None, :], stock, 0).sum(axis=-1)
        position = on_hand + in_transit - waiting
        order = np.where(position < site_min, site_max - position, 0)
        if order.any():
            rows = np.flatnonzero(order.any(axis=(1, 2)))
            shippable = np.where((release[rows] <= t) & (expiry[rows] - t > ship_margin), bench[rows], 0)
            for s in range(n_sites):
                sent = _take(order[rows, :, s], shippable)
                shippable -= sent
                bench[rows] -= sent
                count = sent.sum(axis=-1)
                if p.transit_days:
                    pipe[(i + p.transit_days) % slots, rows, :, s] += sent
                    in_transit[rows, :, s] += count
                    loaded[(i + p.transit_days) % slots] = True
                else:
                    stock[rows, :, s] += sent
                    on_hand[rows, :, s] += count
        if busy[i] or waiting.any():
            need = demand[i] + waiting
            rows = np.flatnonzero(need.any(axis=(1, 2)))
            usable = np.where((expiry[rows] > t)[:, :, None, :], stock[rows], 0)
            taken = _take(need[rows], usable)
            stock[rows] -= taken
            served = taken.sum(axis=-1)
            on_hand[rows] -= served
            short = need[rows] - served
            stockout[rows] |= short > 0
            waiting[rows] = short
        if i % 7:
            continue
        # The bench's weekly plan, per run and arm.
        credit = np.minimum(credit + capacity * 7 / DAYS_PER_MONTH, np.maximum(capacity, 1.0))
        held = (np.where(expiry - t > p.do_not_ship_days, bench, 0).sum(axis=-1)
                + on_hand.sum(axis=-1) + in_transit.sum(axis=-1) - waiting.sum(axis=-1))
        so_far = randomised_until(i)
        left_to_randomise = (p.participants - so_far.sum(axis=1))[:, None] * share
        remaining = left_to_randomise * survive.sum()
        coming = np.empty((runs, n_arms))
        for a in range(n_arms):
            enrolling = max(0, t + int(horizon[a]) - max(t, 0)) * p.randomised_per_day * share[a]
            coming[:, a] = np.minimum(enrolling, left_to_randomise[:, a])
            for k in range(1, p.treatments):
                back = k * p.interval_days
                pending = so_far[:, a] - randomised_until(i - back - p.window_days - 1)[:, a]
                remaining[:, a] += pending * survive[k]
                due = (randomised_until(min(i, i + int(horizon[a]) - back + p.window_days))[:, a]
                       - randomised_until(i - back - p.window_days - 1)[:, a])
                coming[:, a] += due * survive[k]
        target = np.where(remaining >= 0.5, np.minimum(coming, remaining) + site_max[0].sum(axis=1), 0)
        deficit = target - held
        new = np.where(deficit > 0, np.ceil(deficit / kits_per_lot), 0).astype(np.int64)
        new = np.minimum(np.minimum(new, np.floor(credit).astype(np.int64)), lots - started)
        credit -= new
        for j in range(int(new.max(initial=0))):
            at_run, at_arm = np.nonzero(new > j)
            at_lot = started[at_run, at_arm]
            start[at_run, at_arm, at_lot] = t
            release[at_run, at_arm, at_lot] = t + ready[at_arm]
            expiry[at_run, at_arm, at_lot] = t + make[at_arm] + p.shelf_life_days
            bench[at_run, at_arm, at_lot] = kits_per_lot[at_arm]
            expiring.update(np.unique(expiry[at_run, at_arm, at_lot]).tolist())
            started[at_run, at_arm] += 1

    # What is left at the end: kits that expired before the run's last visit, and kits still in date.
    unused = bench + stock.sum(axis=2) + pipe.sum(axis=(0, 3))
    lapsed = expiry <= last_visit[:, None, None]
    needed = np.zeros((runs, n_arms), np.int64)
    np.add.at(needed, (run_of[happens], arm_of[happens]), 1)
    first_month = math.floor(t0 / DAYS_PER_MONTH)
    months = math.floor((n_days + t0) / DAYS_PER_MONTH) - first_month + 1
    month_of_visit = np.floor(day / DAYS_PER_MONTH).astype(np.int64) - first_month
    by_month = np.zeros((runs, n_arms, months), np.int64)
    fits = happens & (month_of_visit < months)
    np.add.at(by_month, (run_of[fits], arm_of[fits], month_of_visit[fits]), 1)
    made = start < NEVER
    lots_by_month = np.zeros((runs, n_arms, months), np.int64)
    made_run, made_arm, _ = np.nonzero(made)
    made_month = np.floor(start[made] / DAYS_PER_MONTH).astype(np.int64) - first_month
    np.add.at(lots_by_month, (made_run, made_arm, made_month), 1)
    vials_per_lot = np.array([x.lot_vials for x in p.arms])
    return Results(
        params=p, first_month=first_month, kits_needed_by_month=by_month, lots_started_by_month=lots_by_month,
        kits_needed=needed, lots_minimum=-(-needed * p.vials_per_kit // vials_per_lot), lots_started=started,
        lots_before_first_visit=(made & (start < 0)).sum(axis=2), stockout=stockout,
        expired=np.where(lapsed, unused, 0).sum(axis=2), left_over=np.where(lapsed, 0, unused).sum(axis=2),
        never_dispensed=waiting.sum(axis=2), last_visit_day=last_visit, bound_reached=bool((started >= lots).any()),
        seconds=time.perf_counter() - started_at)
