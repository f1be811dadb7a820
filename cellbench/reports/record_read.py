"""Gathering the executed batch record of a lot (`record`'s shapes) from the database.

A fixed number of queries whatever the lot's size: the lot with its specification, donation and
starter, then one query per table (entries, values, materials, equipment, deviations, what the lot's
own signatures were for, signatures, vials). The record is read whole and only for display, so
all of it is plain Core rows, not tracked ORM instances, and every statement is compiled once (no
list bound per request).
"""
from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    FromClause,
    Integer,
    String,
    and_,
    bindparam,
    cast,
    inspect,
    literal,
    or_,
    select,
    union_all,
)
from sqlmodel import Session, col

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
    Signature,
    SpecVersion,
    StepEntry,
    StepValue,
    User,
    Vial,
)
from ..specifications import Parameter, Step
from ..specifications import versions as spec_versions
from . import record as shapes  # the record's shapes; here they are filled from the database
from .vial_table import VialLine


def _named(name: str, table: FromClause) -> Any:
    """A tuple type named as `table`'s columns (Any: its fields are known only at run time)."""
    return namedtuple(name, table.c.keys())


# Built once: a request then only binds the lot and runs them. All plain Core over the tables: rows,
# not ORM objects. A record is read whole and only for display; tracked instances (an identity map,
# attribute instrumentation) would cost more than everything else on the page.
_lot, _spec, _donation = (inspect(Lot).local_table, inspect(SpecVersion).local_table,
                          inspect(Donation).local_table)
_deviation, _user = inspect(Deviation).local_table, inspect(User).local_table
# The lot, its specification and its donation in one row, cut apart into one tuple each (same names
# as the tables' columns, so the page and the PDF read `lot.number`, `spec_row.version`...).
LotRow, SpecRow, DonationRow = (_named(name, table) for name, table in
                                (("LotRow", _lot), ("SpecRow", _spec), ("DonationRow", _donation)))
_CUTS = (len(_lot.c), len(_lot.c) + len(_spec.c), len(_lot.c) + len(_spec.c) + len(_donation.c))
_LOT = (select(*_lot.c, *_spec.c, *_donation.c, col(Donor.code), _user.c.full_name)
        .select_from(_lot.join(_spec, _spec.c.id == _lot.c.spec_version_id)
                     .outerjoin(_donation, _donation.c.id == _lot.c.donation_id)
                     .outerjoin(inspect(Donor).local_table, col(Donor.id) == _donation.c.donor_id)
                     .outerjoin(_user, _user.c.id == _lot.c.created_by))
        .where(_lot.c.number == bindparam("number")))
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
                               _sig.c.entity_id.in_(select(cast(_entry.c.id, String)).where(_OF_LOT))),
                          and_(_sig.c.entity_type == "lot_decision",
                               _sig.c.entity_id.in_(select(cast(col(LotDecision.id), String))
                                                    .where(col(LotDecision.lot_id) == bindparam("lot")))),
                          and_(_sig.c.entity_type == "deviation",
                               _sig.c.entity_id.in_(select(_deviation.c.number)
                                                    .where(_deviation.c.lot_id == bindparam("lot")))),
                          # the specification's approval, the donation's eligibility, the lot's decisions
                          # and QA's reviews: by the ids their rows hold (subqueries, not lists bound
                          # per request, so the statement is compiled once and cached)
                          _sig.c.id.in_(union_all(
                              select(_spec.c.signature_id).where(_spec.c.id == bindparam("spec")),
                              select(_donation.c.eligibility_signature_id)
                              .where(_donation.c.id == bindparam("donation")),
                              select(col(LotDecision.signature_id)).where(col(LotDecision.lot_id) == bindparam("lot")),
                              select(col(LotReview.signature_id)).where(col(LotReview.lot_id) == bindparam("lot"))))))
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
_DEVIATIONS = (select(*_deviation.c, _user.c.full_name.label("raised_by_name"))
               .select_from(_deviation.outerjoin(_user, _user.c.id == _deviation.c.raised_by))
               .where(_deviation.c.lot_id == bindparam("lot"))
               .order_by(_deviation.c.raised_at, _deviation.c.number))

def batch_record(session: Session, number: str) -> shapes.BatchRecord:
    """The whole executed batch record of one lot, read with one query per table."""
    number = (number or "").strip()
    run = session.connection().execute
    row = run(_LOT, {"number": number}).first()
    if row is None:
        raise NotFound(f"No lot '{number}'.", field="lot")
    lot, spec_row = LotRow._make(row[:_CUTS[0]]), SpecRow._make(row[_CUTS[0]:_CUTS[1]])
    donation = DonationRow._make(row[_CUTS[1]:_CUTS[2]]) if lot.donation_id is not None else None
    donor_code, started_by = row[_CUTS[2]:]
    at_lot = {"lot": lot.id}
    entries = run(_ENTRIES, at_lot).all()
    values = [(entry_id, shapes.ValueRow(*rest)) for entry_id, *rest in run(_VALUES, at_lot)]
    materials = run(_MATERIALS, at_lot).all()
    equipment = run(_EQUIPMENT, at_lot).all()
    deviation_rows = run(_DEVIATIONS, at_lot).all()
    signed_for = {sig_id: (shapes.DECISION_TITLES.get(kind, kind.replace("_", " ")), reason or "") if seq is None else
                  (shapes.REVIEW_TITLES.get(kind, kind.replace("_", " ")), f"up to the lot's audit event {seq}")
                  for sig_id, kind, reason, seq in run(_SIGNED_FOR, at_lot) if sig_id}
    sigs = [shapes.SignatureView(*s) for s in run(_SIGNATURES, {"lot": lot.id, "spec": spec_row.id,
                                                               "donation": lot.donation_id})]
    vials = [VialLine(*v) for v in run(_VIALS, at_lot)]

    by_id = {s.id: s for s in sigs}
    record = shapes.BatchRecord(
        lot=lot, spec_row=spec_row, spec=spec_versions.parsed(spec_row),
        spec_signature=by_id.get(spec_row.signature_id) if spec_row.signature_id else None,
        donation=donation, donor_code=donor_code,
        donation_signature=by_id.get(donation.eligibility_signature_id) if donation else None,
        started_by=started_by or "", steps=[],
        lot_signatures=[shapes.LotSignature(signed_for[s.id][0], s, signed_for[s.id][1])
                        for s in sigs if s.id in signed_for],
        deviations=[shapes.DeviationRecord(d, d.raised_by_name, by_id.get(d.closure_signature_id))
                    for d in deviation_rows],
        vials=vials)
    _assemble(record, entries, values, materials, equipment, [s for s in sigs if s.entity_type == "step_entry"])
    return record


def _grouped(rows, key: str) -> dict:
    out: dict = {}
    for row in rows:
        out.setdefault(getattr(row, key), []).append(row)
    return out


def _assemble(record: shapes.BatchRecord, entries: Sequence[shapes.Row], values: list[tuple[int, shapes.ValueRow]],
              materials: Sequence[shapes.Row], equipment: Sequence[shapes.Row],
              sigs: list[shapes.SignatureView]) -> None:
    rows_of: dict[int, dict[str, list[shapes.ValueRow]]] = {}  # entry -> parameter -> its values, oldest first
    for entry_id, value in values:
        rows_of.setdefault(entry_id, {}).setdefault(value.parameter_code, []).append(value)
    value_by_id = {v.id: v for _, v in values}
    materials_of, equipment_of = _grouped(materials, "entry_id"), _grouped(equipment, "entry_id")
    sigs_of, entries_of = _grouped(sigs, "entity_id"), _grouped(entries, "step_code")
    for position, step in enumerate(record.spec.steps, start=1):
        step_record = shapes.StepRecord(position, step, [])
        parameters = {p.code: p for p in step.parameters}
        limits = {p.code: shapes.limits_text(p) for p in step.parameters}
        for entry in entries_of.get(step.code, []):
            title = f"{step.repeat.label} {entry.repeat_index}" if step.repeat else ""
            lines = _lines(step, parameters, limits, rows_of.get(entry.id, {}), value_by_id)
            step_record.entries.append(shapes.EntryRecord(entry, title, lines, materials_of.get(entry.id, []),
                                                   equipment_of.get(entry.id, []), sigs_of.get(str(entry.id), [])))
            where = " / ".join(filter(None, (f"{position}. {step.title}", title)))
            record.corrections += [shapes.Correction(f"{where} / {line.label}", c)
                                   for line in lines for c in line.changes]
        record.steps.append(step_record)


def _lines(step: Step, parameters: dict[str, Parameter], limits: dict[str, str],
           rows_of: dict[str, list[shapes.ValueRow]],
           value_by_id: dict[int, shapes.ValueRow]) -> list[shapes.ParameterLine]:
    """One line per parameter of the step, in the master batch record's order, with its history."""
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
        lines.append(shapes.ParameterLine(code, parameter.label if parameter else code, parameter, limits.get(code, ""),
                                   rows, changes))
    return lines


def _change(before: shapes.ValueRow, after: shapes.ValueRow | None, value_by_id: dict[int, shapes.ValueRow],
            parameters: dict[str, Parameter]) -> shapes.ValueChange:
    if after is not None and after.correction_reason:
        return shapes.ValueChange(before, after, after.by, after.at, after.correction_reason)
    # A computed value is replaced when one of its inputs is corrected: name that correction.
    cause = value_by_id.get(before.superseded_by) if before.superseded_by is not None else None
    if cause is not None and cause.parameter_code != before.parameter_code:
        label = parameters[cause.parameter_code].label if cause.parameter_code in parameters else cause.parameter_code
        reason = f"recomputed by cellbench after '{label}' was corrected: {cause.correction_reason or ''}".rstrip(": ")
        return shapes.ValueChange(before, after, cause.by, cause.at, reason)
    return shapes.ValueChange(before, after, after.by if after else "", after.at if after else None,
                       "replaced" if after is not None else "superseded")
