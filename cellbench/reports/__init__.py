"""Reports: the executed batch record gathered as data (`record`'s shapes, read by `record_read`) and printed as a PDF
(`record_pdf`), and what every printed record shares (`document`: the page, its tables and looks,
the wording of values and signatures, the opening of a certificate). Line breaking and rendering
under a time limit, shared with the labels, live in `cellbench.pdf`."""

from __future__ import annotations

from .document import (
    BOLD,
    BROWN,
    CELL_SIZE,
    DARK,
    GREY,
    HEAD,
    LINE,
    MARK,
    NOTE,
    OOS,
    PAD,
    PLAIN,
    STRUCK,
    Look,
    RecordPDF,
    certificate_start,
    keep_whole,
    signature_text,
    text,
    when,
)
from .record import (
    DECISION_TITLES,
    REVIEW_TITLES,
    BatchRecord,
    Correction,
    DeviationRecord,
    EntryRecord,
    LotSignature,
    ParameterLine,
    Row,
    SignatureView,
    StepRecord,
    ValueChange,
    ValueRow,
    limits_text,
)
from .record_pdf import VALUE_COLUMNS, VALUE_WIDTHS, batch_record_pdf, shown
from .record_read import batch_record
