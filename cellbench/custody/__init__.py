"""Custody: the chain of custody of every kit (`events`), storage locations (`storage`), and
shipments from the cell bench to a site pharmacy, moved by one transition table
(`lifecycle.MACHINE`): packed and dispatched (`packing`), received by scanning and checked
(`receipt`, `temperature`), held for QA's signed assessment (`assessment`), lost or damaged
(`losses`), and read (`reading`). The scan station is `scanning`. Boxes in a site's tanks and the
position of each kit in them, filled by scanning at receipt or by a move: `positions`.

Nothing here knows an arm: shipments and receipts treat active and placebo kits alike, and a
failed receipt check holds the whole shipment, both arms, never a chosen part of it. This package
never imports the sealed compartment or anything built on it (blinded pharmacists and monitors
read every shipment page).
"""

from __future__ import annotations

from . import positions, scanning
from .assessment import DECISIONS, assess
from .events import chain, fetch, key, person, recent, record, relocate, travelling
from .lifecycle import (
    ACTION_LABELS,
    ASSESSORS,
    DAMAGE_REPORTERS,
    IN_TRANSIT,
    KEEPERS,
    LOST,
    MACHINE,
    MOVES,
    OPEN,
    PACKING,
    QUARANTINED,
    READERS,
    RECEIVED,
    RECEIVERS,
    REJECTED,
    SHIPPERS,
    STATE_LABELS,
    ShipmentState,
    allowed_actions,
    state_label,
)
from .losses import report_damaged, report_lost
from .packing import SHIPPABLE, create, dispatch, kit_in_date_to_ship, kit_may_be_packed, pack, pack_kit, unpack
from .positions import (
    BOX_PREFIX,
    MAX_CAPACITY,
    Position,
    add_box,
    box_by_code,
    boxes,
    filled,
    is_box_code,
    not_put_away,
    occupants,
    place,
    position_of,
    position_of_number,
    target_of,
)
from .positions import move as move_by_scan
from .reading import (
    ManifestLine,
    by_number,
    counts_by_state,
    kit_counts,
    kits_of,
    manifest,
    problems_of,
    progress,
    qa_signature,
    reading_count,
    shipment_page,
    shipments,
    site_codes,
    study_codes,
    user_names,
)
from .receipt import ReceiptScan, complete_receipt, receipt_scan, receipt_step, receive_into_box
from .scanning import GroupCommit, Verdict, scan
from .storage import (
    CELL_BENCH,
    LOCATION_KINDS,
    STORABLE_AT_BENCH,
    STORABLE_AT_SITE,
    add_location,
    location_by_code,
    locations,
    place_name,
    site_by_code,
    site_pharmacy,
    storage_places,
    store,
    stored_counts,
)
from .temperature import (
    LOGGER_SOURCES,
    MAX_LOGGER_LINES,
    PLAUSIBLE_C,
    RECEIPT_CHECKS,
    ColdChain,
    LoggerRecord,
    cold_chain,
    cold_chain_of,
    logger_record,
    no_temperature_record,
    parse_logger_csv,
    seal_broken,
    temperature_excursion,
    transit_beyond_hold_time,
)

