"""Deviations raised, assessed and closed: the state machine (TRANSITIONS, run by MACHINE) and the
use cases. How numbering and blinding work is told in the package's docstring (__init__.py).
"""
from __future__ import annotations

import json
import re

from sqlalchemy import func, select
from sqlmodel import Session, col

from .. import audit, inputs, limits, signatures, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from ..models import (
    AuditHead,
    Deviation,
    DeviationState,
    Kit,
    Lot,
    Meaning,
    Role,
    Shipment,
    Signature,
    SpecVersion,
    User,
    Visibility,
    Visit,
)
from ..statemachine import Guard, Machine, Transition, claim
from .reading import GENERIC_BLINDED_SUMMARY, by_number, links, lot_number_of

SEVERITIES = ("minor", "major", "critical")
ORIGINS = ("out_of_limit", "material_override", "late_entry", "manual", "oos", "late_administration", "shipment")
# Who may raise a deviation by hand and read deviations: the unblinded GMP roles. Automatic
# deviations are raised for whoever did what caused them; their own module authorised that act.
RAISERS = (Role.operator, Role.verifier, Role.qc_analyst, Role.qa, Role.qp)
READERS = RAISERS
_STEP_CODE = re.compile(r"^[a-z][a-z0-9_]*$")


# --- the state machine ------------------------------------------------------------------------


def has_impact_assessment(deviation: Deviation) -> str | None:
    if not (deviation.impact_assessment or "").strip():
        return f"{deviation.number} has no impact assessment: assess its impact before closing it."
    return None


_T = Transition[DeviationState]
TRANSITIONS: dict[str, _T] = {
    # Assessing again while assessed corrects the assessment (with a reason); closed is final.
    "assess": _T(frozenset({DeviationState.open, DeviationState.assessed}), DeviationState.assessed,
                 frozenset({Role.operator, Role.qa})),
    # "approved": QA's closure accepts the impact assessment and the CAPA as sufficient. It is a
    # decision on the deviation, not only a statement that it was read ("reviewed").
    "close": _T(frozenset({DeviationState.assessed}), DeviationState.closed, frozenset({Role.qa}),
                guards=(has_impact_assessment,), signature=Meaning.approved),
}


def _state(deviation: Deviation) -> DeviationState:
    return DeviationState(deviation.state)


MACHINE: Machine[Deviation, DeviationState] = Machine("deviation", _state, TRANSITIONS)

# What has to happen before a move, told when the state does not allow it yet.
_FIRST = {"close": "record its impact assessment first"}
# The field a guard's refusal names, so a form shows it beside the right input.
_GUARD_FIELDS: dict[Guard, str] = {has_impact_assessment: "impact_assessment"}


def refusal(deviation: Deviation, action: str, actor: Actor) -> DomainError | None:
    """Why this person may not make this move on this deviation now, or None. The table says it;
    the order (state, then role, then guards) and the wording are the deviation's own."""
    if action not in TRANSITIONS:
        return InvalidInput(f"Unknown action '{action}' on a deviation.", field="action")
    move = MACHINE.transition(action)
    state = _state(deviation)
    if MACHINE.state_refusal(deviation, action):
        if state is DeviationState.closed:
            return Conflict(f"{deviation.number} is closed: a closed deviation cannot be changed.", field="state")
        first = _FIRST.get(action)
        target = move.target.value if move.target else state.value
        return Conflict(f"{deviation.number} is {state.value}: it cannot be {target} now"
                        + (f"; {first}." if first else "."), field="state")
    if why := MACHINE.role_refusal(action, actor.roles):
        return Forbidden(why)
    for guard in move.guards:
        if why := guard(deviation):
            return InvalidInput(why, field=_GUARD_FIELDS.get(guard, "action"))
    return None


def allowed_actions(deviation: Deviation, actor: Actor) -> list[str]:
    return [action for action in TRANSITIONS if refusal(deviation, action, actor) is None]


def _authorise(deviation: Deviation, action: str, actor: Actor) -> _T:
    if (error := refusal(deviation, action, actor)) is not None:
        raise error
    return MACHINE.transition(action)


# --- content a closure signature covers -------------------------------------------------------


@signatures.content_rule("deviation")
def _content(session: Session, number: str) -> dict:
    deviation = by_number(session, number)
    # the links only when there are any, so a closure signed before they existed still verifies
    return {"number": deviation.number, "lot": lot_number_of(session, deviation), "step_code": deviation.step_code,
            "origin": deviation.origin, "severity": deviation.severity, "description": deviation.description,
            "blinded_summary": deviation.blinded_summary, "impact_assessment": deviation.impact_assessment,
            "capa_reference": deviation.capa_reference, "state": DeviationState(deviation.state).value,
            "raised_by": deviation.raised_by, "raised_at": deviation.raised_at, **links(session, deviation)}


# --- input ------------------------------------------------------------------------------------


def _required(value: str | None, field: str, what: str) -> str:
    return limits.text(value, field, what, "description", required=True) or ""


def _summary(value: str | None) -> str | None:
    return limits.text(value, "blinded_summary", "blinded summary", "summary")


def _severity(value: str | None) -> str:
    value = (value or "").strip().lower()
    if value not in SEVERITIES:
        raise InvalidInput(f"The severity must be one of {', '.join(SEVERITIES)}.", field="severity")
    return value


def _capa(value: str | None) -> str | None:
    return inputs.optional_text(value, "capa_reference", "CAPA reference", 64) or None


def lot_by_number(session: Session, lot_number: str | None, field: str = "lot_number") -> Lot | None:
    """The lot a deviation concerns, by its public number; None when none is given."""
    lot_number = (lot_number or "").strip()
    if not lot_number:
        return None
    lot = session.scalars(select(Lot).where(col(Lot.number) == lot_number)).first()
    if lot is None:
        raise NotFound(f"There is no lot '{lot_number}'.", field=field)
    return lot


def _step_codes(session: Session, lot: Lot) -> set[str]:
    spec = session.get(SpecVersion, lot.spec_version_id)
    return {step["code"] for step in json.loads(spec.content).get("steps", [])} if spec else set()


def _next_number(session: Session, year: int) -> str:
    # The chain head is the one row every audited transaction locks: holding it, nobody else can
    # be between reading the last number and inserting the next one, on any engine or worker.
    session.execute(select(col(AuditHead.id)).where(col(AuditHead.id) == 1).with_for_update())
    prefix = f"DEV-{year}-"
    number = col(Deviation.number)
    last = session.scalars(select(number).where(number.like(f"{prefix}%"))
                           .order_by(func.length(number).desc(), number.desc()).limit(1)).first()
    return f"{prefix}{int(last[len(prefix):]) + 1 if last else 1:04d}"


# --- use cases --------------------------------------------------------------------------------


def raise_deviation(session: Session, actor: Actor, *, lot_id: int | None = None, step_code: str | None = None,
                    origin: str, severity: str = "minor", description: str,
                    blinded_summary: str | None = None, kit_id: int | None = None, visit_id: int | None = None,
                    shipment_id: int | None = None) -> Deviation:
    """Record a deviation (by hand, or for another module: out-of-limit value, late entry, QA
    material override, OOS result, a late administration with its kit and visit, a shipment held
    on receipt). It starts open. A kit's link never says its arm; the summary blinded people read
    is the caller's, the same words for both arms."""
    if origin not in ORIGINS:
        raise InvalidInput(f"Unknown deviation origin '{origin}'.", field="origin")
    if origin == "manual":
        users.require_role(actor, *RAISERS)
    severity = _severity(severity)
    description = _required(description, "description", "description of what happened")
    summary = _summary(blinded_summary) or GENERIC_BLINDED_SUMMARY
    lot = None
    if lot_id is not None:
        lot = session.get(Lot, lot_id)
        if lot is None:
            raise NotFound("There is no such lot.", field="lot_number")
    step_code = (step_code or "").strip() or None
    if step_code is not None:
        if lot is None:
            raise InvalidInput("Name the lot whose step deviated.", field="lot_number")
        if not _STEP_CODE.match(step_code) or ((codes := _step_codes(session, lot)) and step_code not in codes):
            raise InvalidInput(f"Lot {lot.number} has no step '{step_code}'.", field="step_code")
    now = utcnow()
    for column, value, model in (("kit", kit_id, Kit), ("visit", visit_id, Visit), ("shipment", shipment_id, Shipment)):
        if value is not None and session.get(model, value) is None:
            raise NotFound(f"There is no such {column}.", field=column)
    deviation = Deviation(number=_next_number(session, now.year), lot_id=lot_id, step_code=step_code, origin=origin,
                          severity=severity, description=description, blinded_summary=summary,
                          kit_id=kit_id, visit_id=visit_id, shipment_id=shipment_id,
                          state=DeviationState.open, raised_by=actor.user_id, raised_at=now)
    session.add(deviation)
    session.flush()
    audit.record(session, actor, "deviation raised", "deviation", deviation.number, field="blinded_summary",
                 new=summary)
    audit.record(session, actor, "deviation details", "deviation", deviation.number, field="details",
                 new={"lot": lot.number if lot else None, "step_code": step_code, "origin": origin,
                      "severity": severity, "description": description, **links(session, deviation)},
                 visibility=Visibility.unblinded)
    return deviation


def assess_deviation(session: Session, actor: Actor, deviation: Deviation, *, impact_assessment: str | None,
                     severity: str | None = None, capa_reference: str | None = None,
                     blinded_summary: str | None = None, reason: str | None = None) -> None:
    """Record (or correct) the impact assessment; the severity, the CAPA reference and the
    blinded summary may change with it. Changing anything already recorded needs a reason."""
    claim(session, deviation)  # of two people assessing or closing at once, the second reads the first's result
    _authorise(deviation, "assess", actor)
    new = {
        "impact_assessment": _required(impact_assessment, "impact_assessment", "impact assessment"),
        "severity": _severity(severity) if (severity or "").strip() else deviation.severity,
        # None keeps the CAPA reference; an empty text clears it.
        "capa_reference": deviation.capa_reference if capa_reference is None else _capa(capa_reference),
        "blinded_summary": _summary(blinded_summary) or deviation.blinded_summary,
    }
    changed = {f: v for f, v in new.items() if getattr(deviation, f) != v}
    corrected = [f for f in changed if getattr(deviation, f) is not None]
    if corrected:
        reason = audit.require_reason(reason)
    else:
        reason = limits.text(reason, "reason", "reason", "reason")
    for field, value in changed.items():
        old = getattr(deviation, field)
        setattr(deviation, field, value)
        # Unblinded, the summary too: a reason for correcting it may quote what it must not say.
        audit.record(session, actor, "deviation assessed", "deviation", deviation.number, field=field, old=old,
                     new=value, reason=reason if field in corrected else None, visibility=Visibility.unblinded)
    old_state, new_state = DeviationState(deviation.state), MACHINE.target(deviation, "assess")
    if old_state is not new_state:
        deviation.state = new_state
        audit.record(session, actor, "deviation state changed", "deviation", deviation.number, field="state",
                     old=old_state, new=new_state)
    session.flush()


def close_deviation(session: Session, closer: User, password: str, deviation: Deviation) -> Signature:
    """QA closes an assessed deviation, signing (meaning "approved") what it closes."""
    actor = users.actor(session, closer)
    claim(session, deviation)  # two QA closing at once: the second finds it closed (one signature)
    move = _authorise(deviation, "close", actor)
    assert move.signature is not None  # the table signs every closure
    old_state, new_state = DeviationState(deviation.state), MACHINE.target(deviation, "close")
    deviation.state = new_state
    session.flush()  # the signature covers the deviation as closed
    audit.record(session, actor, "deviation state changed", "deviation", deviation.number, field="state",
                 old=old_state, new=new_state)
    sig = signatures.sign(session, closer, password, move.signature, "deviation", deviation.number)
    deviation.closure_signature_id = sig.id
    session.flush()
    return sig
