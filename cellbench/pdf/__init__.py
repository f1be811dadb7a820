"""What every PDF shares below its layout: the one linear-time line breaker (`wrapping`) and how a
route renders a PDF in a worker within a time limit, stopped when its client leaves (`rendering`);
many short texts written as fpdf2's text() writes them, without its cost per call (`plain_text`).
Kept apart from `reports` and `labels` so that both use it without importing each other."""

from __future__ import annotations

from .plain_text import PlainText
from .rendering import (
    Budget,
    PDFTimeout,
    RenderStopped,
    checkpoint,
    render_for,
    render_in_time,
    run_with_budget,
)
from .wrapping import break_word, char_width, fit_prefix, text_width, wrap, wrap_text

__all__ = ["Budget", "PDFTimeout", "PlainText", "RenderStopped", "break_word", "char_width", "checkpoint", "fit_prefix",
           "render_for", "render_in_time", "run_with_budget", "text_width", "wrap", "wrap_text"]
