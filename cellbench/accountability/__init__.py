"""Accountability: released = in stock + dispensed + returned + destroyed + damaged or lost.

Blinded counts per site and blinded lot (`site`) and destruction after reconciliation (`destruction`)
are re-exported here. The unblinded count per manufacturing lot (`by_lot`) reads the sealed
compartment and is imported by its full name only, so that importing this package never reaches it."""

from __future__ import annotations

from . import destruction
from .destruction import (
    AUTHORISERS,
    DESTROYABLE,
    CertificateData,
    KitLine,
    SignatureLine,
    authorise,
    by_number,
    certificate_pdf,
    destroyable_kits,
    destruction_blocked,
    destructions,
    gather,
    kits_of,
    local_today,
    local_zone,
    record_destruction,
)
from .site import (
    BENCH,
    CATEGORIES,
    ON_HAND_TERMS,
    READERS,
    RELEASED_TERMS,
    Row,
    acts_at,
    balance,
    category_of,
    discrepancies,
    expected_of,
    latest_reconciliation,
    may_act_at,
    place_filter,
    place_key,
    place_name,
    place_of,
    reconcile,
    reconciliations,
    require_at,
    row_of,
    rows,
)
