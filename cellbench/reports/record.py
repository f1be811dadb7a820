"""The executed batch record of a lot, gathered once as plain data that the page and the PDF render.

The batch record printout is what QA reviews before certification and what an inspector reads, so it
shows everything the lot's record holds (Annex 11 §8.2: "indicating whether any data changed since
original entry"): every value with its unit, limit and verdict, every corrected original beside its
correction with who, when and why, every signature with printed name, time and meaning (invalidated
ones struck through, with their reason), materials, equipment, deviations and vials.

Gathering reads the whole lot with one query per table, whatever the number of steps and entries,
into plain rows with their display text worked out once; the page and the PDF render that and touch
the database no more.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import CompoundSelect, Integer, String, and_, bindparam, cast, inspect, literal, or_, select, union_all
from sqlmodel import Session, col

from .. import steps
from ..display import times_in
from ..errors import NotFound
from ..models import (
    Deviation,
    Donation,
    Donor,
    Equipment,
    EquipmentUse,
    Lot,
    LotDecision,
    LotReview,
    MaterialLot,
    MaterialUse,
    Meaning,
    Signature,
    SpecVersion,
    StepEntry,
    StepValue,
    User,
    Vial,
)
from ..specifications import Parameter, Specification, Step
from ..specifications import versions as spec_versions
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
            value = times_in(self.value)  # a datetime value is stored in UTC; people read it in site time
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
    deviation: Deviation
    raised_by: str | None
    closure: SignatureView | None  # QA's closure signature


@dataclass
class BatchRecord:
    lot: Lot
    spec_row: SpecVersion
    spec: Specification
    spec_signature: SignatureView | None
    donation: Donation | None
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


# --- gathering ----------------------------------------------------------------------------------

# Built once: a request then only binds the lot and runs them.
_LOT = (select(Lot, SpecVersion, Donation, col(Donor.code), col(User.full_name))
        .join(SpecVersion, col(SpecVersion.id) == Lot.spec_version_id)
        .outerjoin(Donation, col(Donation.id) == Lot.donation_id)
        .outerjoin(Donor, col(Donor.id) == Donation.donor_id)
        .outerjoin(User, col(User.id) == Lot.created_by)
        .where(col(Lot.number) == bindparam("number")))
# The rest are plain Core over the tables: rows, not ORM objects. A record is read whole and only
# for display; a few hundred tracked instances would cost more than everything else on the page.
_entry, _value, _sig, _vial = (inspect(StepEntry).local_table, inspect(StepValue).local_table,
                               inspect(Signature).local_table, inspect(Vial).local_table)
_material, _material_use = inspect(MaterialLot).local_table, inspect(MaterialUse).local_table
_equipment, _equipment_use = inspect(Equipment).local_table, inspect(EquipmentUse).local_table
_OF_LOT = _entry.c.lot_id == bindparam("lot")
_ENTRIES = select(_entry).where(_OF_LOT).order_by(_entry.c.position, _entry.c.repeat_index, _entry.c.id)
_VALUES = (select(_value.c.entry_id, _value.c.id, _value.c.parameter_code, _value.c.value, _value.c.unit,
                  _value.c.within_limits, _value.c.computed, _value.c.comment, _value.c.na_reason,
                  _value.c.entered_by_name, _value.c.entered_at, _value.c.superseded_by, _value.c.correction_reason)
           .select_from(_value.join(_entry, _entry.c.id == _value.c.entry_id)).where(_OF_LOT).order_by(_value.c.id))
_MATERIALS = (select(_material_use.c.entry_id, _material.c.name, _material.c.supplier, _material.c.supplier_lot,
                     _material.c.expiry)
              .select_from(_material_use.join(_material, _material.c.id == _material_use.c.material_lot_id)
                           .join(_entry, _entry.c.id == _material_use.c.entry_id))
              .where(_OF_LOT).order_by(_material_use.c.id))
_EQUIPMENT = (select(_equipment_use.c.entry_id, _equipment.c.name, _equipment.c.asset_id, _equipment.c.calibration_due)
              .select_from(_equipment_use.join(_equipment, _equipment.c.id == _equipment_use.c.equipment_id)
                           .join(_entry, _entry.c.id == _equipment_use.c.entry_id))
              .where(_OF_LOT).order_by(_equipment_use.c.id))
# Everything a rendering shows of a signature, not the signed content itself: the lot's step
# entries', the lot's own, its deviations' closures, its specification's and donation's approvals.
_SIGNATURES = (select(_sig.c.id, _sig.c.signer_name, _sig.c.at, _sig.c.meaning, _sig.c.entity_type,
                      _sig.c.entity_id, _sig.c.content_hash, _sig.c.invalidated_at, _sig.c.invalidated_reason)
               .where(or_(and_(_sig.c.entity_type == "step_entry",
                               _sig.c.entity_id.in_(bindparam("entries", expanding=True))),
                          and_(_sig.c.entity_type == "lot_decision",
                               _sig.c.entity_id.in_(select(cast(col(LotDecision.id), String))
                                                    .where(col(LotDecision.lot_id) == bindparam("lot")))),
                          and_(_sig.c.entity_type == "deviation",
                               _sig.c.entity_id.in_(bindparam("deviations", expanding=True))),
                          _sig.c.id.in_(bindparam("ids", expanding=True))))
               .order_by(_sig.c.id))
_VIALS = (select(_vial.c.code, _vial.c.seq, _vial.c.storage_position, _vial.c.state, _vial.c.fate_note,
                 _vial.c.fate_at)
          .where(_vial.c.lot_id == bindparam("lot")).order_by(_vial.c.seq))
# What each signature on the lot as a whole was for: its decisions (move, reason) and QA's reviews
# (kind, the audit event they reach), in one query.
_SIGNED_FOR: CompoundSelect = union_all(
    select(col(LotDecision.signature_id), col(LotDecision.decision), col(LotDecision.reason),
           literal(None, Integer).label("up_to_seq")).where(col(LotDecision.lot_id) == bindparam("lot")),
    select(col(LotReview.signature_id), col(LotReview.kind), literal(None, String).label("reason"),
           col(LotReview.up_to_seq)).where(col(LotReview.lot_id) == bindparam("lot")))
_DEVIATIONS = (select(Deviation, col(User.full_name)).outerjoin(User, col(User.id) == Deviation.raised_by)
               .where(col(Deviation.lot_id) == bindparam("lot"))
               .order_by(col(Deviation.raised_at), col(Deviation.number)))


def batch_record(session: Session, number: str) -> BatchRecord:
    """The whole executed batch record of one lot, read with one query per table."""
    number = (number or "").strip()
    row = session.execute(_LOT, {"number": number}).first()
    if row is None:
        raise NotFound(f"No lot '{number}'.", field="lot")
    lot, spec_row, donation, donor_code, started_by = row
    at_lot, run = {"lot": lot.id}, session.connection().execute
    entries = run(_ENTRIES, at_lot).all()
    values = [(entry_id, ValueRow(*rest)) for entry_id, *rest in run(_VALUES, at_lot)]
    materials = run(_MATERIALS, at_lot).all()
    equipment = run(_EQUIPMENT, at_lot).all()
    deviation_rows = session.execute(_DEVIATIONS, at_lot).all()
    signed_for = {sig_id: (DECISION_TITLES.get(kind, kind.replace("_", " ")), reason or "") if seq is None else
                  (REVIEW_TITLES.get(kind, kind.replace("_", " ")), f"up to the lot's audit event {seq}")
                  for sig_id, kind, reason, seq in run(_SIGNED_FOR, at_lot) if sig_id}
    approvals = [i for i in (spec_row.signature_id, donation.eligibility_signature_id if donation else None) if i]
    approvals += list(signed_for)  # the decisions' are found by their entity too; asking twice is harmless
    sigs = [SignatureView(*s) for s in run(_SIGNATURES, {
        "entries": [str(e.id) for e in entries], "lot": lot.id,
        "deviations": [d.number for d, _ in deviation_rows], "ids": approvals})]
    vials = [VialLine(*v) for v in run(_VIALS, at_lot)]

    by_id = {s.id: s for s in sigs}
    record = BatchRecord(
        lot=lot, spec_row=spec_row, spec=spec_versions.parsed(spec_row),
        spec_signature=by_id.get(spec_row.signature_id) if spec_row.signature_id else None,
        donation=donation, donor_code=donor_code,
        donation_signature=by_id.get(donation.eligibility_signature_id) if donation else None,
        started_by=started_by or "", steps=[],
        lot_signatures=[LotSignature(signed_for[s.id][0], s, signed_for[s.id][1]) for s in sigs if s.id in signed_for],
        deviations=[DeviationRecord(d, name, by_id.get(d.closure_signature_id)) for d, name in deviation_rows],
        vials=vials)
    _assemble(record, entries, values, materials, equipment, [s for s in sigs if s.entity_type == "step_entry"])
    return record


def _grouped(rows, key: str) -> dict:
    out: dict = {}
    for row in rows:
        out.setdefault(getattr(row, key), []).append(row)
    return out


def _assemble(record: BatchRecord, entries: Sequence[Row], values: list[tuple[int, ValueRow]],
              materials: Sequence[Row], equipment: Sequence[Row], sigs: list[SignatureView]) -> None:
    values_of: dict[int, list[ValueRow]] = {}
    for entry_id, value in values:
        values_of.setdefault(entry_id, []).append(value)
    value_by_id = {v.id: v for _, v in values}
    materials_of, equipment_of = _grouped(materials, "entry_id"), _grouped(equipment, "entry_id")
    sigs_of, entries_of = _grouped(sigs, "entity_id"), _grouped(entries, "step_code")
    for position, step in enumerate(record.spec.steps, start=1):
        step_record = StepRecord(position, step, [])
        parameters = {p.code: p for p in step.parameters}
        limits = {p.code: limits_text(p) for p in step.parameters}
        for entry in entries_of.get(step.code, []):
            title = f"{step.repeat.label} {entry.repeat_index}" if step.repeat else ""
            lines = _lines(step, parameters, limits, values_of.get(entry.id, []), value_by_id)
            step_record.entries.append(EntryRecord(entry, title, lines, materials_of.get(entry.id, []),
                                                   equipment_of.get(entry.id, []), sigs_of.get(str(entry.id), [])))
            where = " / ".join(filter(None, (f"{position}. {step.title}", title)))
            record.corrections += [Correction(f"{where} / {line.label}", c) for line in lines for c in line.changes]
        record.steps.append(step_record)


def _lines(step: Step, parameters: dict[str, Parameter], limits: dict[str, str], values: list[ValueRow],
           value_by_id: dict[int, ValueRow]) -> list[ParameterLine]:
    """One line per parameter of the step, in the master batch record's order, with its history."""
    rows_of = _grouped(values, "parameter_code")
    codes = [p.code for p in step.parameters] + [c for c in rows_of if c not in parameters]
    lines = []
    for code in codes:
        parameter = parameters.get(code)
        rows = rows_of.get(code, [])
        changes = []
        if len(rows) > 1:
            rows[0].note = "original entry, superseded"
            for row in rows[1:]:
                row.note = "superseded" if row.superseded else "changed after first entry"
            changes = [_change(before, after, value_by_id, parameters) for before, after in pairwise(rows)]
        if rows and rows[-1].superseded:  # a computed value left without a recomputation
            changes.append(_change(rows[-1], None, value_by_id, parameters))
        lines.append(ParameterLine(code, parameter.label if parameter else code, parameter, limits.get(code, ""),
                                   rows, changes))
    return lines


def _change(before: ValueRow, after: ValueRow | None, value_by_id: dict[int, ValueRow],
            parameters: dict[str, Parameter]) -> ValueChange:
    if after is not None and after.correction_reason:
        return ValueChange(before, after, after.by, after.at, after.correction_reason)
    # A computed value is replaced when one of its inputs is corrected: name that correction.
    cause = value_by_id.get(before.superseded_by) if before.superseded_by is not None else None
    if cause is not None and cause.parameter_code != before.parameter_code:
        label = parameters[cause.parameter_code].label if cause.parameter_code in parameters else cause.parameter_code
        reason = f"recomputed by cellbench after '{label}' was corrected: {cause.correction_reason or ''}".rstrip(": ")
        return ValueChange(before, after, cause.by, cause.at, reason)
    return ValueChange(before, after, after.by if after else "", after.at if after else None,
                       "replaced" if after is not None else "superseded")
