"""The audit events of the tests' setup shortcuts.

Test worlds make some records directly (a released lot with no batch record, kits put at a site,
a received shipment, an administered visit) rather than through their whole workflow, which is
tested elsewhere. `cellbench verify` replays every lot's, kit's, shipment's and visit's state from
the audit trail, so each shortcut writes, in its own transaction, the events a service would have
written for the state it leaves: the record's creation and its state, in the services' shapes."""
from __future__ import annotations

from typing import Any

from sqlmodel import Session

from cellbench import audit, kits, users
from cellbench.models import KitState
from cellbench.pharmacy.lifecycle import VISIT_LABELS, VisitState

SETUP_REASON = _WHY = "test world setup: made directly, its workflow is tested elsewhere"


def lot_made(session: Session, number: str, state: Any, expiry: Any) -> None:
    by = users.cli_actor()
    audit.record(session, by, "lot started", "lot", number, field="specification", reason=_WHY)
    audit.record(session, by, "lot state set", "lot", number, field="state", old="in_process", new=state, reason=_WHY)
    audit.record(session, by, "expiry set", "lot", number, field="expiry", new=expiry, reason=_WHY)


def kit_moved(session: Session, number: str, old: Any, new: KitState) -> None:
    audit.record(session, users.cli_actor(), "kit state set", "kit", number, field="state",
                 old=kits.state_label(old), new=kits.state_label(new), reason=_WHY)


def shipment_made(session: Session, number: str, state: str) -> None:
    by = users.cli_actor()
    audit.record(session, by, "shipment created", "shipment", number, reason=_WHY)
    audit.record(session, by, "shipment state set", "shipment", number, field="state", old="packing", new=state,
                 reason=_WHY)


def visit_made(session: Session, ref: str, state: VisitState) -> None:
    by = users.cli_actor()
    audit.record(session, by, "visit planned", "visit", ref, field="window", reason=_WHY)
    audit.record(session, by, "visit state changed", "visit", ref, field="state", old=VISIT_LABELS[VisitState.planned],
                 new=VISIT_LABELS[state], reason=_WHY)


def lot_state_set(session: Session, number: str, state: Any) -> None:
    audit.record(session, users.cli_actor(), "lot state set", "lot", number, field="state", new=state, reason=_WHY)
