"""Kits as everyone sees them: one state machine for both arms (`lifecycle`), blinded views and
label scans (`reading`).

This package never imports `sealed` and reads no sealed table: whatever it returns is the same
for an active kit and a placebo kit in the same situation. Arm-aware work (packaging, the
blind-preserving quarantine, the unblinded kit view) lives in supply.
"""

from __future__ import annotations

from . import lifecycle, reading
from .codes import KitCode, is_marked, read_code
from .lifecycle import (
    AWAITING_FINAL_RELEASE,
    AWAITING_TWIN,
    FINAL_RELEASE,
    GENERIC_QUARANTINE_REASON,
    LEAVES_STORAGE,
    MACHINE,
    MOVES,
    SITE_STOCK,
    STATE_LABELS,
    allowed_moves,
    by_move,
    held_in_transit,
    issue,
    maker_id,
    move,
    move_for,
    move_many,
    not_in_a_kit_quarantine,
    note_stock,
    release_finally,
    state_label,
)
from .reading import (
    READERS,
    BlindedLotListing,
    KitView,
    blinded_lot_by_code,
    blinded_lot_of,
    blinded_lot_page,
    blinded_lot_rows,
    blinded_lots,
    by_number,
    counts_by_state,
    history,
    kit_number_refusal,
    kits,
    require_reader,
    scan,
    scan_code,
    scanned,
    view,
    views,
)
