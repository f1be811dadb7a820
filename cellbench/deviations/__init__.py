"""Deviations: raised by hand or by other modules, assessed, then closed by QA with a signature.

The state machine is one table, TRANSITIONS, run by MACHINE (the `statemachine` shape): each move,
the states it starts from, who may make it (only QA closes), the guard rules it must pass and the
signature it needs. Pages and the API offer exactly `allowed_actions`.

Numbers are DEV-<year>-<4 digits>, one sequence per UTC year. The next number is read after taking
the audit chain's head lock, which every audited transaction takes anyway: two deviations raised
at the same moment by different workers are numbered one after the other, never alike. The unique
constraint on the number stays as the last line of defence.

Blinding: the description, the assessment and the CAPA reference are written into the audit trail
as unblinded events. Blinded readers of the trail see a deviation's number, its state changes and
its blinded summary only. The summary is written by the person raising the deviation, or is the
generic text; it is never derived from the description.

Parts: records.py (the state machine and the use cases), reading.py (lookups and lists).
"""
from .reading import (
    GENERIC_BLINDED_SUMMARY,
    NOT_CLOSED,
    ORDERS,
    SEVERITY_RANK,
    Around,
    around,
    blinded_view,
    blocking_deviations,
    by_number,
    closure_signature,
    count_by_state,
    deviation_page,
    deviations,
    deviations_block,
    deviations_of,
    links,
    lot_number_of,
    open_deviations,
)
from .records import (
    MACHINE,
    ORIGINS,
    RAISERS,
    READERS,
    SEVERITIES,
    TRANSITIONS,
    allowed_actions,
    assess_deviation,
    close_deviation,
    has_impact_assessment,
    lot_by_number,
    raise_deviation,
    refusal,
)

__all__ = [
    "GENERIC_BLINDED_SUMMARY", "MACHINE", "NOT_CLOSED", "ORDERS", "ORIGINS", "RAISERS", "READERS",
    "SEVERITIES", "SEVERITY_RANK", "TRANSITIONS", "Around", "allowed_actions", "around", "assess_deviation",
    "blinded_view", "blocking_deviations", "by_number", "close_deviation", "closure_signature",
    "count_by_state", "deviation_page", "deviations", "deviations_block", "deviations_of",
    "has_impact_assessment", "links", "lot_by_number", "lot_number_of", "open_deviations",
    "raise_deviation", "refusal",
]
