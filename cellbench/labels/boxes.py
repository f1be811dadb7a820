"""Box labels: a storage box's code as a QR symbol and in print, with where the box belongs (site,
tank, rack), one label a page at an exact size for a label printer. Scanning it at receipt or at a
move names the box. Nothing on it is about a kit, so it cannot say anything about an arm."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import qrcode
from qrcode.constants import ERROR_CORRECT_M

from ..pdf import fit_prefix
from .fonts import LabelFontMissing, glyphs, new_pdf

QUIET_MODULES = 4  # the white margin the QR standard asks for around the symbol
MIN_POINTS = 5.0  # smaller is not read reliably through frost


@dataclass(frozen=True)
class BoxLabel:
    code: str  # 'BOX-RH-ENT-001': the QR carries this and nothing else
    lines: tuple[str, ...]  # e.g. ("RH-ENT", "Tank 1", "rack A · 25 positions")


@dataclass(frozen=True)
class BoxLabelSize:
    width_mm: float = 70.0
    height_mm: float = 25.0


def _symbol(code: str):
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=1, border=QUIET_MODULES)
    qr.add_data(code)
    qr.make(fit=True)
    return qr.make_image().get_image().convert("L")


def render_box_labels_pdf(labels: Sequence[BoxLabel], *, size: BoxLabelSize | None = None,
                          creation_date: datetime | None = None) -> bytes:
    """One label a page, each page the label's size: the QR at the left, the code and the lines at
    its right. A line too long for the label is set smaller, then shortened with an ellipsis (the
    code never is: it must be read by eye when a scanner fails)."""
    size = size or BoxLabelSize()
    pdf = new_pdf((size.width_mm, size.height_mm), creation_date)
    pdf.set_title("cellbench box labels")
    margin = 1.5
    side = size.height_mm - 2 * margin  # the symbol, quiet zone included, fills the height
    text_x = margin + side + 1.0
    width = size.width_mm - text_x - margin
    for label in labels:
        pdf.add_page()
        pdf.image(_symbol(label.code), margin, margin, side, side)
        for n, (text, bold, points) in enumerate([(label.code, True, 9.0)] + [(t, False, 7.0) for t in label.lines]):
            pdf.set_font("Label", "B" if bold else "", points)
            if any(ord(ch) not in glyphs(pdf) for ch in text):
                raise LabelFontMissing(f"box {label.code}: the label font cannot print {text!r}")
            while pdf.get_string_width(text) > width + 0.01 and pdf.font_size_pt > MIN_POINTS:
                pdf.set_font_size(pdf.font_size_pt - 0.5)
            if n == 0 and pdf.get_string_width(text) > width + 0.01:
                raise ValueError(f"box code {label.code} does not fit on its label")
            if pdf.get_string_width(text) > width + 0.01:  # cut once, where a running sum says it fits
                text = fit_prefix(pdf, text, width + 0.01, most=len(text) - 2)
            pdf.text(text_x, margin + 4.5 + n * 4.5, text)
    return pdf.finish()
