"""Kit and vial labels as ZPL II for thermal label printers, laid out as the PDF labels are."""
from __future__ import annotations

from collections.abc import Sequence

from cellbench.qrpayload import QR_MASK

from .fonts import new_pdf
from .layout import label_layout, label_lines
from .particulars import DEFAULT_SIZE, PT, KitLabel, LabelKind, LabelSize

# A printer's resident font 0 covers Latin-1 (æøå, °, ×) but not ≤, − or superscripts; with it
# these are spelled in Latin-1 with the same meaning. With a Unicode TrueType font downloaded
# to the printer (font="E:DEJAVU.TTF") the text goes out exactly as in the PDF.
_RESIDENT_FONT_SPELLING = str.maketrans(
    {"≤": "<=", "≥": ">=", "−": "-", "–": "-", **{s: "^" + d for s, d in zip("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789", strict=True)}}
)


def _zpl_text(text: str, resident_font: bool) -> str:
    if resident_font:
        text = text.translate(_RESIDENT_FONT_SPELLING)
        if any(ord(ch) > 0xFF for ch in text):
            raise ValueError(f"{text!r} needs a Unicode printer font: pass font='E:<font>.TTF'")
    # With ^FH, '_' starts a hex escape; escaping these keeps label text from acting as commands.
    return text.replace("_", "_5F").replace("^", "_5E").replace("~", "_7E")


def render_zpl(labels: Sequence[KitLabel], kind: LabelKind = LabelKind.OUTER, *,
               size: LabelSize | None = None, dpi: int = 203, font: str | None = None) -> str:
    """ZPL II, one ^XA...^XZ block per label, text in UTF-8 (^CI28): send it encoded as UTF-8.

    Positions come from the PDF layout. The ^BQ field carries the same payload, as the same
    version 5 / M / mask 7 symbol, in manual alphanumeric mode. Printer fonts differ from the
    PDF's, so a printed proof belongs in the printer's qualification.
    """
    size = size or DEFAULT_SIZE[kind]
    dots = dpi / 25.4
    measure = new_pdf((size.width_mm, size.height_mm))
    measured: set[tuple[float, bool, float, str]] = set()  # lines already checked to fit
    blocks = []
    for label in labels:
        layout = label_layout(label.study, kind, size)
        magnification = max(1, int(layout.module * dots))  # never larger than the PDF's symbol
        parts = [
            "^XA", "^CI28", f"^PW{round(size.width_mm * dots)}", f"^LL{round(size.height_mm * dots)}", "^LH0,0",
            f"^FO{round(layout.qr_x * dots)},{round(layout.qr_y * dots)}"
            f"^BQN,2,{magnification},M,{QR_MASK}^FDMM,A{label.qr_payload}^FS",
        ]
        for run, text in label_lines(measure, layout, label, measured):
            height, top = round(run.size * PT * dots), run.y - 0.8 * run.size * PT
            face = f"^A@N,{height},0,{font}" if font else f"^A0N,{height},0"
            parts.append(f"^FO{round(run.x * dots)},{round(top * dots)}{face}^FH^FD{_zpl_text(text, font is None)}^FS")
        parts.append("^PQ1^XZ")
        blocks.append("\n".join(parts))
    return "\n".join(blocks) + "\n"
