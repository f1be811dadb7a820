"""The site pharmacy: participants enrolled and randomised (`participants`), their treatment
visits moved by one transition table (`lifecycle.MACHINE`), kit assignment and dispensing
(`dispensing`), the preparation clock and administration per gland (`administration`), the
preparer's record and syringe labels (`preparation`), the participant's card (`cards`) and the
scans at the bedside that come before a dose (`bedside`), kits
coming back to the pharmacy (`returns`), and what pages read (`reading`, `records`).

Blinding: this package knows no arm. It reaches the sealed compartment through `doors` alone,
its two blind-safe doors (`sealed.randomise`, `sealed.assign_kit`), which return a number or a
kit. Every state, clock, check, message, custody event and audit event is the same for an active
and a placebo participant; the only words that differ between two participants are their numbers.

Concurrency: every use case on a visit locks the visit row (SELECT ... FOR UPDATE; SQLite's
writers are serialised anyway) and re-reads it, so two people acting on one visit at the same
moment are served one after the other and the second gets a Conflict, never a duplicate.
Pages and API clients may send the visit's version they saw: a stale one is a Conflict too.
"""

from __future__ import annotations

from .administration import (
    CLOCK_SKEW,
    LATE_SUMMARY,
    MAX_VOLUME_ML,
    administer,
    parse_gland,
    parse_time,
    parse_volume,
    record_not_administered,
    start_preparation,
)
from .bedside import PASSED as BEDSIDE_PASSED
from .bedside import REFUSED as BEDSIDE_REFUSED
from .bedside import ScanResult, syringe_not_checked
from .bedside import checks as bedside_checks
from .bedside import scan as bedside_scan
from .cards import CARD_PRINTERS, participant_card
from .dispensing import NO_KIT_MESSAGE, REPLACEMENT_MOVES, NoKitAvailable, assign, dispense, replace_kit, unallocate
from .lifecycle import (
    ACTION_LABELS,
    ADMINISTRATORS,
    ENROLLERS,
    FINAL,
    GUARD_FIELDS,
    MACHINE,
    OPEN,
    PHARMACY,
    PREPARERS,
    RANDOMISERS,
    READERS,
    VISIT_LABELS,
    VISIT_MOVES,
    Action,
    VisitState,
    actions,
    guards,
    outside_window,
    previous_not_administered,
    refusal,
    visit_label,
    visit_state,
)
from .participants import enrol, randomise, schedule
from .preparation import (
    PreparationView,
    SyringeView,
    UnitReader,
    choose_masking,
    count_label,
    draw_syringe,
    print_label,
    record_thaw_end,
    record_view,
    scan_unit,
    syringe_label,
)
from .reading import (
    AWAITING_DISPENSING,
    DISPENSED,
    DUE_ORDER,
    DUE_SHOWN,
    RUNNING,
    RUNNING_ORDER,
    SHOWN,
    AdministrationView,
    VisitView,
    awaiting_dispensing,
    due_count,
    due_list,
    due_participants,
    due_query,
    due_today,
    enrolment_sites,
    minutes_left,
    participant_by_ref,
    participant_page,
    participants,
    passing_count,
    passing_query,
    preparations_running,
    to_prepare,
    view,
    views,
    visit_by_ref,
    visits_by_participant,
    visits_of,
)
from .records import (
    VisitContext,
    context,
    gland_names,
    gland_short,
    kit_expired,
    participant_number,
    participant_ref,
    use_window,
    visit_of_kit,
)
from .returns import return_kit
