"""What a supply simulation is run with: the study's schedule and presentation, and the supply
manager's assumptions about enrolment, manufacturing and resupply. Defaults come from the study file
and the specifications; the form may change every one, each checked by `inputs` and bounded so that
no request can stall the page (the work is runs × simulated days × lots, and each is capped).

"PROPOSAL" marks a default that neither the study file nor a specification states: the sponsor
confirms it, or the supply manager changes it on the form.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple

from .. import inputs
from ..errors import InvalidInput
from ..studies import StudyDefinition

DAYS_PER_MONTH = 365.25 / 12
MIN_RUNS, MAX_RUNS = 1000, 5000
# The work one request may ask for. The day loop costs about runs × lots × (simulated days + visits):
# each lot is a column of every stock array, handled every day and again on each day a run has a
# visit. MESRIX-more's defaults are 1,000 × 51 × (1,396 + 200), 2–5 s here; three times that is the
# most a page may wait for (measured: 2,000 participants at 1,000 runs, six times the work, took 27 s
# at load 7 on 2 cores). The visits drawn at the start hold runs × participants × treatments numbers
# (8 bytes each, a few arrays of them): MESRIX-more's are 200,000; 5 million at most.
MAX_WORK = 3 * 1000 * 51 * (1396 + 200)
MAX_VISITS = 5_000_000
MAX_DAYS = 6000  # about 16 years from the first lot to the last visit
MAX_LOTS = 400  # lots one arm may need in one run: beyond that the lot size is absurd for the trial

# ASC lots (asc-cs10): the fill step allows 2–100 vials; the demo's lots fill 14, of which 2 are
# pulled for QC and 2 kept as retained samples, leaving 10 for kits (5 kits of 2 vials). Saline lots
# fill 46 and keep 5 back: 41 for kits. PROPOSAL: the bench's real yield replaces these.
USABLE_VIALS = {"asc": 10, "placebo": 41}
LOTS_PER_MONTH = {"asc": 2.0, "placebo": 1.0}  # PROPOSAL: the bench's capacity, one clean room
MAKE_DAYS = {"asc": 28, "placebo": 7}  # PROPOSAL: start to controlled-rate freezing (ASC: isolation, two passages)
RELEASE_DAYS = {"asc": 21, "placebo": 14}  # PROPOSAL: freezing to release (sterility 14 days, QP, sponsor)
SITE_MIN, SITE_MAX = 2, 4  # PROPOSAL: kits per site and arm, as resupply triggers and refills


@dataclass(frozen=True)
class ArmSupply:
    """One arm's product and resupply settings: kits of an arm come only from its own lots."""

    code: str
    name: str
    product_kind: str  # asc or placebo
    ratio: int  # the allocation ratio's part for this arm
    share: float  # of participants, from the allocation ratio
    lot_vials: int  # vials a lot gives for kits, after QC and retained samples
    lots_per_month: float  # the bench's capacity for this product
    make_days: int  # lot start to freezing (expiry counts from freezing)
    release_days: int  # freezing to release for kits
    site_min: tuple[int, ...]  # per site, in Parameters.sites order: resupply when stock falls below
    site_max: tuple[int, ...]  # per site: resupply brings stock up to this

    def kits_per_lot(self, vials_per_kit: int) -> int:
        return self.lot_vials // vials_per_kit


@dataclass(frozen=True)
class Parameters:
    study: str
    runs: int
    seed: int
    participants: int
    sites: tuple[str, ...]
    screened_per_site_month: float
    screen_failure: float  # fraction of those screened who are not randomised
    dropout: float  # fraction leaving before each later treatment
    steady_enrolment: bool  # evenly spaced randomisations instead of a Poisson process (a hand check)
    block_sizes: tuple[int, ...]  # the study's permuted blocks (one central list, not stratified by site)
    treatments: int
    interval_days: int
    window_days: int  # ± around each later treatment's target day
    vials_per_kit: int
    shelf_life_months: float  # from freezing
    do_not_ship_days: int  # a kit with fewer days to expiry is not shipped
    transit_days: int
    lead_days: int  # the first lots are started this many days before the first site opens
    arms: tuple[ArmSupply, ...]

    @property
    def shelf_life_days(self) -> int:
        return round(self.shelf_life_months * DAYS_PER_MONTH)

    @property
    def randomised_per_day(self) -> float:
        return len(self.sites) * self.screened_per_site_month * (1 - self.screen_failure) / DAYS_PER_MONTH

    def expected_days(self) -> int:
        """From the first lot to the last visit if enrolment ran at its expected pace, with slack
        for a slow run (the simulation's time axis is this long, or as long as the slowest run)."""
        enrolment = self.participants / self.randomised_per_day if self.randomised_per_day > 0 else math.inf
        return math.ceil(self.lead_days + 1.5 * enrolment + 30
                         + (self.treatments - 1) * (self.interval_days + self.window_days))


StockSettings = Mapping[tuple[str, str], tuple[int, int]]  # (arm, site) -> (minimum, maximum) kits


def defaults(d: StudyDefinition, *, runs: int = MIN_RUNS, seed: int = 15,
             stock: StockSettings | None = None) -> Parameters:
    """The study file's figures; each site's stock per arm from the resupply settings in `stock`
    (the supply manager's own), else the proposal below."""
    sites = tuple(site.code for site in d.sites)
    stock = stock or {}
    cycle = sum(arm.ratio for arm in d.arms)
    kind = ("asc", "placebo")
    arms = tuple(ArmSupply(
        code=arm.code, name=arm.name, product_kind=arm.product_kind, ratio=arm.ratio, share=arm.ratio / cycle,
        lot_vials=USABLE_VIALS[arm.product_kind if arm.product_kind in kind else "asc"],
        lots_per_month=LOTS_PER_MONTH.get(arm.product_kind, 1.0), make_days=MAKE_DAYS.get(arm.product_kind, 28),
        release_days=RELEASE_DAYS.get(arm.product_kind, 21),
        site_min=tuple(stock.get((arm.code, site), (SITE_MIN, SITE_MAX))[0] for site in sites),
        site_max=tuple(stock.get((arm.code, site), (SITE_MIN, SITE_MAX))[1] for site in sites)) for arm in d.arms)
    return Parameters(
        study=d.study.code, runs=runs, seed=seed, participants=d.study.target_enrolment, sites=sites,
        screened_per_site_month=2.5, screen_failure=0.2, dropout=0.1,  # PROPOSAL: 2 randomised a site a month
        steady_enrolment=False, block_sizes=d.randomisation.block_sizes, treatments=d.schedule.treatments,
        interval_days=d.schedule.interval_days,
        window_days=d.schedule.window_days, vials_per_kit=d.presentation.vials_per_kit,
        shelf_life_months=d.presentation.shelf_life_months, do_not_ship_days=d.supply.do_not_ship_days,
        transit_days=d.supply.transit_days, lead_days=90, arms=arms)


def field_names(p: Parameters) -> list[str]:
    """Every form field, in the form's order (the page and the PDF list them alike)."""
    names = ["runs", "seed", "participants", "screened_per_site_month", "screen_failure", "dropout", "enrolment",
             "treatments", "interval_days", "window_days", "vials_per_kit", "shelf_life_months", "do_not_ship_days",
             "transit_days", "lead_days"]
    for arm in p.arms:
        names += [f"{arm.code}.{key}" for key in ("lot_vials", "lots_per_month", "make_days", "release_days")]
        names += [f"{arm.code}.{site}.{end}" for site in p.sites for end in ("min", "max")]
    return names


def as_form(p: Parameters) -> dict[str, str]:
    """The parameters as the form shows them (and as a query string carries them)."""
    values: dict[str, object] = {
        "runs": p.runs, "seed": p.seed, "participants": p.participants,
        "screened_per_site_month": f"{p.screened_per_site_month:g}", "screen_failure": f"{p.screen_failure:g}",
        "dropout": f"{p.dropout:g}", "enrolment": "steady" if p.steady_enrolment else "random",
        "treatments": p.treatments, "interval_days": p.interval_days, "window_days": p.window_days,
        "vials_per_kit": p.vials_per_kit, "shelf_life_months": f"{p.shelf_life_months:g}",
        "do_not_ship_days": p.do_not_ship_days, "transit_days": p.transit_days, "lead_days": p.lead_days}
    for arm in p.arms:
        values |= {f"{arm.code}.lot_vials": arm.lot_vials, f"{arm.code}.lots_per_month": f"{arm.lots_per_month:g}",
                   f"{arm.code}.make_days": arm.make_days, f"{arm.code}.release_days": arm.release_days}
        for i, site in enumerate(p.sites):
            values |= {f"{arm.code}.{site}.min": arm.site_min[i], f"{arm.code}.{site}.max": arm.site_max[i]}
    return {key: str(value) for key, value in values.items()}


def from_form(d: StudyDefinition, form: Mapping[str, object], stock: StockSettings | None = None) -> Parameters:
    """The parameters a form (or query string) gives, each field falling back to its default when
    absent; a field given but wrong raises InvalidInput naming it, before anything is simulated."""
    base = defaults(d, stock=stock)
    typed = as_form(base) | {key: str(value) for key, value in form.items() if key in set(field_names(base))}

    def whole(name: str, what: str, lo: int, hi: int) -> int:
        return inputs.whole(typed[name], name, what, minimum=lo, maximum=hi)

    def number(name: str, what: str, lo: float, hi: float) -> float:
        return inputs.number(typed[name], name, what, minimum=lo, maximum=hi)

    enrolment = typed["enrolment"].strip()
    if enrolment not in ("random", "steady"):
        raise InvalidInput("Enrolment is random (a Poisson process) or steady (evenly spaced).", field="enrolment")
    interval = whole("interval_days", "interval between treatments (days)", 0, 730)
    vials_per_kit = whole("vials_per_kit", "vials per kit", 1, 20)
    arms = []
    for arm in base.arms:
        def key(name: str, code: str = arm.code) -> str:
            return f"{code}.{name}"
        lot_vials = whole(key("lot_vials"), f"{arm.code} vials per lot for kits", 1, 5000)
        if lot_vials < vials_per_kit:
            raise InvalidInput(f"A {arm.code} lot of {lot_vials} vials fills no kit of {vials_per_kit}.",
                               field=key("lot_vials"))
        mins, maxes = [], []
        for site in base.sites:
            low = whole(key(f"{site}.min"), f"{arm.code} minimum at {site} (kits)", 0, 1000)
            high = whole(key(f"{site}.max"), f"{arm.code} maximum at {site} (kits)", 0, 1000)
            if high < low:
                raise InvalidInput(f"The {arm.code} maximum at {site} is below its minimum ({low}).",
                                   field=key(f"{site}.max"))
            mins.append(low)
            maxes.append(high)
        arms.append(replace(
            arm, lot_vials=lot_vials,
            lots_per_month=number(key("lots_per_month"), f"{arm.code} lots per month", 0.1, 60),
            make_days=whole(key("make_days"), f"{arm.code} days from lot start to freezing", 0, 365),
            release_days=whole(key("release_days"), f"{arm.code} days from freezing to release", 0, 365),
            site_min=tuple(mins), site_max=tuple(maxes)))
    window = whole("window_days", "visit window (± days)", 0, 365)
    if interval and window * 2 >= interval:
        raise InvalidInput("The visit window (±) must be less than half the interval between treatments.",
                           field="window_days")
    p = replace(
        base, runs=whole("runs", "number of trial runs", MIN_RUNS, MAX_RUNS),
        seed=whole("seed", "seed", 0, 2**63 - 1), participants=whole("participants", "participants", 1, 2000),
        screened_per_site_month=number("screened_per_site_month", "participants screened per site per month", 0.1,
                                       500),
        screen_failure=number("screen_failure", "screen-failure fraction", 0, 0.95),
        dropout=number("dropout", "drop-out fraction before each later treatment", 0, 1),
        steady_enrolment=enrolment == "steady", treatments=whole("treatments", "treatments per participant", 1, 12),
        interval_days=interval, window_days=window, vials_per_kit=vials_per_kit,
        shelf_life_months=number("shelf_life_months", "shelf life (months)", 0.1, 240),
        do_not_ship_days=whole("do_not_ship_days", "do-not-ship days", 0, 3650),
        # no longer than the dry shipper's validated hold time (the study's presentation)
        transit_days=whole("transit_days", "transit days", 0, d.presentation.transport_hold_days),
        lead_days=whole("lead_days", "days the first lots start before the first site opens", 0, 1000),
        arms=tuple(arms))
    check_work(p)
    return p


def lots_bound(p: Parameters, arm: ArmSupply) -> int:
    """The most lots one run of this arm may start: twice what the trial and its sites' stock would
    need with no waste, and a few more (expiry may waste lots; a run that needs more wastes half its
    lots, and says so by reaching the bound). Every lot is a column of every stock array: the bound
    is what the model's time is proportional to."""
    kits = p.participants * arm.share * p.treatments + sum(arm.site_max) * 2
    return math.ceil(2 * kits / arm.kits_per_lot(p.vials_per_kit)) + 4


def check_work(p: Parameters) -> None:
    """Refuse parameters that would make the page wait: too long a trial, too many runs for it, or
    lots so small that one arm needs hundreds."""
    days = p.expected_days()
    if days > MAX_DAYS:
        raise InvalidInput(f"At this pace the trial would take about {days / 365.25:.0f} years; the simulation "
                           f"covers at most {MAX_DAYS / 365.25:.0f}. Raise the enrolment rate.",
                           field="screened_per_site_month")
    for arm in p.arms:
        if lots_bound(p, arm) > MAX_LOTS:
            raise InvalidInput(f"With {arm.lot_vials} vials a lot the {arm.code} arm would need hundreds of lots; "
                               "give the lot's real yield.", field=f"{arm.code}.lot_vials")
    visits = p.participants * p.treatments
    if p.runs * visits > MAX_VISITS:
        raise InvalidInput(f"{p.participants} participants × {p.treatments} treatments allow at most "
                           f"{MAX_VISITS // visits} runs.", field="runs" if p.runs > MIN_RUNS else "participants")
    smallest = max(p.arms, key=lambda arm: lots_bound(p, arm))
    lots = lots_bound(p, smallest)
    if p.runs * lots * (days + visits) > MAX_WORK:
        if p.runs > MIN_RUNS:
            raise InvalidInput(f"These parameters allow at most {max(MAX_WORK // (lots * (days + visits)), 1)} runs "
                               "(the work grows with runs × the lots of an arm × the trial's days and visits).",
                               field="runs")
        if visits > 4 * 200:
            raise InvalidInput(f"{p.participants} participants × {p.treatments} treatments are too many to simulate "
                               f"in lots of {smallest.lot_vials} vials.", field="participants")
        if lots > 2 * 54:
            raise InvalidInput(f"With {smallest.lot_vials} vials a lot the {smallest.code} arm needs too many lots "
                               f"for a trial this long; give the lot's real yield.", field=f"{smallest.code}.lot_vials")
        raise InvalidInput(f"At this pace the trial would take about {days / 365.25:.0f} years, too long to "
                           f"simulate in lots of this size. Raise the enrolment rate.", field="screened_per_site_month")


GENERAL_LABELS = {
    "runs": "Trial runs", "seed": "Seed", "participants": "Participants randomised",
    "screened_per_site_month": "Screened per site per month", "screen_failure": "Screen failure (fraction)",
    "dropout": "Drop-out before each later treatment (fraction)", "enrolment": "Enrolment (random or steady)",
    "treatments": "Treatments per participant", "interval_days": "Days between treatments",
    "window_days": "Visit window (± days)", "vials_per_kit": "Vials per kit",
    "shelf_life_months": "Shelf life (months)",
    "do_not_ship_days": "Do-not-ship days before expiry", "transit_days": "Transit days, bench to site",
    "lead_days": "First lots start (days before the first site opens)",
}
ARM_LABELS = {"lot_vials": "vials a lot gives for kits", "lots_per_month": "lots the bench can start per month",
              "make_days": "days from lot start to freezing", "release_days": "days from freezing to release",
              "min": "minimum (kits)", "max": "maximum (kits)"}


# Where each default comes from; "PROPOSAL": an assumption the sponsor confirms or the form changes.
SOURCES = {
    "participants": "study file: target enrolment", "treatments": "study file: schedule",
    "interval_days": "study file: schedule", "window_days": "study file: schedule",
    "vials_per_kit": "study file: presentation", "shelf_life_months": "study file: presentation",
    "do_not_ship_days": "study file: supply", "transit_days": "study file: supply",
    "screened_per_site_month": "PROPOSAL", "screen_failure": "PROPOSAL", "dropout": "PROPOSAL",
    "lead_days": "PROPOSAL", "lot_vials": "PROPOSAL: the demo's lots less their QC and retained vials",
    "lots_per_month": "PROPOSAL", "make_days": "PROPOSAL", "release_days": "PROPOSAL",
    "min": "the site's resupply settings; PROPOSAL where none is set", "max": "the site's resupply settings; PROPOSAL "
    "where none is set",
}


class Field(NamedTuple):
    name: str
    label: str
    value: str
    source: str  # where the default comes from


def labelled(p: Parameters) -> list[Field]:
    """Every parameter with its label, value and the source of its default, in the form's order: the
    form and the PDF alike."""
    values = as_form(p)
    out = []
    for name in field_names(p):
        parts = name.split(".")
        if len(parts) == 1:
            label = GENERAL_LABELS[name]
        elif len(parts) == 2:
            label = f"{parts[0]}: {ARM_LABELS[parts[1]]}"
        else:
            label = f"{parts[0]} at {parts[1]}: {ARM_LABELS[parts[2]]}"
        out.append(Field(name, label, values[name], SOURCES.get(parts[-1], "")))
    return out
