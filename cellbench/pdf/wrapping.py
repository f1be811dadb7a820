"""The one line breaker every PDF uses, in time linear in the text's length.

A word wider than its column used to be cut by measuring ever shorter prefixes, and then the
remainder again for every line: a 4,000-character word took 85 s. Here each character's width is
measured once per font and size (and cached), a word is measured as the sum of its characters',
and a long word is cut where a running sum passes the width, so nothing is measured twice.

Every loop here calls `rendering.checkpoint()`, so a PDF rendered under a time limit stops when
its deadline passes or its client leaves (a thread cannot be killed; it must stop itself).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from weakref import WeakKeyDictionary

from fpdf import FPDF

from .rendering import checkpoint

Measure = Callable[[str], float]
# Per document, per (font, size, stretching, spacing): the width of each character met so far.
_WIDTHS: WeakKeyDictionary[FPDF, dict[tuple, dict[str, float]]] = WeakKeyDictionary()


def char_width(pdf: FPDF) -> Measure:
    """The width of one character in the document's current font and size, each measured once."""
    key = (pdf.font_family, pdf.font_style, pdf.font_size_pt, pdf.font_stretching, pdf.char_spacing)
    widths = _WIDTHS.setdefault(pdf, {}).setdefault(key, {})

    def width(ch: str) -> float:
        size = widths.get(ch)
        if size is None:
            size = widths[ch] = pdf.get_string_width(ch)
        return size

    return width


def text_width(pdf: FPDF, text: str) -> float:
    """The width of `text` in the current font: the sum of its characters' cached widths."""
    width = char_width(pdf)
    return sum(width(ch) for ch in text)


def break_word(word: str, width: float, measure: Measure) -> tuple[list[str], float]:
    """`word` cut into pieces no wider than `width` (a piece keeps at least one character), and the
    width of the last piece. One pass with a running sum: the remainder is never measured again."""
    pieces: list[str] = []
    start, used = 0, 0.0
    for index, ch in enumerate(word):
        size = measure(ch)
        if used + size > width and index > start:
            if len(pieces) % 64 == 0:
                checkpoint()
            pieces.append(word[start:index])
            start, used = index, 0.0
        used += size
    pieces.append(word[start:])
    return pieces, used


def wrap(paragraphs: Iterable[Iterable[tuple[str, float]]], width: float, space: float,
         measure: Measure) -> list[str]:
    """Paragraphs of (word, width) as lines no wider than `width`: words joined by single spaces
    while they fit, a word wider than a whole line cut where it must. An empty paragraph is an
    empty line."""
    lines: list[str] = []
    for paragraph in paragraphs:
        checkpoint()
        line, used = "", 0.0
        for word, size in paragraph:
            if line and used + space + size <= width:
                line, used = f"{line} {word}", used + space + size
                continue
            if line:
                lines.append(line)
            if size > width and len(word) > 1:  # a word wider than its column breaks where it must
                pieces, size = break_word(word, width, measure)
                lines.extend(pieces[:-1])
                word = pieces[-1]
            line, used = word, size
        lines.append(line)
    return lines


def fit_prefix(pdf: FPDF, text: str, width: float, tail: str = "…", most: int | None = None) -> str:
    """The longest start of `text` (at most `most` characters) that fits `width` in the current font
    with `tail` after it, tail included: found by one running sum, not by measuring shorter and
    shorter cuts."""
    measure = char_width(pdf)
    room, used, keep = width - sum(measure(ch) for ch in tail), 0.0, 0
    for ch in text[:most]:
        used += measure(ch)
        if used > room:
            break
        keep += 1
    return text[:keep] + tail


def wrap_text(pdf: FPDF, text: str, width: float) -> list[str]:
    """Plain text in the current font as lines of `width`, broken at whitespace (and inside a word
    too long for a line)."""
    measure = char_width(pdf)
    words = [(word, sum(measure(ch) for ch in word)) for word in text.split()]
    return [line for line in wrap([words], width, measure(" "), measure) if line]
