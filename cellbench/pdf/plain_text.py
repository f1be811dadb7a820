"""Many short texts in one font, written as fpdf2's `FPDF.text()` writes them, without its work per
call: at ten years a site's accountability table has some 60,000 cells, and `text()` (normalising,
encoding glyph by glyph into the font's subset, escaping, checking the colour and the page, each
time) was most of the report's time.

Each distinct text is normalised and encoded once, when it is first drawn, so the font's subset
picks its glyphs in the same order as `text()` would have, and the file is byte for byte the same
(tests/accountability/test_site_report_table.py). Only the plain case is written here (fill mode,
no underline or strike-through, no text quad points, the font already set on the page); anything
else is left to `text()` itself (`ready()` says which).
"""
from __future__ import annotations

from fpdf import FPDF
from fpdf.enums import TextMode


class PlainText:
    """`text()` for the document's current font as it is when made (cells of one look)."""

    def __init__(self, pdf: FPDF):
        self.pdf = pdf
        self.font = pdf.current_font
        self._encoded: dict[str, str] = {}

    def ready(self) -> bool:
        """Whether `op` writes what `text()` would now; when not, call `text()` (it also sets the
        font on a fresh page, after which this is ready again)."""
        pdf = self.pdf
        return (pdf.current_font is self.font and pdf.current_font_is_set_on_page and pdf.text_mode == TextMode.FILL
                and not (pdf.underline or pdf.strikethrough or getattr(pdf, "_record_text_quad_points", True)))

    def wrapping(self) -> tuple[str, str]:
        """What `text()` writes around the text for the current colours: a text colour other than
        the fill colour is set inside a saved graphics state."""
        pdf = self.pdf
        if pdf.fill_color != pdf.text_color:
            assert pdf.text_color is not None
            return f"q {pdf.text_color.serialize().lower()} ", " Q"
        return "", ""

    def shown(self, text: str) -> str:
        """The text's show operator ("(...) Tj") in the font's subset, encoded on first use."""
        encoded = self._encoded.get(text)
        if encoded is None:
            assert self.font is not None
            encoded = self._encoded[text] = self.font.encode_text(self.pdf.normalize_text(text))
        return encoded
