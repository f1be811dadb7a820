"""The label font: a Unicode TrueType face found on the server (or named by CELLBENCH_LABEL_FONT),
and the PDF every label is drawn on with it. Labels are refused, never printed with a character
missing, when no such font is there.

The font is read once per process, not once per PDF (issue 18), for labels and for the printed
records, certificates and reports, which draw in the same faces (reports/document.py). fpdf2's add_font parses the
whole face (metrics and character map of ~6,000 glyphs: 30-40 ms a face, two faces a PDF), and
at output it cuts the subset of glyphs the PDF uses out of it (another 20-30 ms a face). So each
PDF gets a copy of a face parsed once (`_parsed`), with its own subset map and its own
unparsed font file (parsed lazily, and cut in place by fpdf2 at output), and `LabelPDF.finish`
keeps each subset fpdf2 cut, under the face and the glyphs it holds: a PDF needing the same
glyphs (a reprint, the next run of the study) hands fpdf2 the kept subset to cut, which gives
the same bytes (fontTools' subsetting of its own subset to the same glyphs is the identity;
tests/labels/test_label_cache.py compares with fonts read the plain way) in a fifth of the time.

A PDF needing glyphs cut before in no other combination (every syringe label: its own kit,
participant and time digits) is cut from the face's *base* instead of the whole face: the face
cut once to the labels' repertoire (`REPERTOIRE`), names and tables kept, made at a face's second
such miss. Cutting a subset of the base gives the bytes that cutting it from the whole face gives
(the test compares) at a fifth of the cost: the whole face's 6,000 glyph outlines and metrics are
read no more (issue 18: 14 syringe labels cost a tenth of the demo build).
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import io
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import fontTools  # type: ignore[import-untyped]
import fpdf
from fontTools import subset as ftsubset
from fontTools import ttLib
from fpdf import FPDF
from fpdf.fonts import SubsetMap, TTFFont

from .kept import Kept

MAX_SUBSETS = 64  # ~18 kB each: the glyph sets of a few studies' labels, both faces
MAX_BASES = 8  # ~60 kB each: one per face (regular and bold) of the fonts in use

# What labels print in: ASCII, Latin-1 and Latin Extended-A (the study languages' letters),
# typographic dashes, quotes and bullets, and the storage and dose lines' ≤ ≥ − × and superscripts.
REPERTOIRE = frozenset((*range(0x20, 0x7F), *range(0xA0, 0x180), *range(0x2010, 0x2027), *range(0x2070, 0x208F),
                        0x2212, 0x2264, 0x2265))


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


@dataclass(frozen=True)
class _Face:
    font: TTFFont  # parsed once; never drawn with itself (its copies are)
    data: bytes  # the font file, parsed again lazily by each copy's own fontTools object
    key: str  # what a subset of it follows from: the file's bytes, fpdf2's and fontTools' versions


@lru_cache(maxsize=4)
def _parsed(path: str, style: str) -> _Face | None:
    """The face parsed once, or None where copies would not be plain (colour or compressed fonts)."""
    scratch = FPDF()
    scratch.add_font("Label", style, path)
    font = scratch.fonts[f"label{style}"]
    if not isinstance(font, TTFFont) or font.color_font is not None or font.is_compressed:
        return None
    data = Path(path).read_bytes()
    font.ttfont.close()
    del font.ttfont  # its parsed tables (megabytes): each copy parses its own from `data`
    key = hashlib.sha256(data).hexdigest() + f"|fpdf2={fpdf.__version__}|fonttools={fontTools.version}"
    return _Face(font, data, key)


SUBSETS: Kept[bytes] = Kept(MAX_SUBSETS)
# face key -> (the face cut to REPERTOIRE, its glyph names); and the faces missed once so far.
BASES: Kept[tuple[bytes, frozenset[str]]] = Kept(MAX_BASES)
_MISSED_ONCE: set[str] = set()
_MISSED_LOCK = threading.Lock()


def _cut_base(face: _Face) -> tuple[bytes, frozenset[str]]:
    """The face cut to the glyphs of REPERTOIRE, keeping glyph names (fpdf2 asks for glyphs by
    name) and every name record; less the layout tables fpdf2 drops from every subset it cuts
    (compiling them was most of this cut's cost; were fpdf2 to keep one, the bytes would differ
    and tests/labels/test_label_cache.py fails)."""
    font = ttLib.TTFont(io.BytesIO(face.data), recalcTimestamp=False, lazy=True)
    cmap = font.getBestCmap() or {}
    options = ftsubset.Options(glyph_names=True, notdef_outline=True, recommended_glyphs=True, name_IDs=["*"],
                               name_languages=["*"])
    options.drop_tables += ["FFTM", "GDEF", "GPOS", "GSUB", "MATH"]
    subsetter = ftsubset.Subsetter(options)
    subsetter.populate(glyphs=sorted({cmap[code] for code in REPERTOIRE if code in cmap}))
    subsetter.subset(font)
    buffer = io.BytesIO()
    font.save(buffer)
    return buffer.getvalue(), frozenset(font.getGlyphOrder())


def _base_for(face: _Face, glyph_names: frozenset[str]) -> bytes | None:
    """The face's base when it holds every glyph asked for, else None (cut from the whole face).
    A face missed once is cut whole as before: one label run in a process pays no base."""
    found = BASES.get(face.key)
    if found is None:
        with _MISSED_LOCK:
            first = face.key not in _MISSED_ONCE
            _MISSED_ONCE.add(face.key)
        if first:
            return None
        found = _cut_base(face)
        BASES.put(face.key, found)
    data, names = found
    return data if glyph_names <= names else None


class LabelPDF(FPDF):
    """An FPDF whose label faces are copies of faces parsed once (`_parsed`)."""

    def __init__(self, **kwargs: object):
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.shared_faces: dict[str, str] = {}  # fontkey -> the face's key
        self._faces: dict[str, _Face] = {}

    def add_label_font(self, style: str, path: Path, shared: bool = True, family: str = "Label") -> None:
        face = _parsed(str(path), style) if shared else None
        if face is None:
            self.add_font(family, style, str(path))
            return
        font = copy.copy(face.font)  # metrics, character map and widths shared: read only
        font.i = len(self.fonts) + 1
        font.fontkey = f"{family.lower()}{style}"  # as add_font names it: the face is parsed under "Label"
        font.ttfont = ttLib.TTFont(io.BytesIO(face.data), recalcTimestamp=False, lazy=True)
        font.subset, font.missing_glyphs, font.biggest_size_pt = SubsetMap(font), [], 0
        font._hbfont = None
        self.fonts[font.fontkey] = font
        self.shared_faces[font.fontkey] = face.key
        self._faces[font.fontkey] = face

    def finish(self) -> bytes:
        """The PDF's bytes, each face's subset cut from a kept one where the same glyphs were cut
        before, else from the face's base where it holds them all."""
        cut: dict[str, tuple[str, frozenset[str]]] = {}
        for fontkey, face_key in self.shared_faces.items():
            font = self.fonts[fontkey]
            assert isinstance(font, TTFFont)
            key = (face_key, frozenset(font.subset.get_all_glyph_names()))
            kept = SUBSETS.get(key)
            if kept is None:
                cut[fontkey] = key
                kept = _base_for(self._faces[fontkey], key[1])
            if kept is not None:
                font.ttfont = ttLib.TTFont(io.BytesIO(kept), recalcTimestamp=False, lazy=True)
        data = bytes(self.output())
        for fontkey, key in cut.items():  # fpdf2 has cut the subset in place: keep it
            font = self.fonts[fontkey]
            assert isinstance(font, TTFFont)
            buffer = io.BytesIO()
            font.ttfont.save(buffer)
            SUBSETS.put(key, buffer.getvalue())
        return data


def new_pdf(page: tuple[float, float], creation_date: datetime | None = None, *,
            shared_faces: bool = True) -> LabelPDF:
    """A PDF stamped with `creation_date` (timezone-aware), or with the time it is made. fpdf2
    derives the file identifier from the content and this date, so the same labels with the same
    date give the same bytes: a label run is downloaded again exactly as it was printed.
    `shared_faces=False` reads the faces the plain fpdf2 way (for the tests that compare)."""
    fonts = find_label_fonts()
    pdf = LabelPDF(unit="mm", format=page)
    if creation_date is not None:
        if creation_date.tzinfo is None:
            raise ValueError("the creation date needs its UTC offset")
        pdf.set_creation_date(creation_date.replace(microsecond=0))
    pdf.set_auto_page_break(False)
    pdf.set_margins(0, 0, 0)
    pdf.add_label_font("", fonts.regular, shared_faces)
    pdf.add_label_font("B", fonts.bold, shared_faces)
    pdf.set_stretching(fonts.stretch_percent)
    pdf.set_creator("cellbench")
    return pdf


def glyphs(pdf: FPDF) -> dict[int, str]:
    """The current font's character map: the label font is always a TrueType font (LabelFonts)."""
    font = pdf.current_font
    if not isinstance(font, TTFFont):
        raise LabelFontMissing("the label font is not a TrueType font")
    return font.cmap
