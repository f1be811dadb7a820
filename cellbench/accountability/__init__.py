"""Accountability: released = in stock + dispensed + returned + destroyed + damaged or lost.

Blinded counts per site and blinded lot (`site`), destruction after reconciliation (`destruction`),
its certificate (`certificate`), the monitor's signed verification of a site's figures
(`verification`) and the site's accountability report (`site_report`) are re-exported here. The
unblinded count per manufacturing lot (`by_lot`) reads the sealed compartment and is imported by
its full name only, so that importing this package never reaches it."""

from __future__ import annotations

from ..kit_categories import CATEGORIES, ON_HAND_TERMS, RELEASED_TERMS, balance, category_of
from . import certificate, destruction, site_report, verification
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
    destruction_page,
    destructions,
    kits_of,
    local_today,
    local_zone,
    record_destruction,
    site_of,
)
from .site import (
    BENCH,
    COUNTERS,
    READERS,
    Row,
    acts_at,
    discrepancies,
    expected_of,
    latest_reconciliation,
    may_act_at,
    place_filter,
    place_key,
    place_name,
    place_of,
    reconcile,
    reconciliation_page,
    reconciliations,
    refusal_at,
    require_at,
    row_of,
    rows,
    stored,
    study_of,
)
from .site_report import SiteReport, gather_site_report, site_report_file, site_report_pdf
from .verification import VERIFIERS, Standing, awaiting, figures, figures_hash, standing, verify, verify_by_code
