"""The executed batch record of a lot, gathered once as plain data that the page and the PDF render.

The batch record printout is what QA reviews before certification and what an inspector reads, so it
shows everything the lot's record holds (Annex 11 §8.2: "indicating whether any data changed since
original entry"): every value with its unit, limit and verdict, every corrected original beside its
correction with who, when and why, every signature with printed name, time and meaning (invalidated
ones struck through, with their reason), materials, equipment, deviations and vials.

The shapes live here; `record_read` gathers them from the database, with one query per table whatever
the number of steps and entries, into plain rows with their display text worked out once; the page and
the PDF render that and touch the database no more.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import steps
from ..display import times_in
from ..models import Meaning
from ..specifications import Parameter, Specification, Step
from .vial_table import VialLine, vial_counts

Row = Any  # a database row read for display (sqlalchemy Row): attributes named as the table's columns

# --- the gathered record ----------------------------------------------------------------------


@dataclass(slots=True)
class SignatureView:
    """What every rendering of a signature shows (DESIGN invariant 2), in the shape of a Signature."""

    id: int
    signer_name: str
    at: datetime
    meaning: Meaning
    entity_type: str
    entity_id: str
    content_hash: str
    invalidated_at: datetime | None
    invalidated_reason: str | None

    def __post_init__(self) -> None:
        self.meaning = Meaning(self.meaning)


# What each signed decision on a lot is, as every printed record of the lot names it.
DECISION_TITLES = {
    "certify_initial": "QP initial certification",
    "certify_final": "QP final certification",
    "release": "Sponsor release",
    "release_for_shipment": "Sponsor release for shipment under quarantine",
    "certify_final_shipped": "QP final certification (releases the lot shipped under quarantine)",
    "reject": "Rejection",
    "abort": "Abort",
}
REVIEW_TITLES = {"batch_record": "QA review of the batch record by exception",
                 "audit_trail": "QA review of the lot's audit trail"}


@dataclass(slots=True)
class LotSignature:
    """A signature on the lot as a whole (QA's reviews, certifications, releases, other decisions)
    with what it was signed for and the reason given with it."""

    label: str
    signature: SignatureView
    note: str = ""


@dataclass(slots=True)
class ValueRow:
    """One recorded value (a step_value row) with its display text worked out once."""

    id: int
    parameter_code: str
    value: str | None  # as entered or computed; None when not applicable
    unit: str | None
    within_limits: bool | None
    computed: bool
    comment: str | None
    na_reason: str | None
    by: str  # entered by (printed name)
    at: datetime  # entered at
    superseded_by: int | None
    correction_reason: str | None  # set on a value that corrects an earlier one
    shown: str = ""  # value and unit, or "N/A"
    verdict: str = ""  # within | OUT OF LIMITS | N/A | — (no limits)
    remark: str = ""  # the comment, or "N/A: <reason>"
    superseded: bool = False  # a later value replaced it; it stays readable, struck through
    out_of_limits: bool = False  # standing and outside its limits
    note: str = ""  # "original entry, superseded" | "superseded" | "changed after first entry"

    def __post_init__(self) -> None:
        if self.value is None:
            self.shown = self.verdict = "N/A"
        else:
            # A datetime value is stored in UTC; people read it in site time. Only a text with a colon
            # can hold a time, and most values (counts, masses, lot numbers) have none: no search there.
            value = times_in(self.value) if ":" in self.value else self.value
            self.shown = f"{value} {self.unit}" if self.unit else value
            self.verdict = "—" if self.within_limits is None else ("within" if self.within_limits else "OUT OF LIMITS")
        self.remark = self.comment or (f"N/A: {self.na_reason}" if self.na_reason else "")
        self.superseded = self.superseded_by is not None
        self.out_of_limits = self.within_limits is False and not self.superseded


@dataclass(slots=True)
class ValueChange:
    """One change to a parameter after its first entry: what it was, what replaced it, who, when, why."""

    before: ValueRow
    after: ValueRow | None  # None: a computed value whose inputs no longer compute
    by: str
    at: datetime | None
    reason: str

    @property
    def after_shown(self) -> str:
        return self.after.shown if self.after is not None else "(no value)"


@dataclass(slots=True)
class ParameterLine:
    code: str
    label: str
    parameter: Parameter | None  # None only for a value whose parameter the specification does not name
    limits: str
    rows: list[ValueRow]  # every value recorded for it on this entry, the original entry first
    changes: list[ValueChange]

    @property
    def current(self) -> ValueRow | None:
        return next((r for r in self.rows if not r.superseded), None)

    @property
    def changed(self) -> bool:
        """Changed after first entry: the parameter holds more than the value first entered."""
        return len(self.rows) > 1

    @property
    def required(self) -> bool:
        return self.parameter is None or self.parameter.required


@dataclass(slots=True)
class EntryRecord:
    entry: Row  # the step_entry row
    title: str  # "Passage 2" for a repeated step, else ""
    lines: list[ParameterLine]
    materials: Sequence[Row]  # entry_id, name, supplier, supplier_lot, expiry
    equipment: Sequence[Row]  # entry_id, name, asset_id, calibration_due
    signatures: list[SignatureView]  # performed and verified, invalidated ones too, oldest first


@dataclass(slots=True)
class StepRecord:
    position: int
    step: Step
    entries: list[EntryRecord]


@dataclass(slots=True)
class Correction:
    """A change after first entry, located for the summary table."""

    where: str  # "3. Seeding and expansion … / Passage 2 / Cells seeded"
    change: ValueChange


@dataclass(slots=True)
class DeviationRecord:
    deviation: Row  # the deviation row
    raised_by: str | None
    closure: SignatureView | None  # QA's closure signature


@dataclass
class BatchRecord:
    lot: Row  # the lot row (record_read.LotRow: named as the lot table's columns)
    spec_row: Row  # its specification version's row (content, status, signature_id...)
    spec: Specification
    spec_signature: SignatureView | None
    donation: Row | None  # its donation's row, for a cell lot
    donor_code: str | None
    donation_signature: SignatureView | None
    started_by: str
    steps: list[StepRecord]
    lot_signatures: list[LotSignature]  # QA's reviews and every decision on the lot itself, oldest first
    deviations: list[DeviationRecord]
    vials: list[VialLine]  # every vial once, with its one fate
    corrections: list[Correction] = field(default_factory=list)

    @property
    def out_of_limits(self) -> list[ValueRow]:
        return [r for s in self.steps for e in s.entries for line in e.lines for r in line.rows if r.out_of_limits]

    @property
    def invalidated_signatures(self) -> int:
        return sum(1 for s in self.steps for e in s.entries for sig in e.signatures if sig.invalidated_at)

    @property
    def complete(self) -> bool:
        """Every step of the master batch record done (performed, verified where needed, or N/A)."""
        waiting = sum(1 for v in self.vials if not v.has_fate)
        return all(steps.step_complete(s.step, [e.entry for e in s.entries], waiting) for s in self.steps)

    @property
    def vial_counts(self) -> dict[str, int]:
        return vial_counts(self.vials)

    @property
    def completed_at(self) -> datetime | None:
        """When the last step was signed, for a record that is complete."""
        if not self.complete:
            return None
        times = [sig.at for s in self.steps for e in s.entries for sig in e.signatures if not sig.invalidated_at]
        return max(times, default=None)


def limits_text(parameter: Parameter | None) -> str:
    if parameter is None:
        return ""
    unit = f" {parameter.unit}" if parameter.unit else ""
    if parameter.expected is not None:
        return f"expected {'yes' if parameter.expected else 'no'}"
    if parameter.min is not None and parameter.max is not None:
        return f"{parameter.min:g}–{parameter.max:g}{unit}"
    if parameter.min is not None:
        return f"≥ {parameter.min:g}{unit}"
    if parameter.max is not None:
        return f"≤ {parameter.max:g}{unit}"
    return ""
