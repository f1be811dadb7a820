"""Supply: randomisation and kit lists, packaging runs, the blind-preserving quarantine, the "no
kit" shortages alerted to the supply manager, resupply proposals that keep both arms stocked at
every site (`resupply`: the trigger, evaluating the sites kits.note_stock notes; `resupply_desk`:
settings and decisions), and what the supply pages and API show of them (`views`).

Every part is unblinded work that reaches the sealed compartment: no blinded-facing module imports
this package."""

from __future__ import annotations

from . import lists, packaging, quarantine, randomisation, resupply, resupply_desk, shortages, views
from .lists import MAKERS, generate, generated_notice, import_csv, seal
from .packaging import (
    FILLABLE_LOT_STATES,
    FREE_VIAL,
    KITTED_VIAL,
    MAX_KITS_PER_RUN,
    PACKERS,
    after_lot_release,
    enough_units,
    expiry_not_shortened_after_labelling,
    fillable_lots,
    lot_may_fill_kits,
    package,
    release_runs_ready,
    run_by_number,
    run_holds_every_arm,
    runs,
)
from .quarantine import (
    CAUSES,
    DECIDERS,
    OPENERS,
    QUARANTINABLE,
    QuarantineState,
    after_lot_quarantine_lifted,
    allowed_decisions,
    by_number,
    choose_kits,
    lift,
    lot_still_under_investigation,
    members,
    open_manual,
    quarantine_lot,
    quarantines,
    withdraw,
)
from .randomisation import (
    ALGORITHM,
    MAX_LIST_SIZE,
    Line,
    arm_counts,
    kit_lines,
    new_seed,
    parse_csv,
    participant_numbers,
    permuted_blocks,
    randomisation_lines,
    sha256_text,
    whole_blocks,
)
from .views import (
    READERS,
    KitUnits,
    LotShare,
    composition_by_arm,
    find_list,
    lots_by_id,
    quarantine_kits,
    quarantines_page,
    run_kits,
    signature_of,
)
