"""Lots: started from an effective specification (and, for cells, an eligible donation), moved by
one transition table, protected against two people acting on the same lot at once."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from . import audit, signatures, spec_versions, users
from .audit import Actor
from .db import utcnow
from .donors import donation_by_identifier, donation_may_start_lot
from .errors import Conflict, Forbidden, InvalidInput, NotFound
from .models import Lot, LotDecision, LotState, Meaning, QcResult, Role, SpecVersion, User, Visibility

LOT_PREFIX = {"asc": "ASC", "placebo": "PLB"}


@dataclass(frozen=True)
class Move:
    """One allowed lot transition: from which states, who may make it, what it needs."""

    sources: frozenset[LotState]
    target: LotState | None  # None: back to the state the lot was in before the hold
    roles: frozenset[Role]
    needs_reason: bool = True
    signature: Meaning | None = None  # a signed move is recorded as its own LotDecision
    guard: str | None = None  # the name of a rule set in release.GUARDS that must all pass


_BEFORE_RELEASE = frozenset({LotState.qc_pending, LotState.initial_certified, LotState.qp_certified})

# The lot state machine (reference "Workflow" A). Completion (in_process -> qc_pending) happens
# when the last batch-record step is signed. Release, quarantine and recall of a released lot carry
# its kits along in the same transaction (AFTER_MOVE below), keeping the blind.
MOVES: dict[str, Move] = {
    "hold": Move(frozenset({LotState.in_process}) | _BEFORE_RELEASE, LotState.on_hold,
                 frozenset({Role.operator, Role.qa})),
    "resume": Move(frozenset({LotState.on_hold}), None, frozenset({Role.qa})),
    "abort": Move(frozenset({LotState.in_process, LotState.on_hold}), LotState.aborted, frozenset({Role.qa}),
                  signature=Meaning.rejected),
    "certify_initial": Move(frozenset({LotState.qc_pending}), LotState.initial_certified, frozenset({Role.qp}),
                            needs_reason=False, signature=Meaning.certified, guard="initial_certification"),
    "certify_final": Move(frozenset({LotState.qc_pending, LotState.initial_certified}), LotState.qp_certified,
                          frozenset({Role.qp}), needs_reason=False, signature=Meaning.certified,
                          guard="final_certification"),
    "release": Move(frozenset({LotState.qp_certified}), LotState.released, frozenset({Role.supply_manager}),
                    needs_reason=False, signature=Meaning.released, guard="sponsor_release"),
    "reject": Move(_BEFORE_RELEASE | {LotState.on_hold}, LotState.rejected, frozenset({Role.qp, Role.qa}),
                   signature=Meaning.rejected),
    "quarantine": Move(frozenset({LotState.released}), LotState.quarantined, frozenset({Role.qa})),
    "release_from_quarantine": Move(frozenset({LotState.quarantined}), LotState.released, frozenset({Role.qa}),
                                    signature=Meaning.released),
    "recall": Move(frozenset({LotState.released, LotState.quarantined}), LotState.recalled, frozenset({Role.qa}),
                   signature=Meaning.rejected),
}


# Moves that carry kits along: their events are hidden from blinded roles, whose kit histories
# show the same moment for both arms and must not be set beside a named manufacturing lot.
KIT_MOVES = frozenset({"release", "quarantine", "release_from_quarantine", "recall"})


def _after_move(session: Session, user: User, actor: Actor, lot: Lot, name: str, reason: str | None,
                decision: LotDecision | None) -> None:
    """What a lot's move does to its kits, in the same transaction."""
    from . import packaging, quarantine  # they import lots' neighbours; import here, when kits are involved

    if name == "release":
        packaging.after_lot_release(session, actor, lot)
    elif name in ("quarantine", "recall"):
        quarantine.quarantine_lot(session, actor, lot, cause="lot_quarantine" if name == "quarantine" else "recall",
                                  reason=reason or name)
    elif name == "release_from_quarantine":
        quarantine.after_lot_quarantine_lifted(session, user, actor, lot, decision.signature_id)


def by_number(session: Session, number: str) -> Lot:
    lot = session.scalars(select(Lot).where(Lot.number == number.strip())).first()
    if lot is None:
        raise NotFound(f"No lot '{number}'.", field="lot")
    return lot


def spec_of(session: Session, lot: Lot) -> SpecVersion:
    return session.get(SpecVersion, lot.spec_version_id)


def claim(session: Session, lot: Lot, seen_version: int | None) -> None:
    """Optimistic lock: the change applies only to the lot as the actor last saw it.

    On PostgreSQL a concurrent transaction blocks on this row until the first commits, then
    matches no row: the second person gets a conflict, never a duplicate entry."""
    expected = lot.row_version if seen_version is None else seen_version
    result = session.execute(update(Lot).where(Lot.id == lot.id, Lot.row_version == expected)
                             .values(row_version=Lot.row_version + 1))
    if result.rowcount != 1:
        raise Conflict(f"Someone else recorded on lot {lot.number} since you opened it. Reload to see their "
                       "entry, then try again.", field="lot_version")
    session.refresh(lot)


def _next_number(session: Session, kind: str) -> str:
    prefix = f"{LOT_PREFIX[kind]}-{utcnow():%Y}-"
    last = session.scalar(select(func.max(Lot.number)).where(Lot.number.like(prefix + "%")))
    return f"{prefix}{(int(last.rsplit('-', 1)[1]) if last else 0) + 1:04d}"


def start_lot(session: Session, actor: Actor, product_code: str, donation_identifier: str | None = None) -> Lot:
    """Operators start a lot under the product's effective specification."""
    users.require_role(actor, Role.operator)
    spec_row = spec_versions.effective(session, (product_code or "").strip())
    donation = None
    if spec_row.kind == "asc":
        if not (donation_identifier or "").strip():
            raise InvalidInput("A cell lot starts from a donation: give its identification.", field="donation")
        donation = donation_by_identifier(session, donation_identifier)  # as typed or scanned
        if why := donation_may_start_lot(session, donation):
            raise InvalidInput(why, field="donation")
    lot = Lot(number=_next_number(session, spec_row.kind), spec_version_id=spec_row.id,
              donation_id=donation.id if donation else None, created_by=actor.user_id, created_at=utcnow())
    session.add(lot)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("Another lot was started at the same moment; try again.", field="lot") from None
    audit.record(session, actor, "lot started", "lot", lot.number, field="specification",
                 new=spec_versions.label(spec_row))
    if donation:
        audit.record(session, actor, "donation assigned", "lot", lot.number, field="donation", new=donation.identifier)
    return lot


def allowed_moves(lot: Lot, actor: Actor) -> list[str]:
    """The moves the table allows this actor now: pages show only these."""
    return [name for name, move in MOVES.items()
            if LotState(lot.state) in move.sources and actor.roles & move.roles]


@signatures.content_rule("lot_decision")
def _decision_content(session: Session, decision_id: str) -> dict:
    decision = session.get(LotDecision, int(decision_id))
    if decision is None:
        raise NotFound("No such lot decision.")
    lot = session.get(Lot, decision.lot_id)
    content = {"lot": lot.number, "specification": lot.spec_version_id, "decision": decision.decision,
               "from": decision.from_state, "to": decision.to_state, "reason": decision.reason}
    if decision.qc_results_up_to is not None:  # the results the decision stood on, as they were then
        from .qc import results_snapshot

        content["qc_results"] = results_snapshot(session, lot, decision.qc_results_up_to)
    return content


def move(session: Session, user: User, lot: Lot, name: str, reason: str | None, *, password: str | None = None,
         seen_version: int | None = None) -> LotDecision | None:
    """Make one move of the table; a signed move returns its decision record."""
    actor = users.actor(session, user)
    rule = MOVES.get(name)
    if rule is None:
        raise NotFound(f"Unknown action '{name}'.", field="action")
    if not actor.roles & rule.roles:
        raise Forbidden(f"Only {' or '.join(sorted(r.value for r in rule.roles))} may {name.replace('_', ' ')} a lot.")
    if LotState(lot.state) not in rule.sources:
        raise InvalidInput(f"Lot {lot.number} is {LotState(lot.state).value.replace('_', ' ')}; it cannot be "
                           f"moved by '{name.replace('_', ' ')}' now.", field="action")
    reason = audit.require_reason(reason) if rule.needs_reason else ((reason or "").strip() or None)
    claim(session, lot, seen_version)
    if rule.guard:
        from .release import GUARDS  # release holds the gates; they read QC, deviations, donors

        blocking = [why for gate in GUARDS[rule.guard] if (why := gate(session, lot, actor))]
        if blocking:
            raise InvalidInput("Not yet: " + " ".join(blocking), field="gates")
    old = LotState(lot.state)
    if rule.target is LotState.on_hold:
        lot.state_before_hold, lot.hold_reason = old.value, reason
        new = LotState.on_hold
    elif rule.target is None:
        new, lot.state_before_hold, lot.hold_reason = LotState(lot.state_before_hold), None, None
    else:
        new = rule.target
    lot.state = new
    session.flush()
    visibility = Visibility.unblinded if name in KIT_MOVES else Visibility.everyone
    audit.record(session, actor, f"lot {name.replace('_', ' ')}", "lot", lot.number, field="state", old=old, new=new,
                 reason=reason, visibility=visibility)
    if not rule.signature:
        _after_move(session, user, actor, lot, name, reason, None)
        return None
    decision = LotDecision(lot_id=lot.id, decision=name, from_state=old.value, to_state=new.value, reason=reason,
                           qc_results_up_to=session.scalar(select(func.max(QcResult.id)).where(QcResult.lot_id == lot.id)),
                           created_at=utcnow())
    session.add(decision)
    session.flush()
    sig = signatures.sign(session, user, password or "", rule.signature, "lot_decision", str(decision.id),
                          reason=reason, visibility=visibility)
    decision.signature_id = sig.id
    session.flush()
    _after_move(session, user, actor, lot, name, reason, decision)
    return decision


def decisions_of(session: Session, lot: Lot) -> list[LotDecision]:
    return list(session.scalars(select(LotDecision).where(LotDecision.lot_id == lot.id).order_by(LotDecision.id)))


def lots(session: Session, state: str | None = None) -> list[Lot]:
    query = select(Lot).order_by(Lot.id.desc())
    if state:
        query = query.where(Lot.state == state)
    return list(session.scalars(query))
