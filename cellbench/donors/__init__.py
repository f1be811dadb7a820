"""Donors and donations: pseudonymised donor, consent, donation identification as received,
eligibility tests (Dir. 2006/17/EC Annex II) and QA's signed eligibility decision.

A donation starts a cell lot only once QA has signed it eligible (`donation_may_start_lot`).
Eligibility is a set of small named rules, each returning why it blocks "eligible"; QA may decide
"ineligible" at any time, with a reason. A decision is final, and it freezes the test results it
was made on: the signature covers them, and `cellbench verify` recomputes that content.

Parts: common (the panel, codes, readers), registry (donors), donations (identifiers), panel (test
results and eligibility rules), decision (QA's signed decision).
"""

from __future__ import annotations

from .common import (
    CODE_MAX,
    DONOR_CODE,
    DONOR_CODE_HINT,
    IDENTIFIER_MAX,
    ISBT128,
    READERS,
    REQUIRED_PANEL,
    RESULTS,
    SAMPLE_WINDOW_DAYS,
    SEC,
    PanelRowError,
    not_future,
)
from .decision import (
    DECISION_MEANING,
    decide_eligibility,
    decision_reason,
    decision_signature,
    donation_may_start_lot,
    pending_counts,
    pending_donations,
)
from .donations import (
    ParsedIdentifier,
    donation_by_identifier,
    donations_of,
    donor_of,
    parse_identifier,
    register_donation,
)
from .panel import (
    ELIGIBILITY_RULES,
    EligibilityRule,
    TestEntry,
    consent_recorded,
    corrections_of,
    eligibility_blockers,
    every_panel_test_present,
    every_result_negative,
    every_sample_in_window,
    record_tests,
    sample_window,
    tests_of,
)
from .registry import DonorRow, donor_by_code, donor_page, next_donor_code, parse_donor_code, register_donor
