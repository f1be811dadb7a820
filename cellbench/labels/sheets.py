"""Kit and vial labels (Reg. (EU) 536/2014 Annex VI) as A4 sheets and single-label PDFs.

Rendering only, from the plain dataclasses of `particulars`, which cannot say which arm a kit
is on. The layout (`layout`) is computed once per study, kind and size; each label then adds
only its own fields and its QR symbol (`qrcache`, made once per kit).

Why a 500-label sheet costs a third of what it did (issue 18, bench/labels.py): most of a
label's twenty-odd lines read the same on every label of a run and sit at the same place on
every page (the particulars, the blinded lot, its expiry, the blank participant lines). Each is laid out and
encoded once per document and its PDF operators written again for the others; only the kit
number is new on each label. The bytes are those fpdf2 writes for the same text drawn anew.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from fpdf import FPDF

from cellbench.qrpayload import QR_QUIET_ZONE

from .fonts import new_pdf
from .layout import Layout, TextRun, label_layout, label_lines, use_font
from .particulars import DEFAULT_SHEET, DEFAULT_SIZE, KitLabel, LabelKind, LabelSize, SheetLayout
from .qrcache import SIDE, place_qr


class _Document:
    """One PDF being drawn, with what it has already drawn once: lines measured, and the text
    operators written for a text at a place in a font."""

    def __init__(self, pdf: FPDF):
        self.pdf = pdf
        self.measured: set[tuple[float, bool, float, str]] = set()
        self.operators: dict[tuple[float, float, bool, float, str], bytes] = {}

    def text(self, run: TextRun, x: float, y: float, text: str) -> None:
        pdf = self.pdf
        use_font(pdf, run)
        if not pdf.current_font_is_set_on_page:
            # what text() would write first after a change of font: the font, for this page
            assert pdf.current_font is not None
            pdf._out(pdf._set_font_for_page(pdf.current_font, pdf.font_size_pt))
        contents = pdf.pages[pdf.page].contents
        if not isinstance(contents, bytearray):  # not so in fpdf2 2.8; drawn anew, should it change
            pdf.text(x, y, text)
            return
        key = (x, y, run.bold, run.size, text)
        written = self.operators.get(key)
        if written is None:
            start = len(contents)
            pdf.text(x, y, text)  # also marks the glyphs for the font subset, once for all
            self.operators[key] = bytes(contents[start:])
        else:
            contents.extend(written)

    def draw(self, layout: Layout, label: KitLabel, x0: float, y0: float) -> None:
        # The QR symbol goes in as one 1-bit pixel per module, scaled to exact millimetres: vector
        # modules cost ~350 rectangles a kit (1.7 s per 500 kits in fpdf2), and PDF images are
        # drawn without smoothing unless they ask for it, so the modules stay square.
        quiet = QR_QUIET_ZONE * layout.module
        place_qr(self.pdf, label.qr_payload, x0 + layout.qr_x - quiet, y0 + layout.qr_y - quiet, SIDE * layout.module)
        for run, text in label_lines(self.pdf, layout, label, self.measured):
            self.text(run, x0 + run.x, y0 + run.y, text)


def _sheet_grid(size: LabelSize, sheet: SheetLayout) -> tuple[int, int]:
    fit_columns = int((sheet.page_width_mm - sheet.margin_left_mm + sheet.gap_x_mm + 1e-6)
                      // (size.width_mm + sheet.gap_x_mm))
    fit_rows = int((sheet.page_height_mm - sheet.margin_top_mm + sheet.gap_y_mm + 1e-6)
                   // (size.height_mm + sheet.gap_y_mm))
    columns, rows = sheet.columns or fit_columns, sheet.rows or fit_rows
    if not (1 <= columns <= fit_columns and 1 <= rows <= fit_rows):
        raise ValueError(f"{columns} x {rows} labels of {size.width_mm} x {size.height_mm} mm "
                         "do not fit on the sheet with these margins and gaps")
    return columns, rows


def sheet_slots(count: int, size: LabelSize, sheet: SheetLayout) -> list[tuple[bool, float, float]]:
    """For each of `count` labels: whether it starts a new page, and its top-left corner (mm),
    filling the grid row by row. Refuses a grid that does not fit, even for no labels."""
    columns, rows = _sheet_grid(size, sheet)
    slots = [index % (columns * rows) for index in range(count)]
    return [(slot == 0, sheet.margin_left_mm + (slot % columns) * (size.width_mm + sheet.gap_x_mm),
             sheet.margin_top_mm + (slot // columns) * (size.height_mm + sheet.gap_y_mm)) for slot in slots]


def render_label_sheet_pdf(labels: Sequence[KitLabel], kind: LabelKind = LabelKind.OUTER, *,
                           size: LabelSize | None = None, sheet: SheetLayout | None = None,
                           creation_date: datetime | None = None) -> bytes:
    """Labels on A4 sheets in a grid at exact millimetre sizes, filled row by row. With a
    `creation_date` the bytes depend on nothing else than the labels and that date."""
    size, sheet = size or DEFAULT_SIZE[kind], sheet or DEFAULT_SHEET[kind]
    slots = sheet_slots(len(labels), size, sheet)  # checks the grid fits before anything is drawn
    pdf = new_pdf((sheet.page_width_mm, sheet.page_height_mm), creation_date)
    pdf.set_title(f"cellbench {kind.value} labels")
    document = _Document(pdf)
    for label, (new_page, x0, y0) in zip(labels, slots, strict=True):
        if new_page:
            pdf.add_page()
        document.draw(label_layout(label.study, kind, size), label, x0, y0)
    return pdf.finish()


def render_single_label_pdf(labels: KitLabel | Sequence[KitLabel], kind: LabelKind = LabelKind.OUTER, *,
                            size: LabelSize | None = None, creation_date: datetime | None = None) -> bytes:
    """One label per page, each page exactly the label's size (for label printers). With a
    `creation_date` the bytes depend on nothing else than the labels and that date."""
    size = size or DEFAULT_SIZE[kind]
    pdf = new_pdf((size.width_mm, size.height_mm), creation_date)
    pdf.set_title(f"cellbench {kind.value} label")
    document = _Document(pdf)
    for label in [labels] if isinstance(labels, KitLabel) else labels:
        pdf.add_page()
        document.draw(label_layout(label.study, kind, size), label, 0.0, 0.0)
    return pdf.finish()

