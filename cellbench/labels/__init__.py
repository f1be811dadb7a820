"""Labels: Annex VI kit and vial labels as PDF sheets and ZPL (`sheets`) in the label font
(`fonts`), label runs and their reconciliation (`printing`), storage box labels (`boxes`), the
participant's identification card (`participant_card`)."""

from __future__ import annotations

from .boxes import BoxLabel, BoxLabelSize, render_box_labels_pdf
from .fonts import LabelFontMissing, LabelFonts, find_label_fonts
from .participant_card import CARD_SIZE_MM, CardText, render_participant_card_pdf
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
    labelable_lots,
    open_count,
    print_run,
    reconcile,
    rendered,
    runs,
    view,
    views,
)
from .sheets import (
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
    render_label_sheet_pdf,
    render_single_label_pdf,
    render_zpl,
)
