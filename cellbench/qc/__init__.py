"""QC results: entered per release test of the lot's own specification version, judged by
specifications.evaluate (the one pure function that says pass or out of specification), reviewed
by a second person before they count.

A result is never overwritten. A retest is a new row linked to the result it retests, and the
original stays. An invalidated result stays too, with QA's reason and signature.

Retesting into compliance is not allowed: a passing retest does not clear an out-of-specification
result. The OOS stands until QA invalidates that result, with a reason and a signature (normally
after the OOS investigation found a laboratory error). Only then does the retest count.

Every OOS result opens an investigation deviation at once. An OOS arriving after the lot was
certified (initial or final) or released also marks the lot (an audited "post-certification OOS")
and calls every function in POST_CERTIFICATION_OOS_HOOKS; the kits work registers its
blind-preserving quarantine there. The lot's state does not change here: QA and the QP decide.

The audit events of this package are unblinded: what a QC result says about a lot, and when, could
be set beside a kit quarantine that a blinded user sees.

Parts: results (where each test stands, what signatures cover), entry (entering and judging a
result), investigations (OOS deviations and the post-certification hooks), review (second-person
review, QA's invalidation, work queues), sets (a grid of results entered at once; a set reviewed
under one signature), grid (what the lot's QC page shows).
"""

from __future__ import annotations

from .entry import SAMPLE_ID_MAX, enter_result, judge, sample_id_text
from .grid import (
    DonorStage,
    awaiting_review,
    choices,
    criterion_words,
    donor_stage,
    grid,
    offered,
    result_text,
    reviewable_by,
)
from .investigations import (
    POST_CERTIFICATION_OOS,
    POST_CERTIFICATION_OOS_HOOKS,
    PostCertificationHook,
    on_post_certification_oos,
    open_investigation,
    post_certification_oos,
)
from .results import (
    ANALYSTS,
    ENTRY_STATES,
    INVALIDATED_ONLY,
    INVALIDATORS,
    MISSING,
    OOS,
    PASS,
    POST_CERTIFICATION,
    REVIEWERS,
    STATES,
    UNREVIEWED,
    TestStatus,
    core_content,
    current_of,
    current_results,
    describe,
    effective_state,
    is_donor_stage,
    needs_lot_result,
    problem,
    release_test,
    release_test_problems,
    result_of_lot,
    results_of,
    signatures_of,
    spec_of,
    test_status,
)
from .review import (
    AWAITING_ORDER,
    AWAITING_RESULTS,
    awaiting_results_query,
    invalidate_result,
    lock_result,
    lots_awaiting_results,
    mark_reviewed,
    missing_of,
    results_awaiting_review,
    review_refusal,
    review_result,
)
from .sets import SET_ENTITY, ResultSetInvalid, Row, donor_stage_refusal, enter_results, review_results, set_members
