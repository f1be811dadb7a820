"""One step, one form: what the operator types and scans on an open step entry is kept as a draft
until they sign, and the signed save writes it all (values, materials, equipment) and signs in one
transaction.

A draft is not GMP data and is not audited: it holds nothing the batch record relies on, nobody
else sees it, and everything in it is checked, written and audited by the ordinary service
functions (record_values, record_material, record_equipment, perform) only when it is signed.
Auditing every keystroke would bury the audit trail in typing that never became a record. The
draft's whole purpose is that a refused save, an idle timeout or a closed tab loses nothing."""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlmodel import Session, col

from .. import clock, lots, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import DomainError, InvalidInput
from ..materials import equipment_by_scan, equipment_refusal, material_by_scan, material_refusal
from ..models import Lot, Role, StepDraft, StepEntry, StepState, User, saved_id
from ..specifications import Step
from ..specifications import versions as spec_versions
from .guided import ValueInput, current_values, entry_of, require_open_lot, step_of
from .signing import perform
from .uses import record_equipment, record_material
from .values import record_values

SCAN_KINDS = ("materials", "equipment")  # the lists of codes a draft holds
_SCAN_FIELD = {"materials": "material_scan", "equipment": "equipment_scan"}
_MAX_TEXT = 2000  # a typed field longer than this is not typing


@dataclass
class Scanned:
    """A code in a draft as the page shows it: what it is, or why it will be refused at signing."""

    code: str
    described: str
    problem: str | None


def draft_fields(step: Step, pairs: Iterable[tuple[str, str]], *, cut: bool = True) -> dict[str, object]:
    """The draft of a posted step form: the step's typed fields, the scanned codes (the new scan
    appended), less any the operator removed. Fields of other steps and anything else are dropped.
    A draft cuts overlong typing; the signed save does not (`cut=False`), so that its value checks
    refuse an oversize comment (cellbench.limits) instead of recording it shortened."""
    typed_codes = {p.code for p in step.parameters if not p.computed}
    fields: dict[str, object] = {kind: [] for kind in SCAN_KINDS}
    removed: set[str] = set()
    for name, value in pairs:
        if not isinstance(value, str):
            continue
        prefix, _, code = name.partition(":")
        if prefix in ("v", "c", "na") and code in typed_codes and value.strip():
            fields[name] = value[:_MAX_TEXT] if cut else value
        elif name in SCAN_KINDS or name in _SCAN_FIELD.values():
            kind = name if name in SCAN_KINDS else next(k for k, f in _SCAN_FIELD.items() if f == name)
            codes = fields[kind]
            assert isinstance(codes, list)
            if value.strip() and value.strip() not in codes:
                codes.append(value.strip()[:200])
        elif name == "remove":
            removed.add(value)
    for kind in SCAN_KINDS:
        codes = fields[kind]
        assert isinstance(codes, list)
        fields[kind] = [c for c in codes if f"{kind}:{c}" not in removed]
    return fields


def _open_entry(session: Session, actor: Actor, lot: Lot, step_code: str, repeat_index: int) -> tuple[Step, StepEntry]:
    users.require_role(actor, Role.operator)
    require_open_lot(lot)
    step = step_of(spec_versions.parsed(lots.spec_of(session, lot)), step_code)
    entry = entry_of(session, lot, step_code, repeat_index)
    if StepState(entry.state) != StepState.open:
        raise InvalidInput("This step is signed: change a value with a correction, giving a reason.", field="step")
    return step, entry


def _row(session: Session, entry: StepEntry, user_id: int) -> StepDraft | None:
    return session.scalars(select(StepDraft).where(col(StepDraft.entry_id) == entry.id,
                                                   col(StepDraft.user_id) == user_id)).first()


def save_draft(session: Session, actor: Actor, lot: Lot, step_code: str, repeat_index: int,
               pairs: Iterable[tuple[str, str]]) -> dict[str, object]:
    """Keep what is typed on an open entry (no audit event: see the module's docstring)."""
    step, entry = _open_entry(session, actor, lot, step_code, repeat_index)
    fields = draft_fields(step, pairs)
    row = _row(session, entry, actor.user_id or 0)
    if row is None:
        row = StepDraft(entry_id=saved_id(entry), user_id=actor.user_id or 0, fields="{}", saved_at=utcnow())
        session.add(row)
    row.fields, row.saved_at = json.dumps(fields, ensure_ascii=False), utcnow()
    session.flush()
    return fields


def keep_typing(session: Session, actor: Actor, lot: Lot, step_code: str, repeat_index: int,
                pairs: Iterable[tuple[str, str]]) -> dict[str, list[Scanned]]:
    """The page's script saving the form as it is typed or scanned: the draft kept, and its scans
    as the page lists them."""
    fields = save_draft(session, actor, lot, step_code, repeat_index, pairs)
    return scanned(session, step_of(spec_versions.parsed(lots.spec_of(session, lot)), step_code), fields)


def draft_of(session: Session, entry: StepEntry, user_id: int) -> StepDraft | None:
    return _row(session, entry, user_id)


def fields_of(draft: StepDraft | None) -> dict[str, object]:
    return json.loads(draft.fields) if draft is not None else {}


def scanned(session: Session, step: Step, fields: dict[str, object]) -> dict[str, list[Scanned]]:
    """The draft's scanned codes, each looked up and checked now, so the operator learns at the
    scan, not at signing, that a material is expired or a balance overdue. Nothing is recorded."""
    today = clock.today()
    found: dict[str, list[Scanned]] = {kind: [] for kind in SCAN_KINDS}
    for code in _codes(fields, "materials"):
        try:
            item = material_by_scan(session, code)
            found["materials"].append(Scanned(code, f"{item.name} · lot {item.supplier_lot} · exp. {item.expiry}",
                                              material_refusal(item, today, {m.code for m in step.materials})))
        except DomainError as error:
            found["materials"].append(Scanned(code, code, error.message))
    for code in _codes(fields, "equipment"):
        try:
            asset = equipment_by_scan(session, code)
            found["equipment"].append(Scanned(code, f"{asset.name} {asset.asset_id} · cal. {asset.calibration_due}",
                                              equipment_refusal(asset, today, {e.code for e in step.equipment})))
        except DomainError as error:
            found["equipment"].append(Scanned(code, code, error.message))
    return found


def _codes(fields: dict[str, object], kind: str) -> list[str]:
    codes = fields.get(kind)
    return [c for c in codes if isinstance(c, str)] if isinstance(codes, list) else []


def save_and_sign(session: Session, operator: User, password: str, lot: Lot, step_code: str, repeat_index: int,
                  pairs: Iterable[tuple[str, str]], seen_version: int | None) -> StepEntry:
    """The signed save of the one step form: every typed value, scanned material and instrument
    written through its own checked, audited service function, then the performed signature over
    all of it, and the draft gone, in one transaction. Any refusal rolls all of it back."""
    actor = users.actor(session, operator)
    step, entry = _open_entry(session, actor, lot, step_code, repeat_index)
    fields = draft_fields(step, pairs, cut=False)
    lots.claim(session, lot, seen_version)  # once, for the whole save: the calls below see this version
    recorded = current_values(session, entry)
    inputs = {p.code: ValueInput(str(fields.get(f"v:{p.code}", "")), str(fields.get(f"c:{p.code}", "")),
                                 str(fields.get(f"na:{p.code}", "")))
              for p in step.parameters if not p.computed and p.code not in recorded}
    record_values(session, actor, lot, step_code, repeat_index, inputs, None)
    for code in _codes(fields, "materials"):
        record_material(session, actor, lot, step_code, repeat_index, code, None)
    for code in _codes(fields, "equipment"):
        record_equipment(session, actor, lot, step_code, repeat_index, code, None)
    signed = perform(session, operator, password, lot, step_code, repeat_index, None)
    discard_drafts(session, entry)
    return signed


def discard_drafts(session: Session, entry: StepEntry) -> None:
    """A signed entry needs no drafts: what they held is now the record (or was left out of it)."""
    session.execute(delete(StepDraft).where(col(StepDraft.entry_id) == entry.id))
    session.flush()
