"""Labels: what a kit or vial label says (`particulars`), where each line goes (`layout`), in the
label font (`fonts`), as PDF sheets (`sheets`, with each kit's QR image made once: `qrcache`) and
ZPL (`zpl`); label runs (`printing`) and their records (`runs`); storage box labels (`boxes`), the
participant's identification card (`participant_card`)."""

from __future__ import annotations

from .boxes import BoxLabel, BoxLabelSize, render_box_labels_pdf
from .fonts import LabelFontMissing, LabelFonts, find_label_fonts
from .participant_card import CARD_SIZE_MM, CardText, render_participant_card_pdf
from .particulars import (
    DEFAULT_SHEET,
    DEFAULT_SIZE,
    NBSP,
    PT,
    KitLabel,
    LabelKind,
    LabelSize,
    LabelStudy,
    SheetLayout,
    printed_expiry,
)
from .printing import (
    DEFAULT_STATES,
    EXTENSIONS,
    KINDS,
    MAX_KITS_PER_RUN,
    MEDIA_TYPES,
    NO_LABELS,
    OUTPUTS,
    PRINTED_ACTION,
    PRINTERS,
    READERS,
    LabelsUnavailable,
    RunView,
    by_number,
    filename,
    kit_labels,
    kit_number_list,
    kits_of,
    label_study,
    open_count,
    print_run,
    reconcile,
    rendered,
    runs,
    study_code_of_blinded_lot,
    view,
    views,
)
from .sheets import render_label_sheet_pdf, render_single_label_pdf
from .zpl import render_zpl
