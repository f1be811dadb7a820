"""Kits as everyone sees them: one state machine for both arms, blinded views, label scans.

This module never imports `sealed` and reads no sealed table: whatever it returns is the same
for an active kit and a placebo kit in the same situation. Arm-aware work (packaging, the
blind-preserving quarantine, the unblinded kit view) lives in packaging.py and quarantine.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select, update
from sqlmodel import Session

from . import audit, qrpayload, users
from .audit import Actor
from .db import utcnow
from .errors import Conflict, Forbidden, InvalidInput, NotFound
from .identifiers import parse_kit_number
from .models import BlindedLot, Kit, KitState, Role, Study

# Who may look at kits at all (blinded views): supply and QA at the bench, the site roles.
READERS = frozenset({Role.supply_manager, Role.qa, Role.qp, Role.pharmacist, Role.preparer, Role.investigator,
                     Role.monitor})

# What a blinded person reads for each state. Quarantine shows one generic wording whatever its
# cause, for both arms.
STATE_LABELS = {
    KitState.planned: "Kit number issued",
    KitState.packaged: "Packaged, awaiting release",
    KitState.released: "Released",
    KitState.quarantined: "Temporarily unavailable",
    KitState.withdrawn: "Withdrawn from use",
    KitState.in_transit: "In transit",
    KitState.at_site: "Available at site",
    KitState.allocated: "Assigned to a visit",
    KitState.dispensed: "Dispensed",
    KitState.in_preparation: "In preparation",
    KitState.administered: "Administered",
    KitState.not_administered: "Not administered",
    KitState.returned: "Returned",
    KitState.damaged: "Damaged",
    KitState.missing: "Missing",
    KitState.destroyed: "Destroyed",
}
GENERIC_QUARANTINE_REASON = "Temporarily unavailable pending a quality review."


@dataclass(frozen=True)
class Move:
    sources: frozenset[KitState]
    target: KitState | None  # None: back to the state before the quarantine
    roles: frozenset[Role]


_SUPPLY = frozenset({Role.supply_manager})
_SUPPLY_QA = frozenset({Role.supply_manager, Role.qa})
_PHARMACY = frozenset({Role.pharmacist})
_HELD = frozenset({KitState.released, KitState.in_transit, KitState.at_site, KitState.allocated})

# The kit state machine (reference "Workflow" B), identical for both arms.
MOVES: dict[str, Move] = {
    "package": Move(frozenset({KitState.planned}), KitState.packaged, _SUPPLY),
    "release": Move(frozenset({KitState.packaged}), KitState.released, _SUPPLY),
    # QC analysts too: their out-of-specification result after release quarantines kits at once
    "quarantine": Move(frozenset({KitState.packaged}) | _HELD, KitState.quarantined,
                       _SUPPLY_QA | {Role.qc_analyst}),
    "lift_quarantine": Move(frozenset({KitState.quarantined}), None, _SUPPLY_QA),
    "withdraw": Move(frozenset({KitState.quarantined}), KitState.withdrawn, _SUPPLY_QA),
    # custody (custody.py): dispatched in a shipment, received at the site pharmacy
    "ship": Move(frozenset({KitState.released}), KitState.in_transit, _SUPPLY),
    "receive": Move(frozenset({KitState.in_transit}), KitState.at_site, _PHARMACY),
    # a failed receipt check holds the kit at the site as received, until QA assesses the shipment
    "receive_into_quarantine": Move(frozenset({KitState.in_transit}), KitState.quarantined, _PHARMACY),
    # the pharmacy (pharmacy.py): one path for both arms
    "allocate": Move(frozenset({KitState.at_site}), KitState.allocated, _PHARMACY),
    "unallocate": Move(frozenset({KitState.allocated}), KitState.at_site, _PHARMACY),
    "dispense": Move(frozenset({KitState.allocated}), KitState.dispensed, _PHARMACY),
    "start_preparation": Move(frozenset({KitState.dispensed}), KitState.in_preparation, frozenset({Role.preparer})),
    "administer": Move(frozenset({KitState.in_preparation}), KitState.administered, frozenset({Role.investigator})),
    "not_administered": Move(frozenset({KitState.dispensed, KitState.in_preparation}), KitState.not_administered,
                             frozenset({Role.investigator, Role.preparer})),
    "return": Move(frozenset({KitState.at_site, KitState.allocated, KitState.dispensed}), KitState.returned,
                   _PHARMACY),
    "damage": Move(_HELD | {KitState.dispensed}, KitState.damaged, _PHARMACY | _SUPPLY),
    "lose": Move(_HELD | {KitState.dispensed}, KitState.missing, _PHARMACY | _SUPPLY),
    "destroy": Move(frozenset({KitState.withdrawn, KitState.returned, KitState.not_administered, KitState.damaged}),
                    KitState.destroyed, _PHARMACY | _SUPPLY),
}


def state_label(state: str | KitState) -> str:
    return STATE_LABELS[KitState(state)]


def move(session: Session, actor: Actor, kit: Kit, name: str, *, reason: str | None = None,
         seen_version: int | None = None, quarantine_id: int | None = None) -> None:
    """Make one move of the table. `reason` is what everyone, blinded people included, may read."""
    rule = MOVES.get(name)
    if rule is None:
        raise NotFound(f"Unknown kit action '{name}'.", field="action")
    if not actor.roles & rule.roles:
        raise Forbidden(f"Only {' or '.join(sorted(r.value for r in rule.roles))} may {name.replace('_', ' ')} a kit.")
    old = KitState(kit.state)
    if old not in rule.sources:
        raise InvalidInput(f"Kit {kit.number} is {state_label(old).lower()}; it cannot be "
                           f"moved by '{name.replace('_', ' ')}' now.", field="action")
    expected = kit.row_version if seen_version is None else seen_version
    changed = session.execute(update(Kit).where(Kit.id == kit.id, Kit.row_version == expected)
                              .values(row_version=Kit.row_version + 1))
    if changed.rowcount != 1:
        raise Conflict(f"Someone else acted on kit {kit.number} at the same moment. Reload and check it.",
                       field="kit_version")
    session.refresh(kit)
    if rule.target is KitState.quarantined:
        new = KitState.quarantined
        # a kit held on receipt returns to the site's stock, not to "in transit", when released
        before = KitState.at_site if name == "receive_into_quarantine" else old
        kit.state_before_quarantine, kit.quarantine_id = before.value, quarantine_id
    elif rule.target is None:
        new = KitState(kit.state_before_quarantine)
        kit.state_before_quarantine, kit.quarantine_id = None, None
    else:
        new = rule.target
    kit.state = new
    if new is KitState.packaged:
        kit.packaged_at = utcnow()
    session.flush()
    audit.record(session, actor, f"kit {name.replace('_', ' ')}", "kit", kit.number, field="state",
                 old=state_label(old), new=state_label(new), reason=reason)


# --- reading kits -----------------------------------------------------------------------------


def by_number(session: Session, text: str | None, *, field: str = "kit_number") -> Kit:
    try:
        number = parse_kit_number(text or "")
    except ValueError as error:
        raise InvalidInput(f"Kit number {(text or '').strip()!r}: {error}.", field=field) from None
    kit = session.scalars(select(Kit).where(Kit.number == number)).first()
    if kit is None:
        raise NotFound(f"No kit {number} in cellbench.", field=field)
    return kit


def scan(session: Session, code: str | None, secret_key: str) -> Kit:
    """A scanned label code, or a kit number typed by hand: the kit, or a refusal that says why."""
    text = (code or "").strip()
    if not text:
        raise InvalidInput("Scan the kit's label, or type its kit number.", field="code")
    if text.upper().startswith("CB"):
        try:
            number = qrpayload.verify_payload(text, secret_key)
        except qrpayload.PayloadRejected as rejected:
            raise InvalidInput(f"Label refused: {rejected}.", field="code") from None
        return by_number(session, number, field="code")
    return by_number(session, text, field="code")


def blinded_lot_of(session: Session, kit: Kit) -> BlindedLot | None:
    return session.get(BlindedLot, kit.blinded_lot_id) if kit.blinded_lot_id else None


@dataclass(frozen=True)
class KitView:
    """Everything a blinded role may know about a kit; the same shape for both arms."""

    number: str
    study: str
    blinded_lot: str | None
    expiry: date | None
    state: str
    state_label: str
    location: str
    row_version: int

    def as_json(self) -> dict:
        return {"kit_number": self.number, "study": self.study, "blinded_lot": self.blinded_lot,
                "expiry": self.expiry.isoformat() if self.expiry else None, "state": self.state,
                "state_label": self.state_label, "location": self.location, "kit_version": self.row_version}


def view(session: Session, kit: Kit) -> KitView:
    study = session.get(Study, kit.study_id)
    blinded = blinded_lot_of(session, kit)
    return KitView(kit.number, study.code, blinded.code if blinded else None, blinded.expiry if blinded else None,
                   KitState(kit.state).value, state_label(kit.state), kit.location, kit.row_version)


def history(session: Session, actor: Actor, kit: Kit) -> list:
    """The kit's own audit events this viewer may see (blinded viewers: never an unblinded one)."""
    return audit.history(session, actor, "kit", kit.number)


def kits(session: Session, *, study: Study | None = None, state: str | None = None,
         blinded_lot: BlindedLot | None = None, offset: int = 0, limit: int = 100) -> tuple[list[Kit], int]:
    """A page of kits in kit-number order (random, so it says nothing) and the total count."""
    query = select(Kit)
    if study is not None:
        query = query.where(Kit.study_id == study.id)
    if state:
        if state not in {s.value for s in KitState}:
            raise InvalidInput(f"Unknown kit state '{state}'.", field="state")
        query = query.where(Kit.state == state)
    if blinded_lot is not None:
        query = query.where(Kit.blinded_lot_id == blinded_lot.id)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    return list(session.scalars(query.order_by(Kit.number).offset(offset).limit(limit))), total


def counts_by_state(session: Session, *, study: Study | None = None, blinded_lot: BlindedLot | None = None) -> dict[str, int]:
    query = select(Kit.state, func.count()).group_by(Kit.state)
    if study is not None:
        query = query.where(Kit.study_id == study.id)
    if blinded_lot is not None:
        query = query.where(Kit.blinded_lot_id == blinded_lot.id)
    return {KitState(state).value: count for state, count in session.execute(query)}


def blinded_lot_by_code(session: Session, code: str | None, *, field: str = "blinded_lot") -> BlindedLot:
    row = session.scalars(select(BlindedLot).where(BlindedLot.code == (code or "").strip().upper())).first()
    if row is None:
        raise NotFound(f"No blinded lot '{(code or '').strip()}'.", field=field)
    return row


def blinded_lots(session: Session, study: Study | None = None) -> list[BlindedLot]:
    query = select(BlindedLot).order_by(BlindedLot.code)
    if study is not None:
        query = query.where(BlindedLot.study_id == study.id)
    return list(session.scalars(query))


def require_reader(actor: Actor) -> None:
    users.require_role(actor, *READERS)
