"""The label font: a Unicode TrueType face found on the server (or named by CELLBENCH_LABEL_FONT),
and the PDF every label is drawn on with it. Labels are refused, never printed with a character
missing, when no such font is there."""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import TTFFont


@dataclass(frozen=True)
class LabelFonts:
    regular: Path
    bold: Path
    stretch_percent: float  # 100 for a condensed face; a regular-width face is narrowed


class LabelFontMissing(RuntimeError):
    """No usable Unicode font: labels are refused rather than printed with characters missing."""


def _font_dirs() -> list[Path]:
    dirs = [Path(p) for p in (
        "/usr/share/fonts/truetype/dejavu",  # Debian, Ubuntu: package fonts-dejavu-core
        "/usr/share/fonts/dejavu-sans-fonts", "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF",
        "/usr/local/share/fonts", "/Library/Fonts", str(Path.home() / "Library/Fonts"),
    )]
    spec = importlib.util.find_spec("matplotlib")  # ships DejaVu Sans: a pip-installable source
    if spec and spec.origin:
        dirs.append(Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf")
    return dirs


@lru_cache(maxsize=1)
def find_label_fonts() -> LabelFonts:
    """A Unicode TrueType face with ≤, −, °, ×, superscripts and æøå.

    CELLBENCH_LABEL_FONT (and CELLBENCH_LABEL_FONT_BOLD) name TTF files; otherwise DejaVu Sans
    Condensed, or DejaVu Sans narrowed to 88 %. Deliberately no fallback to the PDF core fonts:
    they cannot print "≤ −150 °C", and a label must not silently lose a character.
    """
    chosen = os.environ.get("CELLBENCH_LABEL_FONT")
    if chosen:
        return LabelFonts(Path(chosen), Path(os.environ.get("CELLBENCH_LABEL_FONT_BOLD", chosen)), 100.0)
    for directory in _font_dirs():
        for regular, bold, stretch in (("DejaVuSansCondensed.ttf", "DejaVuSansCondensed-Bold.ttf", 100.0),
                                       ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", 88.0)):
            if (directory / regular).is_file():
                bold_path = directory / bold if (directory / bold).is_file() else directory / regular
                return LabelFonts(directory / regular, bold_path, stretch)
    raise LabelFontMissing(
        "no label font found: install DejaVu Sans (apt-get install fonts-dejavu-core, or "
        "pip install matplotlib, which ships it) or set CELLBENCH_LABEL_FONT=/path/to/font.ttf"
    )


def new_pdf(page: tuple[float, float], creation_date: datetime | None = None) -> FPDF:
    """A PDF stamped with `creation_date` (timezone-aware), or with the time it is made. fpdf2
    derives the file identifier from the content and this date, so the same labels with the same
    date give the same bytes: a label run is downloaded again exactly as it was printed."""
    fonts = find_label_fonts()
    pdf = FPDF(unit="mm", format=page)
    if creation_date is not None:
        if creation_date.tzinfo is None:
            raise ValueError("the creation date needs its UTC offset")
        pdf.set_creation_date(creation_date.replace(microsecond=0))
    pdf.set_auto_page_break(False)
    pdf.set_margins(0, 0, 0)
    pdf.add_font("Label", "", str(fonts.regular))
    pdf.add_font("Label", "B", str(fonts.bold))
    pdf.set_stretching(fonts.stretch_percent)
    pdf.set_creator("cellbench")
    return pdf


def glyphs(pdf: FPDF) -> dict[int, str]:
    """The current font's character map: the label font is always a TrueType font (LabelFonts)."""
    font = pdf.current_font
    if not isinstance(font, TTFFont):
        raise LabelFontMissing("the label font is not a TrueType font")
    return font.cmap
