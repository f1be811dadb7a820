"""What every printed record of a lot shares (the batch record, the CoA, the release and destruction
certificates): the A4 page with its fonts, footer and ruled tables, the looks of its cells, the
wording of values and signatures, and the opening of a certificate."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from fpdf.fonts import TTFFont

from .. import clock
from ..checkpoints.store import latest_logged
from ..labels import LabelFonts, find_label_fonts
from ..labels.fonts import LabelPDF
from ..pdf import char_width, checkpoint, text_width, wrap
from .record import SignatureView


def text(value: object) -> str:
    """An enum member or the plain string read back from the database, as words."""
    return str(getattr(value, "value", value) or "").replace("_", " ")


def when(moment: datetime | None, zone: ZoneInfo) -> str:
    """The one way a printed record writes a time: site time to the second with its UTC offset,
    '2026-07-25 10:00:00 +02:00': the pages' format, to the second (a record keeps seconds). Tables keep it whole."""
    return clock.local_text(moment, zone, clock.SECONDS)


def signature_text(sig: SignatureView, zone: ZoneInfo) -> tuple[str, str]:
    """(what was signed, why it no longer stands): name, meaning and time; the second part is empty
    for a signature that stands."""
    signed = f"{sig.signer_name} · {text(sig.meaning)} · {when(sig.at, zone)}"
    if not sig.invalidated_at:
        return signed, ""
    voided = when(sig.invalidated_at, zone)
    return signed, f"INVALIDATED {voided}: {sig.invalidated_reason or ''}"


GREY, DARK, BROWN = (95, 95, 95), (25, 25, 25), (150, 60, 0)


@dataclass(frozen=True)
class Look:
    """How a table cell is printed: font style ("", "B", "S" struck through, "BS"), colour, fill."""

    style: str = ""
    color: tuple[int, int, int] = DARK
    fill: tuple[int, int, int] | None = None


PLAIN, BOLD, HEAD = Look(), Look("B"), Look("B", fill=(232, 237, 244))
STRUCK = Look("S", GREY)  # superseded: struck through, still readable
OOS = Look("", fill=(253, 226, 221))  # red ground; not bold, so a long word still fits its column
MARK = Look("B", BROWN)
NOTE = Look("", GREY)
CELL_SIZE, LINE, PAD = 7.5, 3.3, 0.8  # pt, mm, mm
SLACK = 0.4  # mm a line keeps clear of its cell's right rule, so a full line never touches it
NBSP = "\u00a0"
# A time as clock.local_text writes it (and an ISO time as typed): broken across lines it misreads
# ("+00:0" / "0"), so lines break around it, never inside, and its column is made wide enough.
TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d)?(?:\.\d+)?(?: ?[+-]\d\d:\d\d|Z)?")
WIDEST_SHARE = 0.4  # an unbreakable word widens its column to at most this share of the page


def keep_whole(value: str) -> str:
    """The spaces inside each time made non-breaking; fpdf2 prints them as plain spaces."""
    return TIME.sub(lambda m: m.group().replace(" ", NBSP), value) if ":" in value else value


class RecordPDF(LabelPDF):
    """A4 pages whose footer names the lot, the page of pages, and when and by whom it was printed,
    and on a second line the latest signed checkpoint of the audit chain (checkpoints.store): a
    printout that names it can be checked against the chain, and a later rewrite contradicts it."""

    def __init__(self, fonts: LabelFonts, footer: str):
        super().__init__(orientation="P", unit="mm", format="A4")
        self._footer = footer
        latest = latest_logged()
        self._checkpoint = latest.short() if latest is not None else ""
        self.set_margins(12, 12, 12)
        self.set_auto_page_break(True, margin=15)
        # the faces parsed once per process (labels/fonts.py), not twice for every record printed;
        # written with output(), not LabelPDF.finish(): the last footer and the page count are drawn
        # inside output(), after finish() has chosen the kept subset by the glyphs used so far
        self.add_label_font("", fonts.regular, family="Doc")
        self.add_label_font("B", fonts.bold, family="Doc")
        self.set_stretching(fonts.stretch_percent)
        self.set_font("Doc", "", 8)
        font = self.current_font
        if not isinstance(font, TTFFont):  # add_font above loads TrueType fonts; a core font has no cmap
            raise TypeError("The record's fonts are TrueType fonts.")
        self._cmap = font.cmap
        self.set_creator("cellbench")

    def add_page(self, *args, **kwargs) -> None:
        checkpoint()  # a rendering past its deadline, or whose client left, stops here
        super().add_page(*args, **kwargs)

    def footer(self) -> None:
        self.set_y(-11)
        self.set_font("Doc", "", 7)
        self.set_text_color(*GREY)
        self.cell(0, 4, self.clean(self._footer.replace("{page}", str(self.page_no()))), align="C")
        if self._checkpoint:
            self.set_xy(self.l_margin, -7.5)
            self.set_font("Doc", "", 6)
            self.cell(0, 3, self.clean(self._checkpoint), align="C")
        self.set_text_color(*DARK)

    def clean(self, value: object) -> str:
        """Text as stored, made printable: a character the font lacks is written as its code point
        rather than silently dropped, so the printout never hides part of a value."""
        out = str(value if value is not None else "").replace("\r\n", "\n").replace("\t", " ")
        if all(ord(ch) in self._cmap or ch == "\n" for ch in out):
            return out
        return "".join(ch if ord(ch) in self._cmap or ch == "\n" else f"[U+{ord(ch):04X}]" for ch in out)

    def heading(self, title: str, size: float = 11, keep: float = 30) -> None:
        if self.get_y() > self.h - self.b_margin - keep:
            self.add_page()
        self.ln(2)
        self.set_font("Doc", "B", size)
        self.multi_cell(0, size * 0.48, self.clean(title), new_x="LMARGIN", new_y="NEXT")
        self.set_font("Doc", "", 8)
        self.ln(1)

    def line_of(self, parts: list[tuple[str, str]], height: float = 4) -> None:
        """One paragraph of runs, each with its own style ("", "B", "S", "BS")."""
        parts = [(style, self.clean(part)) for style, part in parts if part]
        widths = []
        for style, part in parts:
            self.set_font("Doc", style, 8)
            widths.append(text_width(self, part))
        if sum(widths) <= self.epw and not any("\n" in part for _, part in parts):
            # the common case, one line: placed as it is, without fpdf2's (slow) line breaking, each
            # run where cell() would print it (set in by c_margin, on the baseline of a `height` line)
            if self.get_y() + height > self.page_break_trigger:
                self.add_page()
            x, baseline = self.get_x(), self.get_y() + 0.5 * height + 0.3 * 8 / self.k
            for (style, part), width in zip(parts, widths, strict=True):
                self.set_font("Doc", style, 8)
                self.text(x + self.c_margin, baseline, part)
                x += width
            self.set_font("Doc", "", 8)
            self.ln(height)
            return
        for style, part in parts:
            self.set_font("Doc", style, 8)
            self.write(height, keep_whole(part))
        self.set_font("Doc", "", 8)
        self.ln(height)

    def pairs(self, rows: list[tuple[str, str]]) -> None:
        self.grid(None, (48, 138), [[{"text": name, "style": BOLD}, value] for name, value in rows])

    def grid(self, columns: tuple[str, ...] | None, widths: tuple[float, ...], rows: list[list]) -> None:
        """A ruled table across the page whose heading repeats on every page. A cell is text or
        {"text", "style": a Look, "colspan"}; widths are proportions of the page width. A column is
        widened (from the others' room to spare) until its widest unbreakable word fits, so a time
        or an identifier never breaks inside.

        Drawn here rather than with fpdf2's table(): that breaks lines one character at a time and
        took two thirds of a batch record's rendering time; cells here are wrapped by words."""
        scale = self.epw / sum(widths)
        heading = [{"text": c, "style": HEAD} for c in columns] if columns else None
        measured = [self._measure(cells) for cells in ([heading] if heading else []) + rows]
        scaled = self._fit([w * scale for w in widths], measured)
        laid = [self._lay(cells, scaled) for cells in measured]
        head = laid.pop(0) if heading else None
        if head:
            if self.get_y() + 3 * LINE + 4 * PAD > self.page_break_trigger:  # no heading alone at a page foot
                self.add_page()
            self._row(head, None)
        for row in laid:
            self._row(row, head)
        self.set_x(self.l_margin)

    def _measure(self, cells: list) -> list[tuple[int, Look, list[list[tuple[str, float]]]]]:
        """Each cell as (colspan, look, paragraphs of (word, width)), its times kept whole."""
        out = []
        for cell in cells:
            cell = cell if isinstance(cell, dict) else {"text": cell}
            look = cell.get("style", PLAIN)
            self.set_font("Doc", look.style.replace("S", ""), CELL_SIZE)
            # a word's width as the sum of its characters' (each measured once per font): fpdf2's
            # get_string_width per word was the largest part of laying out a record's tables
            measure = char_width(self)
            paragraphs = [[(word, sum(map(measure, word))) for word in paragraph.split(" ")]
                          for paragraph in keep_whole(self.clean(cell.get("text", ""))).split("\n")]
            out.append((cell.get("colspan", 1), look, paragraphs))
        return out

    def _fit(self, widths: list[float], measured: list) -> list[float]:
        """Widths that give each column room for its widest word, taken from the columns with room
        to spare in proportion to it; as given when the words cannot all fit."""
        need = [0.0] * len(widths)
        for cells in measured:
            column = 0
            for span, _, paragraphs in cells:
                if span == 1 and column < len(widths):
                    widest = max((size for paragraph in paragraphs for _, size in paragraph), default=0.0)
                    need[column] = max(need[column], min(widest + 2 * PAD + SLACK, self.epw * WIDEST_SHARE))
                column += span
        short = sum(max(0.0, n - w) for n, w in zip(need, widths, strict=True))
        if short <= 0:
            return widths
        spare = [max(0.0, w - n) for n, w in zip(need, widths, strict=True)]
        if sum(spare) < short:
            return widths
        take = short / sum(spare)
        return [max(n, w - s * take) for n, w, s in zip(need, widths, spare, strict=True)]

    def _lay(self, cells: list, widths: list[float]) -> list[tuple[float, float, list[str], Look]]:
        laid, x, column = [], self.l_margin, 0
        for span, look, paragraphs in cells:
            width = sum(widths[column:column + span])
            laid.append((x, width, self._wrap(paragraphs, width - 2 * PAD - SLACK, look.style), look))
            x, column = x + width, column + span
        return laid

    def _row(self, laid: list[tuple[float, float, list[str], Look]], heading: list | None) -> None:
        row_lines = max(len(lines) for *_, lines, _ in laid)
        first = 0
        while first < row_lines:
            checkpoint()
            room = int((self.page_break_trigger - self.get_y() - 2 * PAD) // LINE)
            fresh = int((self.page_break_trigger - self.t_margin - 2 * PAD) // LINE) - (2 if heading else 0)
            if room < row_lines - first and (room < 1 or row_lines - first <= fresh):  # move the row to the next page
                self.add_page()
                if heading:
                    self._row(heading, None)
                continue
            count = min(room, row_lines - first)  # a row taller than a page continues on the next
            y, height = self.get_y(), count * LINE + 2 * PAD
            for x, width, lines, look in laid:
                if look.fill:
                    self.set_fill_color(*look.fill)
                self.rect(x, y, width, height, style="DF" if look.fill else "D")
                self.set_font("Doc", look.style, CELL_SIZE)
                self.set_text_color(*look.color)
                # Each line placed at its baseline where cell() would put it (half the line down and
                # 0.3 of the font size below that), with text(): the lines are measured and cut to
                # fit already, and cell()'s fragment and alignment machinery was a third of a
                # record's rendering. text() keeps the font's subset, the colour and the strike.
                baseline = y + PAD + 0.5 * LINE + 0.3 * self.font_size
                for index, line in enumerate(lines[first:first + count]):
                    if line:
                        self.text(x + PAD, baseline + index * LINE, line)
            self.set_text_color(*DARK)
            self.set_xy(self.l_margin, y + height)
            first += count

    def _wrap(self, paragraphs: list[list[tuple[str, float]]], width: float, style: str) -> list[str]:
        self.set_font("Doc", style.replace("S", ""), CELL_SIZE)
        measure = char_width(self)
        return [line.replace(NBSP, " ") for line in wrap(paragraphs, width, measure(" "), measure)]

def certificate_start(heading: str, footer_label: str, intro: str, *, zone: ZoneInfo, printed_by: str,
                      printed_at: datetime) -> RecordPDF:
    """The opening every certificate shares (CoA, release, destruction): fonts, a footer naming the
    document, page and who printed it when, the heading and an intro that says where times are."""
    footer = f"{footer_label} · page {{page}} of {{nb}} · printed {when(printed_at, zone)} by {printed_by}"
    pdf = RecordPDF(find_label_fonts(), footer)
    pdf.set_title(heading.replace(" — ", ", "))
    pdf.set_author(printed_by)
    pdf.add_page()
    pdf.set_font("Doc", "B", 15)
    pdf.cell(0, 8, pdf.clean(heading), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Doc", "", 8)
    pdf.multi_cell(0, 4, pdf.clean(f"{intro}Issued from cellbench. Times are shown in {zone.key} with their UTC "
                                   "offset."), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    return pdf
