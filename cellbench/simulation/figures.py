"""What a simulation's results say, as the page and the PDF both show them: the figures table (one
column per arm) and the charts (as data: `plots` draws them, in SVG for the page and on the PDF)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import Results
from .parameters import DAYS_PER_MONTH

ARM_COLOURS = ("#1f5fa8", "#c05a00", "#2e7d32", "#7b1fa2")  # arms in study order; distinct in grey too


@dataclass(frozen=True)
class Row:
    label: str
    values: tuple[str, ...]  # one per arm
    note: str = ""


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple[float, ...]
    colour: str
    low: tuple[float, ...] | None = None  # a band (5th to 95th percentile) around a line
    high: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    description: str  # what a screen reader says the chart shows, with its main numbers
    kind: str  # "line" or "bar"
    categories: tuple[str, ...]  # the x axis
    x_label: str
    y_label: str
    series: tuple[Series, ...]
    percent: bool = False


def _spread(values: np.ndarray) -> str:
    mean, low, high = values.mean(), np.percentile(values, 5), np.percentile(values, 95)
    return f"{mean:.1f} ({low:.0f}–{high:.0f})"


def rows(res: Results) -> list[Row]:
    p = res.params
    per_arm = range(len(p.arms))
    table = [
        Row("Kits needed", tuple(_spread(res.kits_needed[:, a]) for a in per_arm),
            "visits that took or waited for a kit; mean (5th–95th percentile of runs)"),
        Row("Vials needed", tuple(_spread(res.kits_needed[:, a] * p.vials_per_kit) for a in per_arm),
            f"{p.vials_per_kit} vials a kit"),
        Row("Lots needed at least", tuple(_spread(res.lots_minimum[:, a]) for a in per_arm),
            "vials needed ÷ vials a lot gives, rounded up: no kit wasted"),
        Row("Lots started", tuple(_spread(res.lots_started[:, a]) for a in per_arm),
            "by the weekly plan, within the bench's capacity"),
        Row("Lots started before the first site opens", tuple(_spread(res.lots_before_first_visit[:, a])
                                                             for a in per_arm)),
        Row("Kits expired unused", tuple(_spread(res.expired[:, a]) for a in per_arm),
            "expired before the trial's last visit, at the bench or a site"),
        Row("Kits in date left at the last visit", tuple(_spread(res.left_over[:, a]) for a in per_arm)),
        *(Row(f"Runs with a stock-out at {site}", tuple(f"{res.stockout[:, a, s].mean():.1%}" for a in per_arm),
              "a visit found no kit of its arm in date")
          for s, site in enumerate(p.sites)),
        Row("Visits still without a kit at the end", tuple(_spread(res.never_dispensed[:, a]) for a in per_arm)),
    ]
    return table


def duration_text(res: Results) -> str:
    months = res.last_visit_day / DAYS_PER_MONTH
    return (f"{months.mean():.1f} months from the first site's opening to the last visit "
            f"(5th–95th percentile {np.percentile(months, 5):.0f}–{np.percentile(months, 95):.0f})")


def _trimmed(res: Results) -> slice:
    """The months that have something to show: from the first lot to the last visit of any run."""
    busy = (res.kits_needed_by_month.sum(axis=(0, 1)) + res.lots_started_by_month.sum(axis=(0, 1))) > 0
    index = np.flatnonzero(busy)
    return slice(0, int(index[-1]) + 1 if index.size else 1)


def charts(res: Results) -> list[Chart]:
    p, cut = res.params, _trimmed(res)
    months = tuple(str(m) for m in res.months[cut])
    kits = res.kits_needed_by_month[:, :, cut]
    lots = res.lots_started_by_month[:, :, cut]
    names = [arm.code for arm in p.arms]
    colours = ARM_COLOURS
    kit_series = tuple(Series(names[a], tuple(kits[:, a].mean(axis=0)), colours[a % 4],
                              tuple(np.percentile(kits[:, a], 5, axis=0)), tuple(np.percentile(kits[:, a], 95, axis=0)))
                       for a in range(len(names)))
    lot_series = tuple(Series(names[a], tuple(lots[:, a].mean(axis=0)), colours[a % 4]) for a in range(len(names)))
    stock_series = tuple(Series(names[a], tuple(float(res.stockout[:, a, s].mean()) for s in range(len(p.sites))),
                                colours[a % 4]) for a in range(len(names)))
    peak = [f"{n}: {kits[:, a].mean(axis=0).max():.1f}" for a, n in enumerate(names)]
    total = [f"{n}: {res.lots_started[:, a].mean():.1f}" for a, n in enumerate(names)]
    odds = [f"{n} at {site}: {res.stockout[:, a, s].mean():.0%}" for a, n in enumerate(names)
            for s, site in enumerate(p.sites)]
    return [
        Chart("kits", "Kits needed per month", "Mean kits dispensed per month for each arm, with the band from the "
              f"5th to the 95th percentile of {p.runs} runs. Peak month means: {', '.join(peak)}.",
              "line", months, "Month from the first site's opening", "Kits", kit_series),
        Chart("lots", "Lots started per month", "Mean lots started per month for each arm (negative months: before "
              f"the first site opens). Lots started in all: {', '.join(total)}.", "bar", months,
              "Month from the first site's opening", "Lots", lot_series),
        Chart("stockout", "Probability of a stock-out", "Share of runs in which a visit found no kit of its arm in "
              f"date, per site and arm: {', '.join(odds)}.", "bar", p.sites, "Site", "Runs with a stock-out",
              stock_series, percent=True),
    ]
