"""The sealed compartment: the only code that knows an arm (its walls: walls.py).

Parts: walls (the gate and the logged read), lists (randomisation and kit lists), units (kits and
what is inside them), donors (whose cells a dose is), doors (the blind-safe doors a blinded
workflow uses), reads (draws, shortages, block-mates, exports), stock (stock by arm, for resupply).
Callers use `sealed.X` through this package; only the package and its parts (and models/,
migrations) name the sealed tables (tests/test_sealed.py).
"""
from __future__ import annotations

from ..sealing import LIST_KINDS, SHORTAGE_HANDLERS
from .donors import dose_donors, record_dose_donor
from .doors import BLIND_SAFE, CandidateFilter, arm_of_participant, assign_kit, randomise, unblind_participant
from .lists import (
    ListHeader,
    arm_counts,
    create_list,
    discard_list,
    get_list,
    kit_number_taken,
    list_lines,
    list_page,
    lists_of,
    next_participant_start,
    seal_list,
)
from .reads import (
    EXPORT_COLUMNS,
    acknowledge_shortage,
    block_mates,
    export_lists,
    kit_draws,
    kit_shortages,
    open_shortage_count,
    replay_draw,
    study_arms,
)
from .stock import ArmStock, BenchKit, site_stock
from .units import (
    arms_of_kits,
    composition,
    contents,
    contents_of_kits,
    kit_ids_of_run,
    kits_containing_lot,
    lots_of_blinded_lot,
    lots_of_kits,
    lots_of_runs,
    next_planned_kits,
    put_units,
    put_units_many,
    runs_with_lot,
    unit_codes,
)

__all__ = [
    "BLIND_SAFE",
    "EXPORT_COLUMNS",
    "LIST_KINDS",
    "SHORTAGE_HANDLERS",
    "ArmStock",
    "BenchKit",
    "CandidateFilter",
    "ListHeader",
    "acknowledge_shortage",
    "arm_counts",
    "arm_of_participant",
    "arms_of_kits",
    "assign_kit",
    "block_mates",
    "composition",
    "contents",
    "contents_of_kits",
    "create_list",
    "discard_list",
    "dose_donors",
    "export_lists",
    "get_list",
    "kit_draws",
    "kit_ids_of_run",
    "kit_number_taken",
    "kit_shortages",
    "kits_containing_lot",
    "list_lines",
    "list_page",
    "lists_of",
    "lots_of_blinded_lot",
    "lots_of_kits",
    "lots_of_runs",
    "next_participant_start",
    "next_planned_kits",
    "open_shortage_count",
    "put_units",
    "put_units_many",
    "randomise",
    "record_dose_donor",
    "replay_draw",
    "runs_with_lot",
    "seal_list",
    "site_stock",
    "study_arms",
    "unblind_participant",
    "unit_codes",
]
