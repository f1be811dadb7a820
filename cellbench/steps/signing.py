"""Signing a step entry (performed by the operator, verified by a second person) and corrections
that keep the original value and void the signatures on the entry."""
from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit, lots, signatures, users
from ..audit import Actor
from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from ..lots import vials
from ..models import Lot, LotState, Meaning, Role, Signature, StepEntry, StepState, StepValue, User
from ..specifications import Step
from ..specifications import versions as spec_versions
from ..statemachine import Machine, Transition
from .completion import complete_if_done, create_units, unit_step
from .guided import PLACING_STEP, ValueInput, current_values, entry_done, entry_of, require_open_lot, step_of
from .uses import equipment_of, materials_of
from .values import compute, placement, write_value

_T = Transition[StepState]


def own_step(entry: StepEntry, user: User) -> str | None:
    """Nobody verifies their own step (the verify move's guard, and what the verifier's queue leaves out)."""
    return "Nobody verifies their own step: another person must verify it." if entry.performed_by == user.id else None


# A step entry's life in the batch record: the operator signs it performed, a second person signs
# it verified (when the step asks for it), and a correction of any value reopens it, voiding both
# signatures, so the entry is signed again over what it now holds.
ENTRY_MOVES: dict[str, _T] = {
    "perform": _T(frozenset({StepState.open}), StepState.performed, frozenset({Role.operator}),
                  signature=Meaning.performed),
    "verify": _T(frozenset({StepState.performed}), StepState.verified, frozenset({Role.verifier, Role.operator}),
                 guards=(own_step,), signature=Meaning.verified),
    "reopen": _T(frozenset({StepState.performed, StepState.verified}), StepState.open,
                 frozenset({Role.operator, Role.qa}), needs_reason=True),
}
ENTRY_MACHINE: Machine[StepEntry, StepState] = Machine("step entry", lambda entry: StepState(entry.state), ENTRY_MOVES)


def _may(entry: StepEntry, action: str, actor: Actor, wrong_state: str) -> None:
    """The table's word on this move, in the batch record's own sentences."""
    if why := ENTRY_MACHINE.role_refusal(action, actor.roles):
        raise Forbidden(why)
    if ENTRY_MACHINE.state_refusal(entry, action):
        raise InvalidInput(wrong_state, field="step")


@signatures.content_rule("step_entry")
def _entry_content(session: Session, entry_id: str) -> dict[str, object]:
    """What the performed and verified signatures cover: every current value, material and instrument."""
    entry = session.get(StepEntry, int(entry_id))
    lot = session.get(Lot, entry.lot_id) if entry is not None else None
    if entry is None or lot is None:
        raise NotFound("No such step entry.")
    values = sorted(current_values(session, entry).values(), key=lambda v: v.parameter_code)
    return {
        "lot": lot.number, "step": entry.step_code, "entry": entry.repeat_index, "na_reason": entry.na_reason,
        "values": [[v.parameter_code, v.value, v.unit, v.comment, v.na_reason] for v in values],
        "materials": [[m.material_code, m.supplier_lot, m.expiry.isoformat()] for m in materials_of(session, entry)],
        "equipment": [[e.asset_id, e.calibration_due.isoformat()] for e in equipment_of(session, entry)],
    }


def _incomplete(session: Session, step: Step, entry: StepEntry) -> str | None:
    values = current_values(session, entry)
    missing = [p.label for p in step.parameters if p.required and p.code not in values]
    if missing:
        return "Still to record: " + ", ".join(missing) + "."
    # Read only for a step that requires some: most steps require none, and this runs at every signing.
    needed_materials = [m for m in step.materials if m.required]
    needed_equipment = [e for e in step.equipment if e.required]
    have_materials = {m.material_code for m in materials_of(session, entry)} if needed_materials else set()
    have_equipment = {e.equipment_code for e in equipment_of(session, entry)} if needed_equipment else set()
    lacking = [m.name for m in needed_materials if m.code not in have_materials]
    lacking += [e.name for e in needed_equipment if e.code not in have_equipment]
    if lacking:
        return "Record or scan: " + ", ".join(lacking) + "."
    return None


def perform(session: Session, operator: User, password: str, lot: Lot, step_code: str, repeat_index: int,
            seen_version: int | None) -> StepEntry:
    """The operator signs the step as performed (re-entering the password)."""
    actor = users.actor(session, operator)
    if why := ENTRY_MACHINE.role_refusal("perform", actor.roles):
        raise Forbidden(why)
    require_open_lot(lot)
    spec = spec_versions.parsed(lots.spec_of(session, lot))
    step = step_of(spec, step_code)
    entry = entry_of(session, lot, step_code, repeat_index)
    _may(entry, "perform", actor, "This step entry is already signed.")
    if why := _incomplete(session, step, entry):
        raise InvalidInput(why, field="step")
    lots.claim(session, lot, seen_version)
    sig = signatures.sign(session, operator, password, Meaning.performed, "step_entry", str(entry.id))
    entry.state = ENTRY_MACHINE.target(entry, "perform")
    entry.performed_by, entry.performed_signature_id = operator.id, sig.id
    session.flush()
    if step.code == unit_step(spec):
        create_units(session, actor, lot, entry, step.code)
    if entry_done(step, entry):  # else it awaits its verification: the lot cannot be complete yet
        complete_if_done(session, actor, lot, spec)
    return entry


def verify(session: Session, verifier: User, password: str, lot: Lot, step_code: str, repeat_index: int,
           seen_version: int | None, *, on_device_of: str | None = None) -> StepEntry:
    """A second person signs the step as verified: never the one who performed it. `on_device_of`
    names whose signed-in device they signed on, when it was not their own (cosign)."""
    actor = users.actor(session, verifier)
    if why := ENTRY_MACHINE.role_refusal("verify", actor.roles):
        raise Forbidden(why)
    require_open_lot(lot)
    spec = spec_versions.parsed(lots.spec_of(session, lot))
    step = step_of(spec, step_code)
    entry = entry_of(session, lot, step_code, repeat_index)
    if not step.verify:
        raise InvalidInput(f"'{step.title}' needs no second-person verification.", field="step")
    _may(entry, "verify", actor, "Only a performed, not yet verified step can be verified.")
    if why := next(iter(ENTRY_MACHINE.guard_refusals(entry, "verify", verifier)), None):
        raise Forbidden(why, field="step")
    lots.claim(session, lot, seen_version)
    sig = signatures.sign(session, verifier, password, Meaning.verified, "step_entry", str(entry.id),
                          reason=f"signed on the device of {on_device_of}" if on_device_of else None)
    entry.state, entry.verified_signature_id = ENTRY_MACHINE.target(entry, "verify"), sig.id
    session.flush()
    complete_if_done(session, actor, lot, spec)
    return entry


def cosign(session: Session, device: Actor, username: str, password: str, lot: Lot, step_code: str,
           repeat_index: int, seen_version: int | None) -> StepEntry:
    """Verification on someone else's signed-in tablet: the verifier gives both components of their
    signature, username and password (21 CFR 11.200(a)); the signature and its audit event are
    theirs, and the device's session is left as it was. A blank username is the device's own user."""
    if not (username or "").strip():
        if device.user_id is None:
            raise InvalidInput("Give the verifier's username.", field="username")
        return verify(session, users.by_id(session, device.user_id), password, lot, step_code, repeat_index,
                      seen_version)
    verifier = users.cosigner(session, username, password)
    elsewhere = device.name if device.user_id != verifier.id else None
    return verify(session, verifier, password, lot, step_code, repeat_index, seen_version, on_device_of=elsewhere)


def awaiting_verification(session: Session, user: User) -> list[tuple[Lot, StepEntry]]:
    """Performed entries of in-process lots whose step asks for a second person, that this user may
    verify (not their own), in lot and batch-record order: the verifier's queue."""
    query = (select(Lot, StepEntry).join(StepEntry, col(StepEntry.lot_id) == col(Lot.id))
             .where(col(Lot.state) == LotState.in_process.value, col(StepEntry.state) == StepState.performed.value)
             .order_by(col(Lot.number), col(StepEntry.position), col(StepEntry.repeat_index)))
    waiting = []
    for lot, entry in session.execute(query).all():
        step = next((s for s in spec_versions.parsed(lots.spec_of(session, lot)).steps if s.code == entry.step_code),
                    None)
        if step is not None and step.verify and own_step(entry, user) is None:
            waiting.append((lot, entry))
    return waiting


def correct_value(session: Session, actor: Actor, lot: Lot, value_id: int, new_value: str, reason: str | None,
                  comment: str = "", seen_version: int | None = None) -> StepValue:
    """A correction adds a new value and keeps the original visible; signatures on the entry are voided
    and the entry reopens (ENTRY_MOVES["reopen"]: who may correct is who may reopen)."""
    if why := ENTRY_MACHINE.role_refusal("reopen", actor.roles):
        raise Forbidden(why)
    reason = audit.require_reason(reason)
    require_open_lot(lot)
    old = session.get(StepValue, value_id)
    entry = session.get(StepEntry, old.entry_id) if old else None
    if old is None or entry is None or entry.lot_id != lot.id:
        raise NotFound("No such value on this lot.", field="value")
    if old.superseded_by is not None:
        raise Conflict("That value was already corrected. Reload to see the current one.", field="value")
    if old.computed:
        raise InvalidInput("A computed value follows its inputs: correct those instead.", field="value")
    spec = spec_versions.parsed(lots.spec_of(session, lot))
    step = step_of(spec, entry.step_code)
    parameter = next(p for p in step.parameters if p.code == old.parameter_code)
    lots.claim(session, lot, seen_version)
    placed_before = placement(current_values(session, entry)) if step.code == PLACING_STEP else None
    dependents = [v for v in current_values(session, entry).values() if v.computed]
    new = write_value(session, actor, lot, step, entry, parameter, ValueInput(new_value, comment),
                      correction_reason=reason)
    old.superseded_by = new.id
    for dependent in dependents:  # recomputed below from the corrected inputs
        dependent.superseded_by = new.id
    session.flush()
    compute(session, actor, lot, spec, step, entry)
    if placed_before is not None and (placed_now := placement(current_values(session, entry))) != placed_before:
        assert placed_now is not None  # a correction replaces a value, never removes one
        vials.correct_placement(session, actor, lot, placed_before[0], *placed_now, reason=reason)
    for sig_id in (entry.performed_signature_id, entry.verified_signature_id):
        signed = session.get(Signature, sig_id) if sig_id else None
        if signed is not None:
            signatures.invalidate(session, actor, signed, f"value {parameter.code} corrected: {reason}")
    if not ENTRY_MACHINE.state_refusal(entry, "reopen"):
        entry.state = ENTRY_MACHINE.target(entry, "reopen")
        entry.performed_signature_id, entry.verified_signature_id = None, None
    session.flush()
    return new
