"""QA's assessment of a shipment held on receipt: accepted (every kit into the site's stock) or
rejected (every kit withdrawn), with a reason and a password signature."""
from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit, kits, signatures, users
from ..errors import InvalidInput
from ..models import Kit, KitState, Meaning, Shipment, ShipmentKit, User
from .lifecycle import MOVES, QUARANTINED, check, claim, version


def _decision(name: str, word: str, kit_move: str) -> tuple[str, str, str, Meaning]:
    """A decision's word, the state and signature meaning the table gives it, and its kits' move."""
    move = MOVES[name]
    if move.target is None or move.signature is None:
        raise TypeError(f"The shipment table's '{name}' must name its state and its signature.")
    return word, move.target.value, kit_move, move.signature


DECISIONS = {"accept": _decision("accept", "accepted", "lift_quarantine"),
             "reject": _decision("reject", "rejected", "withdraw")}


def assess(session: Session, user: User, shipment: Shipment, decision: str | None, reason: str | None,
           password: str | None, *, seen_version: int | str | None = None) -> None:
    """QA accepts the held shipment (every kit into the site's stock) or rejects it (every kit
    withdrawn), with a reason and a password signature."""
    actor = users.actor(session, user)
    decision = (decision or "").strip().lower()
    if decision not in DECISIONS:
        check(actor, shipment, "accept")
        raise InvalidInput("Choose accept or reject.", field="decision")
    check(actor, shipment, decision)
    reason = audit.require_reason(reason)
    word, new_state, move, meaning = DECISIONS[decision]
    claim(session, shipment, version(seen_version, "shipment_version"))
    check(actor, shipment, decision)
    shipment.qa_decision, shipment.qa_reason = word, reason
    session.flush()
    sig = signatures.sign(session, user, password or "", meaning, "shipment", shipment.number, reason=reason)
    shipment.qa_signature_id, shipment.state = sig.id, new_state
    session.flush()
    audit.record(session, actor, f"shipment {word}", "shipment", shipment.number, field="state", old=QUARANTINED,
                 new=new_state, reason=reason)
    held = select(Kit).join(ShipmentKit, col(ShipmentKit.kit_id) == col(Kit.id)).where(
        col(ShipmentKit.shipment_id) == shipment.id, col(Kit.state) == KitState.quarantined.value)
    if decision == "accept":
        # a kit also held by a kit quarantine (its lot) stays held until that quarantine ends
        held = held.where(col(Kit.quarantine_id).is_(None))
    kit_reason = (f"shipment {shipment.number} accepted by QA: {reason}" if decision == "accept"
                  else f"shipment {shipment.number} rejected by QA: {reason}")
    kits.move_many(session, actor, list(session.scalars(held.order_by(col(Kit.number)))), move, reason=kit_reason)
    session.flush()
