"""The simulation as a PDF a sponsor keeps: what was assumed (every parameter and the seed, so the
same figures can be had again), the figures table, and the three charts drawn with fpdf2's lines,
rectangles and polygons from the same shapes as the page's SVG."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
from fpdf import FPDF

from ..labels import find_label_fonts
from ..reports import BOLD, RecordPDF, when
from .figures import Chart, charts, duration_text, rows
from .model import Results
from .parameters import labelled
from .plots import HEIGHT, WIDTH, Band, Box, Label, Line, layout

PT_PER_MM = 72 / 25.4


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def draw(pdf: FPDF, chart: Chart, x: float, y: float, width: float) -> float:
    """The chart at (x, y) mm, `width` mm wide; returns its height in mm."""
    scale = width / WIDTH

    def at(point: tuple[float, float]) -> tuple[float, float]:
        return x + point[0] * scale, y + point[1] * scale

    for shape in layout(chart):
        if isinstance(shape, Line):
            pdf.set_draw_color(*_rgb(shape.colour))
            pdf.set_line_width(shape.width * scale)
            pdf.polyline([at(point) for point in shape.points])
        elif isinstance(shape, Box):
            pdf.set_fill_color(*_rgb(shape.colour))
            pdf.rect(x + shape.x * scale, y + shape.y * scale, shape.w * scale, shape.h * scale, style="F")
        elif isinstance(shape, Band):
            pdf.set_fill_color(*_rgb(shape.colour))
            with pdf.local_context(fill_opacity=0.18):
                pdf.polygon([at(point) for point in shape.points], style="F")
        elif isinstance(shape, Label):
            pdf.set_font("Doc", "B" if shape.bold else "", shape.size * scale * PT_PER_MM)
            pdf.set_text_color(34, 34, 34)
            left, base = at((shape.x, shape.y))
            shift = {"start": 0.0, "middle": 0.5, "end": 1.0}[shape.anchor] * pdf.get_string_width(shape.text)
            if shape.rotate:
                with pdf.rotation(90, left, base):
                    pdf.text(left - shift, base, shape.text)
            else:
                pdf.text(left - shift, base, shape.text)
    pdf.set_line_width(0.2)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_font("Doc", "", 8)
    return HEIGHT * scale


def simulation_pdf(res: Results, *, study_title: str, printed_by: str, zone: ZoneInfo, now: datetime) -> bytes:
    p = res.params
    pdf = RecordPDF(find_label_fonts(), f"Supply simulation · {p.study} · seed {p.seed} · page {{page}} · "
                                        f"printed {when(now, zone)} by {printed_by}")
    pdf.set_title(f"Supply simulation {p.study}")
    pdf.add_page()
    pdf.heading(f"Supply simulation: {p.study}", 14)
    pdf.line_of([("", study_title)])
    pdf.line_of([("", "Planning figures from a Monte-Carlo model of enrolment, visits, resupply and manufacturing. "
                      "The same parameters and seed give the same figures with the same cellbench and numpy.")])
    pdf.pairs([("Runs", str(p.runs)), ("Seed", str(p.seed)), ("Trial length", duration_text(res)),
               ("Computed in", f"{res.seconds:.1f} s with numpy {np.__version__}")])
    if res.bound_reached:
        pdf.line_of([("B", "Some runs wanted more lots than the simulation holds: their waste is larger still.")])
    pdf.heading("Figures per arm")
    arms = tuple(arm.code for arm in p.arms)
    pdf.grid(("Figure", *arms, "How it is counted"), (40, *(22,) * len(arms), 50),
             [[{"text": row.label, "style": BOLD}, *row.values, row.note] for row in rows(res)])
    for chart in charts(res):
        height = pdf.epw * HEIGHT / WIDTH
        if pdf.get_y() + height > pdf.h - pdf.b_margin:
            pdf.add_page()
        top = pdf.get_y() + 2
        draw(pdf, chart, pdf.l_margin, top, pdf.epw)
        pdf.set_y(top + height + 2)
        pdf.line_of([("", chart.description)])
    pdf.heading("Parameters")
    pdf.grid(("Parameter", "Field", "Value", "Default from"), (70, 45, 20, 55),
             [[{"text": f.label, "style": BOLD}, f.name, f.value, f.source] for f in labelled(p)])
    return bytes(pdf.output())
