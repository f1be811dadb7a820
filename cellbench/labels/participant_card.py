"""The participant's identification card: a PDF page of ID-1 card size (85.6 x 54 mm) that the
investigator scans at the bedside before a dose goes in.

It carries the study, the randomisation number, the site and a signed QR (`sitecodes.card_payload`)
of study and randomisation number. No name (cellbench keeps none) and nothing that depends on the
arm: the card is made from `CardText`, which cannot say which arm a participant is on, so two
participants' cards differ only in their numbers.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

from fpdf import FPDF

from ..pdf import fit_prefix, wrap_text
from ..sitecodes import qr_png
from .fonts import glyphs, new_pdf
from .particulars import PT

CARD_SIZE_MM = (85.6, 54.0)  # ISO/IEC 7810 ID-1, a bank card: fits a wallet and a card printer
HEADING = "Participant identification — clinical trial"
_MARGIN = 3.5
_TITLE_LINES = 3
_QR_MM = 27.0  # the symbol with its quiet zone; about 0.5 mm a module for a 130-character payload


@dataclass(frozen=True)
class CardText:
    """What one card prints. Deliberately has no arm, kit or name."""

    study_code: str
    short_title: str
    randomisation_number: str
    site: str  # "<code> · <name>"
    qr_payload: str  # sitecodes.card_payload(study_code, randomisation_number, secret)
    emergency_phone: str = ""


def _fit(pdf: FPDF, text: str, width: float, size: float, bold: bool = False, smallest: float = 5.0) -> float:
    """The largest size up to `size` at which `text` fits `width` on one line."""
    while size > smallest:
        pdf.set_font("Label", "B" if bold else "", size)
        if pdf.get_string_width(text) <= width:
            break
        size -= 0.5
    return size


def _line(pdf: FPDF, x: float, y: float, text: str, width: float, size: float, bold: bool = False) -> float:
    """One line of text fitted to `width`, top at `y`; returns the next line's top."""
    size = _fit(pdf, text, width, size, bold)
    pdf.set_font("Label", "B" if bold else "", size)
    missing = {ch for ch in text if ord(ch) not in glyphs(pdf) and not ch.isspace()}
    if missing:
        raise ValueError(f"the card font has no glyph for {''.join(sorted(missing))!r}")
    pdf.text(x, y + 0.8 * size * PT, text)
    return y + 1.2 * size * PT


def _wrapped(pdf: FPDF, text: str, width: float, size: float, most: int) -> list[str]:
    """`text` broken into lines of `width` at spaces, at most `most` lines (the last cut with '…')."""
    pdf.set_font("Label", "", size)
    lines = wrap_text(pdf, text, width)
    if len(lines) > most:
        last = fit_prefix(pdf, lines[most - 1], width, " …")  # the longest start that leaves room for " …"
        lines = [*lines[: most - 1], last[:-2].rstrip() + " …"]
    return lines

def render_participant_card_pdf(card: CardText, creation_date: datetime | None = None) -> bytes:
    """One card, one page of the card's exact size. With a `creation_date` the bytes depend on
    nothing else than the card's text and that date (a reprint is the same file)."""
    width, height = CARD_SIZE_MM
    pdf = new_pdf(CARD_SIZE_MM, creation_date)
    pdf.set_title("cellbench participant card")
    pdf.add_page()
    pdf.set_line_width(0.2)
    pdf.rect(0.3, 0.3, width - 0.6, height - 0.6)  # a cutting line when printed on A4 by mistake
    text_width = width - 2 * _MARGIN
    y = _line(pdf, _MARGIN, _MARGIN, HEADING, text_width, 7.5, bold=True)
    pdf.line(_MARGIN, y + 0.3, width - _MARGIN, y + 0.3)
    top = y + 1.2
    qr_x = width - _MARGIN - _QR_MM + 1.5  # the quiet zone may reach into the margin
    pdf.image(io.BytesIO(qr_png(card.qr_payload, box_size=8)), x=qr_x, y=top, w=_QR_MM, h=_QR_MM)
    column = qr_x - _MARGIN - 0.5
    y = _line(pdf, _MARGIN, top, card.study_code, column, 9, bold=True)
    for line in _wrapped(pdf, card.short_title, column, 6, _TITLE_LINES):
        y = _line(pdf, _MARGIN, y, line, column, 6)
    y += 1.0
    y = _line(pdf, _MARGIN, y, "Randomisation no.", column, 6)
    y = _line(pdf, _MARGIN, y, card.randomisation_number, column, 15, bold=True)
    y = _line(pdf, _MARGIN, y + 0.5, f"Site {card.site}", column, 6.5)
    if card.emergency_phone:
        _line(pdf, _MARGIN, height - _MARGIN - 6.5 * PT * 1.2 - 2.6,
              f"Emergency contact, 24 h: {card.emergency_phone}", text_width, 6.5)
    _line(pdf, _MARGIN, height - _MARGIN - 6 * PT * 1.2, "Show this card before each treatment. No name is kept.",
          text_width, 6)
    return pdf.finish()
