"""Where each line of a label goes: computed once per study, label kind and size; each label
then fills in only its own fields (kit number, blinded lot, expiry, participant, visit,
investigator) and its QR symbol, so two kits' labels can differ in nothing else."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from fpdf import FPDF

from cellbench.qrpayload import QR_MODULES, QR_QUIET_ZONE

from .fonts import LabelFontMissing, glyphs, new_pdf
from .particulars import BLANKS, LANGUAGES, NBSP, PT, TEXTS, KitLabel, LabelKind, LabelSize, LabelStudy, printed_expiry


@dataclass(frozen=True)
class TextRun:
    x: float  # mm from the label's left edge
    y: float  # baseline, mm from the label's top edge
    bold: bool
    size: float  # pt
    text: str  # may hold {kit} {lot} {expiry} {participant} {visit} {investigator}
    max_width: float


@dataclass(frozen=True)
class Layout:
    qr_x: float  # top-left of the symbol itself; the quiet zone lies around it
    qr_y: float
    module: float  # mm per QR module
    runs: tuple[TextRun, ...]


def _variants(study: LabelStudy, key: str, **values: object) -> list[str]:
    """The text in each of the study's languages, in order, each distinct text once."""
    variants: list[str] = []
    for language in study.languages:
        if language not in LANGUAGES:
            raise ValueError(f"label language {language!r} is not available ({', '.join(LANGUAGES)})")
        local = {k: str(v).replace(".", ",") if k == "vol" and language == "da" else v for k, v in values.items()}
        variant = TEXTS[key][LANGUAGES.index(language)].format(**local)
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
        self.runs: list[TextRun] = []

    def _width(self, text: str, bold: bool, size: float) -> float:
        self.pdf.set_font("Label", "B" if bold else "", size)
        return self.pdf.get_string_width(text.replace(NBSP, " "))

    def line(self, text: str, size: float, bold: bool = False) -> None:
        """One unwrapped line; the fields in it are measured for each label."""
        baseline = self.y + 0.8 * size * PT
        self.y += 1.15 * size * PT
        if self.y > self.bottom + 0.01:
            raise ValueError("the label text does not fit: use a larger label or shorter text")
        self.runs.append(TextRun(self.x, baseline, bold, size, text.replace(NBSP, " "), self.width))

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
def label_layout(study: LabelStudy, kind: LabelKind, size: LabelSize) -> Layout:
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
    return Layout(box_x + quiet, box_y + quiet, module, tuple(runs))


def _check_glyphs(pdf: FPDF, runs: Iterable[TextRun]) -> None:
    for bold in (False, True):
        pdf.set_font("Label", "B" if bold else "", 6)
        cmap = glyphs(pdf)
        missing = {ch for run in runs if run.bold == bold for ch in run.text if ord(ch) not in cmap}
        if missing:
            raise LabelFontMissing(f"the label font has no glyph for {''.join(sorted(missing))!r}")


def use_font(pdf: FPDF, run: TextRun) -> None:
    style = "B" if run.bold else ""
    if not pdf.font_family or pdf.font_style != style or pdf.font_size_pt != run.size:
        pdf.set_font("Label", style, run.size)


def label_lines(pdf: FPDF, layout: Layout, label: KitLabel,
                checked: set[tuple[float, bool, float, str]] | None = None) -> list[tuple[TextRun, str]]:
    """The layout's lines with this label's fields filled in, each checked to fit its line.

    `checked` remembers, for one document, the filled-in lines already measured: a blinded lot's
    code, its expiry and the blank participant lines are the same on every label of a run."""
    fields = {
        "kit": label.kit_number, "lot": label.blinded_lot, "expiry": printed_expiry(label.expiry),
        "participant": label.participant_number or BLANKS["participant"],
        "visit": label.visit or BLANKS["visit"], "investigator": label.investigator or BLANKS["investigator"],
    }
    measured = set() if checked is None else checked
    lines = []
    for run in layout.runs:
        text = run.text
        if "{" in text:
            text = text.format(**fields)
            key = (run.size, run.bold, run.max_width, text)  # all that the two checks depend on
            if key not in measured:
                use_font(pdf, run)
                if pdf.get_string_width(text) > run.max_width + 0.01:
                    raise ValueError(f"kit {label.kit_number}: {text!r} does not fit on its label line")
                if any(ord(ch) not in glyphs(pdf) for ch in text):
                    raise LabelFontMissing(f"kit {label.kit_number}: the label font cannot print {text!r}")
                measured.add(key)
        lines.append((run, text))
    return lines
