"""Release of a lot: the gates (`gates`), QA's review by exception and of the audit trail
(`reviews`), storage excursions (`excursions`), the QP's initial and final certification, the
sponsor release, rejection and every move of a lot with what it does to the lot's kits
(`decisions`), the work queues (`queues`); the certificate of analysis and the release certificate,
gathered (`certificate_data`) and printed (`certificates`).

Parts import one another in that order (reviews, excursions, gates, decisions, queues,
certificate_data, certificates), never this package: no cycle inside it. Release may import lots,
qc, steps, supply, studies and reports; none of those imports release.
"""

from __future__ import annotations

from . import certificates
from .certificates import (
    DECISION_TITLES,
    CertificateData,
    PendingLine,
    SignatureLine,
    TestLine,
    coa_pdf,
    gather,
    release_certificate_pdf,
)
from .decisions import (
    certify,
    decisions_with_signatures,
    move_lot,
    owner_names,
    pending_tests,
    qc_analysts,
    reject,
    release_for_shipment,
    sponsor_release,
)
from .excursions import assess_excursion, excursions_of, record_excursion
from .gates import (
    GUARDS,
    LABELS,
    REVIEW_GATES,
    Gate,
    GateState,
    audit_trail_reviewed,
    batch_record_complete,
    batch_record_reviewed,
    certified,
    counts_for_release,
    deviations_closed,
    donor_eligible,
    initially_certified,
    last_decision,
    name_of,
    next_guard,
    no_result_out_of_specification,
    no_unassessed_excursion,
    pending_candidates,
    qp_independent,
    readiness,
    release_tests_in_specification,
    release_tests_in_specification_or_pending,
    vials_reconciled,
)
from .queues import (
    READERS,
    awaiting_certification,
    awaiting_review,
    awaiting_sponsor_release,
    lot_page_in,
    lots_in,
    lots_pending_for,
    page_of,
    pending_count,
    pending_owned_by,
)
from .reviews import (
    FINDING_KINDS,
    REVIEW_KINDS,
    REVIEWABLE,
    Finding,
    exceptions,
    latest_lot_seq,
    latest_review,
    lot_audit_trail,
    review_key,
    reviews_of,
    sign_review,
)
