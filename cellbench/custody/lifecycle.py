"""The shipment state machine: packing -> in_transit -> received | quarantined (-> received |
rejected), or in_transit -> lost. `MACHINE` is its one table; every use case asks it before it
changes a shipment, and pages and the API list `allowed_actions` from it.

A shipment's state is stored as text; these constants are the words the rest of the product
compares it with, and `ShipmentState` names the same states for the table.
"""
from __future__ import annotations

import enum
from typing import cast

from sqlalchemy import CursorResult, update
from sqlmodel import Session, col

from ..audit import Actor
from ..errors import Conflict, Forbidden, InvalidInput
from ..models import Meaning, Role, Shipment
from ..statemachine import Machine, Transition

SHIPPERS = frozenset({Role.supply_manager})
RECEIVERS = frozenset({Role.pharmacist})
ASSESSORS = frozenset({Role.qa})
READERS = frozenset({Role.supply_manager, Role.qa, Role.pharmacist, Role.monitor})
DAMAGE_REPORTERS = frozenset({Role.pharmacist, Role.supply_manager})
KEEPERS = frozenset({Role.supply_manager, Role.pharmacist})  # storage locations


class ShipmentState(str, enum.Enum):
    packing = "packing"
    in_transit = "in_transit"
    received = "received"
    quarantined = "quarantined"
    rejected = "rejected"
    lost = "lost"


PACKING, IN_TRANSIT, RECEIVED, QUARANTINED, REJECTED, LOST = (state.value for state in ShipmentState)
STATE_LABELS = {
    PACKING: "Being packed",
    IN_TRANSIT: "In transit",
    RECEIVED: "Received",
    QUARANTINED: "Quarantined on receipt, awaiting QA",
    REJECTED: "Rejected by QA",
    LOST: "Lost in transit",
}
OPEN = frozenset({PACKING, IN_TRANSIT})

_S = ShipmentState
_T = Transition[ShipmentState]
# What may happen in which state, and who may do it. Completing a receipt ends in `received`, or
# in `quarantined` when a receipt check fails (complete_receipt's checks decide, not the person).
MOVES: dict[str, _T] = {
    "pack": _T(frozenset({_S.packing}), _S.packing, SHIPPERS),
    "unpack": _T(frozenset({_S.packing}), _S.packing, SHIPPERS),
    "dispatch": _T(frozenset({_S.packing}), _S.in_transit, SHIPPERS),
    "report_lost": _T(frozenset({_S.in_transit}), _S.lost, SHIPPERS, needs_reason=True),
    "scan_receipt": _T(frozenset({_S.in_transit}), _S.in_transit, RECEIVERS),
    "complete_receipt": _T(frozenset({_S.in_transit}), _S.received, RECEIVERS),
    "accept": _T(frozenset({_S.quarantined}), _S.received, ASSESSORS, signature=Meaning.released,
                 needs_reason=True),
    "reject": _T(frozenset({_S.quarantined}), _S.rejected, ASSESSORS, signature=Meaning.rejected,
                 needs_reason=True),
}
# How a refusal names each action to the person.
ACTION_LABELS = {
    "pack": "pack kits into a shipment",
    "unpack": "take kits out of a shipment",
    "dispatch": "dispatch a shipment",
    "report_lost": "report a shipment lost",
    "scan_receipt": "scan kits into a receipt",
    "complete_receipt": "complete a receipt",
    "accept": "accept a held shipment",
    "reject": "reject a held shipment",
}


def _state_of(subject: Shipment | str) -> ShipmentState:
    """A shipment, or the state the receipt scan's one row read for it."""
    return ShipmentState(subject.state if isinstance(subject, Shipment) else str(subject))


MACHINE: Machine[Shipment | str, ShipmentState] = Machine("shipment", _state_of, MOVES)


def state_label(state: str) -> str:
    return STATE_LABELS.get(state, state)


def allowed_actions(shipment: Shipment, actor: Actor) -> list[str]:
    """The actions the table allows this actor on this shipment now: what pages and the API offer."""
    return MACHINE.allowed(shipment, actor.roles)


def check(actor: Actor, shipment: Shipment | str, action: str, number: str | None = None) -> _T:
    """The move, if this actor may make it on this shipment (or a shipment in this state) now;
    else the refusal, in the words of the action."""
    move = MACHINE.transition(action)
    if MACHINE.role_refusal(action, actor.roles):
        who = " or ".join(sorted(r.value.replace("_", " ") for r in move.roles))
        raise Forbidden(f"Only the {who} may {ACTION_LABELS[action]}.")
    if MACHINE.state_refusal(shipment, action):
        state = _state_of(shipment).value
        name = number if isinstance(shipment, str) else shipment.number
        raise InvalidInput(f"Shipment {name} is {state_label(state).lower()}: you cannot {ACTION_LABELS[action]} now.",
                           field="shipment")
    return move


def version(value: int | str | None, field: str) -> int | None:
    """The row version a form or client sent back, if any."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidInput("This form is damaged; reload the page.", field=field) from None


def claim(session: Session, shipment: Shipment, seen_version: int | None = None) -> None:
    """Take the shipment for this transaction (optimistic: row_version), then re-read it."""
    expected = shipment.row_version if seen_version is None else seen_version
    changed = cast(CursorResult, session.execute(  # an UPDATE's result counts its rows
        update(Shipment).where(col(Shipment.id) == shipment.id, col(Shipment.row_version) == expected)
        .values(row_version=Shipment.row_version + 1)))
    if changed.rowcount != 1:
        raise Conflict(f"Shipment {shipment.number} was changed by someone else a moment ago. Reload it and check.",
                       field="shipment_version")
    session.refresh(shipment)
