"""Guided execution of the master batch record: steps in order, values checked against their
limits as they are recorded, materials and equipment checked, performed and verified signatures,
corrections that keep the original, and the lot's completion when the last step is signed.

Every mutating function takes the lot version the actor saw (`seen_version`): two people recording
on the same lot at the same moment get one success and one conflict (lots.claim)."""

from __future__ import annotations

from .completion import UNIT_COUNTS, batch_record_unfinished, complete_if_done, create_units, months_later
from .drafts import (
    SCAN_KINDS,
    Scanned,
    draft_fields,
    draft_of,
    fields_of,
    keep_typing,
    save_and_sign,
    save_draft,
    scanned,
)
from .guided import (
    LATE_AFTER,
    ValueInput,
    all_current,
    all_values,
    current_step,
    current_steps,
    current_values,
    entries_of,
    entry_done,
    entry_of,
    lot_value,
    order_problem,
    require_open_lot,
    start_entry,
    step_complete,
    step_of,
    values_by_entry,
    where,
)
from .signing import awaiting_verification, correct_value, cosign, own_step, perform, verify
from .uses import equipment_of, materials_of, record_equipment, record_material, uses_by_entry
from .values import compute, limits_text, open_deviation, record_values, write_value
