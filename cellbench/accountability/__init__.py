"""Accountability: released = in stock + dispensed + returned + destroyed + damaged or lost.

Blinded counts per site and blinded lot (`site`), destruction after reconciliation (`destruction`)
and its certificate (`certificate`) are re-exported here. The unblinded count per manufacturing lot
(`by_lot`) reads the sealed compartment and is imported by its full name only, so that importing
this package never reaches it."""

from __future__ import annotations

from . import certificate, destruction
from .certificate import CertificateData, KitLine, SignatureLine, certificate_file, certificate_pdf, gather
from .destruction import (
    AUTHORISERS,
    DESTROYABLE,
    RECORDERS,
    DestructionState,
    allowed_actions,
    authorise,
    by_number,
    destroyable_kits,
    destruction_blocked,
    destructions,
    kits_of,
    local_today,
    local_zone,
    record_destruction,
    site_of,
)
from .site import (
    BENCH,
    CATEGORIES,
    COUNTERS,
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
    refusal_at,
    require_at,
    row_of,
    rows,
    stored,
    study_of,
)
