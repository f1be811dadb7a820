"""Lots: started from an effective specification (and, for cells, an eligible donation), moved by one
transition table (`lifecycle.MACHINE`), protected against two people acting on the same lot at once."""

from __future__ import annotations

from .lifecycle import (
    AUTOMATIC,
    CARRIES_KITS,
    GATED,
    HISTORY_SHOWN,
    KIT_MOVES,
    LOT_PREFIX,
    MACHINE,
    MOVES,
    READERS,
    RECORD_FINISHED,
    Gate,
    allowed_moves,
    by_number,
    claim,
    complete,
    decisions_of,
    latest_history,
    lot_page,
    lots,
    move,
    results_snapshot,
    spec_of,
    start_lot,
)
from .vials import (
    Reconciliation,
    free_units,
    place,
    reconcile,
    record_fate,
    unreconciled,
    vials_of,
    without_fate,
)
