"""Line and bar charts drawn by hand: `layout` turns a chart into a few shapes (lines, boxes, bands,
labels) in a 640 × 300 frame, and the page writes them as SVG while the PDF draws the very same shapes
with fpdf2's primitives, so the two cannot disagree. No plotting library: three charts of a few dozen
points each need axes, ticks, a legend and a title, which is this module."""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from .figures import Chart

WIDTH, HEIGHT = 640.0, 300.0
LEFT, RIGHT, TOP, BOTTOM = 62.0, 16.0, 52.0, 46.0
INK, GRID = "#222222", "#d6d6d6"


@dataclass(frozen=True)
class Line:
    points: tuple[tuple[float, float], ...]
    colour: str
    width: float = 1.0


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float
    colour: str


@dataclass(frozen=True)
class Band:
    points: tuple[tuple[float, float], ...]  # a closed polygon, drawn translucent
    colour: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float  # the baseline
    text: str
    anchor: str = "start"  # start, middle, end
    size: float = 11.0
    bold: bool = False
    rotate: bool = False  # a vertical axis title, read bottom to top


Shape = Line | Box | Band | Label


def nice_top(value: float) -> float:
    """The axis's top: 1, 2, 2.5 or 5 times a power of ten, at or above the highest value."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)


def _tick(value: float, percent: bool) -> str:
    if percent:
        return f"{value:.0%}"
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def layout(chart: Chart) -> list[Shape]:
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    highest = max((max(s.high or s.values, default=0) for s in chart.series), default=0)
    top = 1.0 if chart.percent else nice_top(highest)

    def y_of(value: float) -> float:
        return y1 - (y1 - y0) * min(value, top) / top

    shapes: list[Shape] = [Label(x0, 20, chart.title, size=14, bold=True)]
    for i in range(6):  # horizontal grid and the value axis's ticks
        value = top * i / 5
        shapes += [Line(((x0, y_of(value)), (x1, y_of(value))), GRID, 0.6),
                   Label(x0 - 6, y_of(value) + 4, _tick(value, chart.percent), "end", 10)]
    shapes += [Line(((x0, y0), (x0, y1), (x1, y1)), INK, 1.0),
               Label(16, (y0 + y1) / 2, chart.y_label, "middle", 11, rotate=True),
               Label((x0 + x1) / 2, HEIGHT - 8, chart.x_label, "middle", 11)]
    n = max(len(chart.categories), 1)
    step = (x1 - x0) / n
    every = max(1, math.ceil(n / 14))  # no more than 14 labels under the axis
    for i, name in enumerate(chart.categories):
        centre = x0 + step * (i + 0.5)
        if i % every == 0:
            shapes += [Line(((centre, y1), (centre, y1 + 4)), INK, 0.8), Label(centre, y1 + 16, name, "middle", 10)]
    count = max(len(chart.series), 1)
    for k, series in enumerate(chart.series):
        if chart.kind == "bar":
            width = step * 0.8 / count
            for i, value in enumerate(series.values):
                left = x0 + step * (i + 0.1) + width * k
                if value > 0:
                    shapes.append(Box(left, y_of(value), width, y1 - y_of(value), series.colour))
        else:
            centres = [x0 + step * (i + 0.5) for i in range(len(series.values))]
            if series.low is not None and series.high is not None:
                upper = [(x, y_of(v)) for x, v in zip(centres, series.high, strict=True)]
                lower = [(x, y_of(v)) for x, v in zip(centres, series.low, strict=True)]
                shapes.append(Band(tuple(upper + lower[::-1]), series.colour))
            shapes.append(Line(tuple((x, y_of(v)) for x, v in zip(centres, series.values, strict=True)),
                               series.colour, 2.0))
    for k, series in enumerate(chart.series):  # the legend, on one line under the title
        left = x0 + 130 * k
        shapes += [Box(left, 30, 14, 10, series.colour), Label(left + 19, 39, series.name, size=11)]
    if chart.kind == "line" and any(s.low is not None for s in chart.series):
        shapes.append(Label(x1, 39, "bands: 5th–95th percentile of runs", "end", 10))
    return shapes


def _points(points: tuple[tuple[float, float], ...]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def svg(chart: Chart) -> Markup:
    """The chart as an inline SVG image with its title and description for screen readers."""
    anchor = {"start": "start", "middle": "middle", "end": "end"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH:g} {HEIGHT:g}" role="img" '
             'style="max-width:56rem;display:block" class="chart" '
             f'aria-labelledby="chart-{chart.key}-title chart-{chart.key}-desc">',
             f'<title id="chart-{chart.key}-title">{escape(chart.title)}</title>',
             f'<desc id="chart-{chart.key}-desc">{escape(chart.description)}</desc>',
             '<g font-family="sans-serif" fill="#222222">']
    for shape in layout(chart):
        if isinstance(shape, Line):
            parts.append(f'<polyline points="{_points(shape.points)}" fill="none" stroke="{shape.colour}" '
                         f'stroke-width="{shape.width:g}"/>')
        elif isinstance(shape, Box):
            parts.append(f'<rect x="{shape.x:.1f}" y="{shape.y:.1f}" width="{shape.w:.1f}" height="{shape.h:.1f}" '
                         f'fill="{shape.colour}"/>')
        elif isinstance(shape, Band):
            parts.append(f'<polygon points="{_points(shape.points)}" fill="{shape.colour}" fill-opacity="0.18"/>')
        else:
            turn = f' transform="rotate(-90 {shape.x:.1f} {shape.y:.1f})"' if shape.rotate else ""
            weight = ' font-weight="bold"' if shape.bold else ""
            parts.append(f'<text x="{shape.x:.1f}" y="{shape.y:.1f}" font-size="{shape.size:g}" '
                         f'text-anchor="{anchor[shape.anchor]}"{weight}{turn}>{escape(shape.text)}</text>')
    parts.append("</g></svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it is escaped above
