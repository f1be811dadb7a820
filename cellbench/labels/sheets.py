"""Kit and vial labels (Reg. (EU) 536/2014 Annex VI) as A4 sheets, single-label PDFs and ZPL.

Rendering only, from plain dataclasses that cannot say which arm a kit is on; the product text
names the active product *and* the placebo on every label. A layout is computed once per
study, label kind and size; each label then fills in only its own fields (kit number, blinded
lot, expiry, participant, visit, investigator) and its QR symbol, so two kits' labels can
differ in nothing else.

Languages: each particular is printed in every one of the study's label languages ("Opbevares
ved ≤ −150 °C / Store at ≤ −150 °C"). Danish is what Danish sites must have; English serves
the sponsor's monitors and auditors and non-Danish-speaking staff, and one label stock then
serves every site. A study may choose a single language.
"""
from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from functools import lru_cache

from fpdf import FPDF
from PIL import Image

from cellbench.qrpayload import QR_MASK, QR_MODULES, QR_QUIET_ZONE, qr_pixels

from .fonts import LabelFontMissing, glyphs, new_pdf

PT = 25.4 / 72  # millimetres per typographic point
NBSP = "\u00a0"
_BLANK = {"participant": "_" * 12, "visit": "_" * 6, "investigator": "_" * 26}


@dataclass(frozen=True)
class LabelStudy:
    """What a study prints on all its labels; identical for every kit in the study."""

    trial_code: str  # e.g. "NCT07290946"
    eu_ct_number: str  # e.g. "2025-522559-25-00"
    sponsor_name: str
    sponsor_address: str
    sponsor_phone: str
    emergency_phone: str  # 24-hour contact, also for emergency unblinding
    cells_per_vial: str  # strength of the active, e.g. "25 × 10⁶"; printed on placebo kits too
    volume_per_vial_ml: str  # e.g. "1.5", written with a point; Danish text gets a comma
    vials_per_kit: int = 2  # one dose per submandibular gland
    languages: tuple[str, ...] = ("da", "en")
    storage_max_c: float = -150.0  # the study's presentation, shared by both arms
    manufacturer: str = ""  # e.g. "OUH Cell Bench, Odense, Denmark"; empty: no manufacturer line


@dataclass(frozen=True)
class KitLabel:
    """One kit's label. Deliberately has no arm, content type or manufacturing lot."""

    study: LabelStudy
    kit_number: str
    qr_payload: str  # qrpayload.make_payload(kit_number, secret): depends on nothing else
    blinded_lot: str
    expiry: date  # the blinded lot's expiry (the earliest of its manufacturing lots)
    participant_number: str | None = None  # a blank line to fill in by hand until assigned
    visit: str | None = None
    investigator: str | None = None


class LabelKind(StrEnum):
    OUTER = "outer"  # full Annex VI particulars, on the kit carton
    VIAL = "vial"  # reduced set for the immediate container (Annex VI A.2 point 5)


@dataclass(frozen=True)
class LabelSize:
    width_mm: float
    height_mm: float


@dataclass(frozen=True)
class SheetLayout:
    """Where labels sit on the sheet. Columns and rows default to as many as fit."""

    margin_left_mm: float = 5.0
    margin_top_mm: float = 13.1
    gap_x_mm: float = 2.5
    gap_y_mm: float = 0.0
    columns: int | None = None
    rows: int | None = None
    page_width_mm: float = 210.0
    page_height_mm: float = 297.0


# Kit cartons: common 8-up A4 stock of 99.1 x 67.7 mm. Vials: 50 x 30 mm wrap-around labels.
DEFAULT_SIZE = {LabelKind.OUTER: LabelSize(99.1, 67.7), LabelKind.VIAL: LabelSize(50.0, 30.0)}
DEFAULT_SHEET = {
    LabelKind.OUTER: SheetLayout(),
    LabelKind.VIAL: SheetLayout(margin_left_mm=10, margin_top_mm=10, gap_x_mm=15, gap_y_mm=2),
}

# (Danish, English). '~' marks a no-break space: "0,9 % NaCl" and "≤ −150 °C" never split.
_LANGUAGES = ("da", "en")
_TEXT = {key: tuple(text.replace("~", NBSP) for text in pair) for key, pair in {
    "kit": ("Kit nr.", "Kit no."),
    "lot": ("Batch", "Lot"),
    "expiry": ("Udløb", "EXP"),
    "trial": ("Forsøg", "Trial"),
    "trial_use": ("Kun til klinisk forsøg", "For clinical trial use only"),
    "storage": ("Opbevares ved ≤~{c}~°C", "Store at ≤~{c}~°C"),
    "manufacturer": ("Fremstillet af", "Manufactured by"),
    "product": ("Allogene fedtvævsafledte stromale celler {cells}~celler eller placebo (0,9~%~NaCl)",
                "Allogeneic adipose-derived stromal cells {cells}~cells or placebo (0.9~%~NaCl)"),
    "product_short": ("Allogene ASC eller placebo (0,9~%~NaCl)", "Allogeneic ASC or placebo (0.9~%~NaCl)"),
    "form": ("Injektionsvæske, suspension", "Suspension for injection"),
    "route": ("Intraglandulær injektion i glandula submandibularis",
              "Intraglandular injection into the submandibular gland"),
    "route_short": ("Intraglandulær injektion", "Intraglandular injection"),
    "quantity": ("{n}~hætteglas à~{vol}~ml", "{n}~vials of {vol}~mL"),
    "directions": ("Anvendes som beskrevet i protokollen", "Use as directed in the protocol"),
    "sponsor": ("Sponsor", "Sponsor"),
    "phone": ("Tlf.", "Tel."),
    "emergency": ("Nødkontakt, døgnet rundt", "Emergency contact, 24 h"),
    "participant": ("Forsøgsperson nr.", "Participant no."),
    "visit": ("Besøg", "Visit"),
    "investigator": ("Investigator", "Investigator"),
}.items()}


def printed_expiry(expiry: date) -> str:
    """Month/year for the label ('03/2026'), never later than the real expiry: a month/year
    date reads as "until the end of that month", so a mid-month expiry prints the month before."""
    year, month = expiry.year, expiry.month
    if expiry.day != calendar.monthrange(year, month)[1]:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return f"{month:02d}/{year}"


# --- layout: computed once per (study, kind, size) -------------------------------------------

@dataclass(frozen=True)
class _Run:
    x: float  # mm from the label's left edge
    y: float  # baseline, mm from the label's top edge
    bold: bool
    size: float  # pt
    text: str  # may hold {kit} {lot} {expiry} {participant} {visit} {investigator}
    max_width: float


@dataclass(frozen=True)
class _Layout:
    qr_x: float  # top-left of the symbol itself; the quiet zone lies around it
    qr_y: float
    module: float  # mm per QR module
    runs: tuple[_Run, ...]


def _variants(study: LabelStudy, key: str, **values: object) -> list[str]:
    """The text in each of the study's languages, in order, each distinct text once."""
    variants: list[str] = []
    for language in study.languages:
        if language not in _LANGUAGES:
            raise ValueError(f"label language {language!r} is not available ({', '.join(_LANGUAGES)})")
        local = {k: str(v).replace(".", ",") if k == "vol" and language == "da" else v for k, v in values.items()}
        variant = _TEXT[key][_LANGUAGES.index(language)].format(**local)
        if variant not in variants:
            variants.append(variant)
    return variants


def _both(study: LabelStudy, key: str, **values: object) -> str:
    return " / ".join(_variants(study, key, **values))


def _caption(study: LabelStudy, key: str) -> str:
    return _both(study, key) + ":"


class _Column:
    """Fills a text column top-down and refuses text that would run off the label.

    Lines break only at ordinary spaces; no-break spaces print as ordinary spaces.
    """

    def __init__(self, pdf: FPDF, x: float, top: float, width: float, bottom: float):
        self.pdf, self.x, self.y, self.width, self.bottom = pdf, x, top, width, bottom
        self.runs: list[_Run] = []

    def _width(self, text: str, bold: bool, size: float) -> float:
        self.pdf.set_font("Label", "B" if bold else "", size)
        return self.pdf.get_string_width(text.replace(NBSP, " "))

    def line(self, text: str, size: float, bold: bool = False) -> None:
        """One unwrapped line; the fields in it are measured for each label."""
        baseline = self.y + 0.8 * size * PT
        self.y += 1.15 * size * PT
        if self.y > self.bottom + 0.01:
            raise ValueError("the label text does not fit: use a larger label or shorter text")
        self.runs.append(_Run(self.x, baseline, bold, size, text.replace(NBSP, " "), self.width))

    def paragraph(self, text: str | list[str], size: float, bold: bool = False) -> None:
        """Wrapped text; given a list, each language starts on a line of its own."""
        for part in [text] if isinstance(text, str) else text:
            current = ""
            for word in part.split(" "):
                candidate = f"{current} {word}" if current else word
                if current and self._width(candidate, bold, size) > self.width:
                    self.line(current, size, bold)
                    candidate = word
                if self._width(candidate, bold, size) > self.width:
                    raise ValueError(f"{word!r} is too long for a line: it does not fit on the label")
                current = candidate
            self.line(current, size, bold)

    def space(self, mm: float) -> None:
        self.y += mm


@lru_cache(maxsize=16)
def _layout(study: LabelStudy, kind: LabelKind, size: LabelSize) -> _Layout:
    pdf = new_pdf((size.width_mm, size.height_mm))
    pdf.add_page()
    w, h = size.width_mm, size.height_mm
    cells, emergency = (text.replace(" ", NBSP) for text in (study.cells_per_vial, study.emergency_phone))
    if kind is LabelKind.OUTER:
        pad, module = 3.0, 0.55
        box = module * (QR_MODULES + 2 * QR_QUIET_ZONE)
        box_x, box_y = w - box - 1.0, 1.0
        head = _Column(pdf, pad, pad, box_x - pad - 0.5, h - pad)
        head.line(_both(study, "kit"), 6)
        head.line("{kit}", 14, bold=True)
        head.line(f"{_caption(study, 'lot')} {{lot}}", 8, bold=True)
        head.line(f"{_caption(study, 'expiry')} {{expiry}}", 8, bold=True)
        head.paragraph(f"{_caption(study, 'trial')} {study.trial_code} · EU{NBSP}CT {study.eu_ct_number}", 6.5)
        head.paragraph(_both(study, "trial_use"), 7, bold=True)
        if study.manufacturer:  # on the carton, beside the trial; the vial's reduced set (A.2 point 5) has none
            head.paragraph(f"{_both(study, 'manufacturer')} {study.manufacturer}", 5)
        body = _Column(pdf, pad, max(head.y, box_y + box) + 0.5, w - 2 * pad, h - pad)
        body.paragraph(_variants(study, "product", cells=cells), 6.5, bold=True)
        amounts = _variants(study, "quantity", n=study.vials_per_kit, vol=study.volume_per_vial_ml)
        body.paragraph([f"{form}. {route}. {amount}." for form, route, amount in
                        zip(_variants(study, "form"), _variants(study, "route"), amounts, strict=False)], 6)
        body.paragraph(_both(study, "storage", c=f"{study.storage_max_c:g}".replace("-", "−")), 7, bold=True)
        body.paragraph(_both(study, "directions"), 6)
        body.paragraph(f"{_caption(study, 'sponsor')} {study.sponsor_name}, {study.sponsor_address}. "
                       f"{_both(study, 'phone')} {study.sponsor_phone.replace(' ', NBSP)}", 6)
        body.paragraph(f"{_caption(study, 'emergency')} {emergency}", 6, bold=True)
        body.space(1.0)
        body.line(f"{_caption(study, 'participant')} {{participant}}   {_caption(study, 'visit')} {{visit}}", 6.5)
        body.space(0.8)
        body.line(f"{_caption(study, 'investigator')} {{investigator}}", 6.5)
        runs = head.runs + body.runs
    else:
        # The reduced set for the immediate container (contact, route, code number, trial,
        # participant and visit, period of use) plus the product and "trial use" lines, so that
        # a vial parted from its carton still says what it may contain and what it is for.
        # "Lot" and "EXP" are the abbreviations small EU containers use in every language.
        module = 0.44
        box = module * (QR_MODULES + 2 * QR_QUIET_ZONE)
        box_x, box_y = 0.3, 0.3
        under = _Column(pdf, 1.0, box_y + box, box - 0.5, h - 0.6)
        under.paragraph(_both(study, "trial_use"), 4.4, bold=True)
        under.paragraph(f"{_both(study, 'phone')} {emergency}", 4.4)
        left = box_x + box + 0.2
        col = _Column(pdf, left, 0.8, w - left - 0.8, h - 0.6)
        col.line("{kit}", 8.5, bold=True)
        col.line("Lot {lot}", 5.2, bold=True)
        col.line("EXP {expiry}", 5.2, bold=True)
        col.line(study.trial_code, 5)
        col.paragraph(_variants(study, "product_short"), 4.6)
        col.paragraph(_variants(study, "route_short"), 4.6)
        col.space(0.6)
        col.line(_caption(study, "participant"), 4.6)
        col.line("{participant}", 5.2)
        col.line(f"{_caption(study, 'visit')} {{visit}}", 4.6)
        runs = under.runs + col.runs
    _check_glyphs(pdf, runs)
    quiet = QR_QUIET_ZONE * module
    return _Layout(box_x + quiet, box_y + quiet, module, tuple(runs))


def _check_glyphs(pdf: FPDF, runs: Iterable[_Run]) -> None:
    for bold in (False, True):
        pdf.set_font("Label", "B" if bold else "", 6)
        cmap = glyphs(pdf)
        missing = {ch for run in runs if run.bold == bold for ch in run.text if ord(ch) not in cmap}
        if missing:
            raise LabelFontMissing(f"the label font has no glyph for {''.join(sorted(missing))!r}")


def _set_font(pdf: FPDF, run: _Run) -> None:
    style = "B" if run.bold else ""
    if not pdf.font_family or pdf.font_style != style or pdf.font_size_pt != run.size:
        pdf.set_font("Label", style, run.size)


def _label_lines(pdf: FPDF, layout: _Layout, label: KitLabel) -> list[tuple[_Run, str]]:
    """The layout's lines with this label's fields filled in, each checked to fit its line."""
    fields = {
        "kit": label.kit_number, "lot": label.blinded_lot, "expiry": printed_expiry(label.expiry),
        "participant": label.participant_number or _BLANK["participant"],
        "visit": label.visit or _BLANK["visit"], "investigator": label.investigator or _BLANK["investigator"],
    }
    lines = []
    for run in layout.runs:
        text = run.text
        if "{" in text:
            text = text.format(**fields)
            _set_font(pdf, run)
            if pdf.get_string_width(text) > run.max_width + 0.01:
                raise ValueError(f"kit {label.kit_number}: {text!r} does not fit on its label line")
            if any(ord(ch) not in glyphs(pdf) for ch in text):
                raise LabelFontMissing(f"kit {label.kit_number}: the label font cannot print {text!r}")
        lines.append((run, text))
    return lines


# --- PDF -------------------------------------------------------------------------------------

def _draw(pdf: FPDF, layout: _Layout, label: KitLabel, x0: float, y0: float) -> None:
    # The QR symbol goes in as one grey pixel per module, scaled to exact millimetres: vector
    # modules cost ~350 rectangles a kit (1.7 s per 500 kits in fpdf2), and PDF images are
    # drawn without smoothing unless they ask for it, so the modules stay square.
    side = QR_MODULES + 2 * QR_QUIET_ZONE
    image = Image.frombytes("L", (side, side), qr_pixels(label.qr_payload))
    quiet = QR_QUIET_ZONE * layout.module
    pdf.image(image, x0 + layout.qr_x - quiet, y0 + layout.qr_y - quiet, side * layout.module, side * layout.module)
    for run, text in _label_lines(pdf, layout, label):
        _set_font(pdf, run)
        pdf.text(x0 + run.x, y0 + run.y, text)


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


def render_label_sheet_pdf(labels: Sequence[KitLabel], kind: LabelKind = LabelKind.OUTER, *,
                           size: LabelSize | None = None, sheet: SheetLayout | None = None,
                           creation_date: datetime | None = None) -> bytes:
    """Labels on A4 sheets in a grid at exact millimetre sizes, filled row by row. With a
    `creation_date` the bytes depend on nothing else than the labels and that date."""
    size, sheet = size or DEFAULT_SIZE[kind], sheet or DEFAULT_SHEET[kind]
    columns, rows = _sheet_grid(size, sheet)
    pdf = new_pdf((sheet.page_width_mm, sheet.page_height_mm), creation_date)
    pdf.set_title(f"cellbench {kind.value} labels")
    for index, label in enumerate(labels):
        slot = index % (columns * rows)
        if slot == 0:
            pdf.add_page()
        x0 = sheet.margin_left_mm + (slot % columns) * (size.width_mm + sheet.gap_x_mm)
        y0 = sheet.margin_top_mm + (slot // columns) * (size.height_mm + sheet.gap_y_mm)
        _draw(pdf, _layout(label.study, kind, size), label, x0, y0)
    return bytes(pdf.output())


def render_single_label_pdf(labels: KitLabel | Sequence[KitLabel], kind: LabelKind = LabelKind.OUTER, *,
                            size: LabelSize | None = None, creation_date: datetime | None = None) -> bytes:
    """One label per page, each page exactly the label's size (for label printers). With a
    `creation_date` the bytes depend on nothing else than the labels and that date."""
    size = size or DEFAULT_SIZE[kind]
    pdf = new_pdf((size.width_mm, size.height_mm), creation_date)
    pdf.set_title(f"cellbench {kind.value} label")
    for label in [labels] if isinstance(labels, KitLabel) else labels:
        pdf.add_page()
        _draw(pdf, _layout(label.study, kind, size), label, 0.0, 0.0)
    return bytes(pdf.output())


# --- ZPL II ----------------------------------------------------------------------------------

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
    blocks = []
    for label in labels:
        layout = _layout(label.study, kind, size)
        magnification = max(1, int(layout.module * dots))  # never larger than the PDF's symbol
        parts = [
            "^XA", "^CI28", f"^PW{round(size.width_mm * dots)}", f"^LL{round(size.height_mm * dots)}", "^LH0,0",
            f"^FO{round(layout.qr_x * dots)},{round(layout.qr_y * dots)}"
            f"^BQN,2,{magnification},M,{QR_MASK}^FDMM,A{label.qr_payload}^FS",
        ]
        for run, text in _label_lines(measure, layout, label):
            height, top = round(run.size * PT * dots), run.y - 0.8 * run.size * PT
            face = f"^A@N,{height},0,{font}" if font else f"^A0N,{height},0"
            parts.append(f"^FO{round(run.x * dots)},{round(top * dots)}{face}^FH^FD{_zpl_text(text, font is None)}^FS")
        parts.append("^PQ1^XZ")
        blocks.append("\n".join(parts))
    return "\n".join(blocks) + "\n"
