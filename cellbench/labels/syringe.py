"""The syringe label: one per gland, printed by the preparer at the preparation station and stuck on
the syringe drawn up for that gland, read at the bedside by its signed QR (sitecodes.syringe_payload).

Rendering only, from a dataclass that cannot say which arm the dose is: the label of an active and
of a placebo syringe in the same situation differ in their kit number (and so in their QR) alone.
One label per page, each page exactly the label's size, for a label printer.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from fpdf import FPDF

from cellbench.sitecodes import qr_png

from .fonts import new_pdf
from .particulars import PT, LabelSize

SYRINGE_SIZE = LabelSize(62.0, 29.0)  # a common die-cut size for label printers; fits a 5 mL syringe barrel
CLINICAL_TRIAL_USE = "For clinical trial use only"
_MARGIN = 1.5
_QR_MM = SYRINGE_SIZE.height_mm - 2 * _MARGIN  # the QR fills the label's height, quiet zone included


@dataclass(frozen=True)
class SyringeLabelText:
    """What one syringe label prints. Deliberately has no arm, content or manufacturing lot."""

    study_code: str
    participant: str  # the randomisation number
    gland: str  # as the study names the dose site, e.g. "left submandibular gland"
    kit_number: str
    use_by: str  # site time with its offset, e.g. "2026-12-06 11:02 +01:00"
    qr_payload: str  # sitecodes.syringe_payload(kit number, dose, randomisation number, key)


def _fit(pdf: FPDF, text: str, width: float, size: float, style: str = "") -> None:
    """The largest font size up to `size` at which the text fits the width: a line is never cut."""
    while size > 4.0:
        pdf.set_font("Label", style, size)
        if pdf.get_string_width(text) <= width:
            return
        size -= 0.25
    pdf.set_font("Label", style, size)


def _draw(pdf: FPDF, label: SyringeLabelText) -> None:
    pdf.image(io.BytesIO(qr_png(label.qr_payload, box_size=8)), x=_MARGIN, y=_MARGIN, w=_QR_MM, h=_QR_MM)
    left = _MARGIN + _QR_MM + 1.0
    width = SYRINGE_SIZE.width_mm - left - _MARGIN
    lines = ((label.study_code, 7.0, "B"), (f"Participant {label.participant}", 8.0, "B"),
             (label.gland[:1].upper() + label.gland[1:], 8.0, "B"), (f"Kit {label.kit_number}", 7.5, ""),
             ("Use by", 6.5, ""), (label.use_by, 7.5, "B"), (CLINICAL_TRIAL_USE, 6.0, ""))
    y = _MARGIN
    for text, size, style in lines:
        _fit(pdf, text, width, size, style)
        height = pdf.font_size_pt * PT * 1.18
        pdf.set_xy(left, y)
        pdf.cell(width, height, text)
        y += height


def render_syringe_labels_pdf(labels: SyringeLabelText | Sequence[SyringeLabelText], *,
                              creation_date: datetime | None = None) -> bytes:
    """One label per page at SYRINGE_SIZE. With a `creation_date` the bytes depend on the labels
    and that date alone, so an active and a placebo label differ only where their text does."""
    pdf = new_pdf((SYRINGE_SIZE.width_mm, SYRINGE_SIZE.height_mm), creation_date)
    pdf.set_title("cellbench syringe label")
    for label in [labels] if isinstance(labels, SyringeLabelText) else labels:
        pdf.add_page()
        _draw(pdf, label)
    return pdf.finish()
