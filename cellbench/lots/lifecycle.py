"""Lots: started from an effective specification (and, for cells, an eligible donation), moved by
one transition table, protected against two people acting on the same lot at once."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from .. import audit, limits, pagination, signatures, users
from ..audit import Actor
from ..clock import utcnow
from ..donors import donation_by_identifier, donation_may_start_lot
from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from ..models import AuditEvent, Lot, LotDecision, LotState, Meaning, QcResult, Role, SpecVersion, User, Visibility
from ..specifications import versions as spec_versions
from ..statemachine import Machine, Transition, words

LOT_PREFIX = {"asc": "ASC", "placebo": "PLB"}
# Who reads lots, their batch records and their QC results (pages and API alike).
READERS = (Role.operator, Role.verifier, Role.qa, Role.qp, Role.qc_analyst)

_BEFORE_RELEASE = frozenset({LotState.qc_pending, LotState.initial_certified, LotState.qp_certified})
_T = Transition[LotState]
# A release gate: why it blocks this lot's move for this actor, or None (release.GUARDS).
Gate = Callable[[Session, Lot, Actor], "str | None"]

# The lot state machine (reference "Workflow" A). Completion (in_process -> qc_pending) is made by
# the batch record itself when its last step is signed (complete(), called by steps; the rule that
# every step is done is steps' guard on it). Release, quarantine and recall
# of a released lot carry its kits along in the same transaction: release.move_lot makes those
# moves, since the kits are supply's (this module reaches no kit and no release gate).
MOVES: dict[str, _T] = {
    "complete": _T(frozenset({LotState.in_process}), LotState.qc_pending, frozenset({Role.operator, Role.verifier})),
    "hold": _T(frozenset({LotState.in_process}) | _BEFORE_RELEASE, LotState.on_hold,
               frozenset({Role.operator, Role.qa}), needs_reason=True),
    "resume": _T(frozenset({LotState.on_hold}), None, frozenset({Role.qa}), needs_reason=True),
    "abort": _T(frozenset({LotState.in_process, LotState.on_hold}), LotState.aborted, frozenset({Role.qa}),
                signature=Meaning.rejected, needs_reason=True),
    "certify_initial": _T(frozenset({LotState.qc_pending}), LotState.initial_certified, frozenset({Role.qp}),
                          signature=Meaning.certified),
    "certify_final": _T(frozenset({LotState.qc_pending, LotState.initial_certified}), LotState.qp_certified,
                        frozenset({Role.qp}), signature=Meaning.certified),
    "release": _T(frozenset({LotState.qp_certified}), LotState.released, frozenset({Role.supply_manager}),
                  signature=Meaning.released),
    # Two-step release (EU GMP Annex 16): the sponsor releases an initially certified lot for
    # shipment under quarantine; the QP's final certification then releases it, and its kits with it.
    "release_for_shipment": _T(frozenset({LotState.initial_certified}), LotState.released_for_shipment,
                               frozenset({Role.supply_manager}), signature=Meaning.released),
    "certify_final_shipped": _T(frozenset({LotState.released_for_shipment}), LotState.released, frozenset({Role.qp}),
                                signature=Meaning.certified),
    "reject": _T(_BEFORE_RELEASE | {LotState.on_hold, LotState.released_for_shipment}, LotState.rejected,
                 frozenset({Role.qp, Role.qa}), signature=Meaning.rejected, needs_reason=True),
    "quarantine": _T(frozenset({LotState.released}), LotState.quarantined, frozenset({Role.qa}), needs_reason=True),
    "release_from_quarantine": _T(frozenset({LotState.quarantined}), LotState.released, frozenset({Role.qa}),
                                  signature=Meaning.released, needs_reason=True),
    "recall": _T(frozenset({LotState.released, LotState.quarantined}), LotState.recalled, frozenset({Role.qa}),
                 signature=Meaning.rejected, needs_reason=True),
}


def _state(lot: Lot) -> LotState:
    return LotState(lot.state)


MACHINE: Machine[Lot, LotState] = Machine("lot", _state, MOVES)

# Moves the system makes, never offered as a button nor made through move(): completion follows
# the signature of the batch record's last step.
AUTOMATIC = frozenset({"complete"})

# Moves guarded by a set of release gates (release.GUARDS, by this name): they are refused unless
# the caller passes those gates, so no path can certify or release a lot past them.
GATED = {"certify_initial": "initial_certification", "certify_final": "final_certification",
         "release": "sponsor_release", "release_for_shipment": "shipment_release",
         "certify_final_shipped": "final_certification"}

# Moves that carry kits along: their events are hidden from blinded roles, whose kit histories
# show the same moment for both arms and must not be set beside a named manufacturing lot.
KIT_MOVES = frozenset({"release", "quarantine", "release_from_quarantine", "recall", "release_for_shipment",
                       "certify_final_shipped"})
# A lot whose kits may be travelling: any move from here carries kits along (a rejection quarantines them).
CARRIES_KITS = frozenset({LotState.released_for_shipment})


# States a lot reaches only through "complete" (whose guard is that every step is done), and after
# which nothing is recorded on it (steps.require_open_lot): its batch record is finished for good. A
# rejected lot is not here: a lot held while in process may be rejected with its record unfinished.
RECORD_FINISHED = frozenset({LotState.qc_pending, LotState.initial_certified, LotState.qp_certified,
                             LotState.released_for_shipment, LotState.released, LotState.quarantined,
                             LotState.recalled})


def by_number(session: Session, number: str) -> Lot:
    lot = session.scalars(select(Lot).where(col(Lot.number) == number.strip())).first()
    if lot is None:
        raise NotFound(f"No lot '{number}'.", field="lot")
    return lot


def spec_of(session: Session, lot: Lot) -> SpecVersion:
    # Held by the session: the identity map holds rows weakly, and a step entry's five service
    # calls each re-read the row the last one had dropped (2,500 reads in the demo build, issue 18).
    # A held row behaves as one the caller still holds: read again only after the session expires it.
    held: dict[int, SpecVersion] = session.info.setdefault("cellbench.lots.spec_versions", {})
    spec = held.get(lot.spec_version_id) or session.get(SpecVersion, lot.spec_version_id)
    if spec is None:
        raise NotFound(f"Lot {lot.number} names a specification version that does not exist.", field="lot")
    held[lot.spec_version_id] = spec
    return spec


# Built once: building the statement cost a third of each claim (issue 18: 2,500 claims in the demo).
_CLAIM = (update(Lot).where(col(Lot.id) == bindparam("claimed_lot"),
                            col(Lot.row_version) == bindparam("expected_version"))
          .values(row_version=col(Lot.row_version) + 1).returning(Lot))


def claim(session: Session, lot: Lot, seen_version: int | None) -> None:
    """Optimistic lock: the change applies only to the lot as the actor last saw it.

    On PostgreSQL a concurrent transaction blocks on this row until the first commits, then
    matches no row: the second person gets a conflict, never a duplicate entry."""
    expected = lot.row_version if seen_version is None else seen_version
    # The row as it now stands comes back with the UPDATE (RETURNING, onto the lot in hand):
    # one statement where an UPDATE and a refresh were two, on every entry of a batch record.
    claimed = session.execute(_CLAIM, {"claimed_lot": lot.id, "expected_version": expected},
                              execution_options={"synchronize_session": False, "populate_existing": True}).all()
    if len(claimed) != 1:
        raise Conflict(f"Someone else recorded on lot {lot.number} since you opened it. Reload to see their "
                       "entry, then try again.", field="lot_version")


def _next_number(session: Session, kind: str) -> str:
    prefix = f"{LOT_PREFIX[kind]}-{utcnow():%Y}-"
    last = session.scalar(select(func.max(col(Lot.number))).where(col(Lot.number).like(prefix + "%")))
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
    if spec_row.id is None or actor.user_id is None:
        raise InvalidInput("A lot is started by a person under a stored specification.", field="product")
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
    return [name for name in MACHINE.allowed(lot, actor.roles) if name not in AUTOMATIC]


def results_snapshot(session: Session, lot: Lot, up_to_id: int) -> list[list[object]]:
    """The results a decision stood on: [id, test, value, unit, verdict, retest_of] for every result
    of the lot up to and including up_to_id. Immutable fields only, so the snapshot a signature
    covers stays true when results are later reviewed or invalidated."""
    query = (select(QcResult).where(col(QcResult.lot_id) == lot.id, col(QcResult.id) <= up_to_id)
             .order_by(col(QcResult.id)))
    return [[r.id, r.test_code, r.value, r.unit, r.verdict, r.retest_of] for r in session.scalars(query)]


@signatures.content_rule("lot_decision")
def _decision_content(session: Session, decision_id: str) -> dict[str, object]:
    decision = session.get(LotDecision, int(decision_id))
    lot = session.get(Lot, decision.lot_id) if decision is not None else None
    if decision is None or lot is None:
        raise NotFound("No such lot decision.")
    content: dict[str, object] = {
        "lot": lot.number, "specification": lot.spec_version_id, "decision": decision.decision,
        "from": decision.from_state, "to": decision.to_state, "reason": decision.reason}
    if decision.qc_results_up_to is not None:  # the results the decision stood on, as they were then
        content["qc_results"] = results_snapshot(session, lot, decision.qc_results_up_to)
    return content


def move(session: Session, user: User, lot: Lot, name: str, reason: str | None, *, password: str | None = None,
         seen_version: int | None = None, gates: Sequence[Gate] = ()) -> LotDecision | None:
    """Make one move of the table; a signed move returns its decision record. A gated move (GATED)
    needs its release gates passed in `gates` (release.move_lot does), and all must hold."""
    actor = users.actor(session, user)
    if why := MACHINE.role_refusal(name, actor.roles):
        raise Forbidden(why)
    if name in AUTOMATIC:  # before the table's check: its guards read the batch record, not this move
        raise InvalidInput(f"A lot's {words(name)} follows from its batch record; nobody makes it by hand.",
                           field="action")
    rule = MACHINE.check(lot, name, actor.roles)
    if name in GATED and not gates:
        raise InvalidInput(f"A lot's {words(name)} is made through the release, which checks its gates.",
                           field="action")
    # Reasons here may be composed around a person's (an initial certification lists its pending
    # tests before the QP's comment); the doors people type at bound theirs at limits.REASON.
    reason = (audit.require_reason(reason, kind="cited_reason") if rule.needs_reason
              else limits.text(reason, "reason", "reason", "cited_reason"))
    claim(session, lot, seen_version)
    blocking = [why for gate in gates if (why := gate(session, lot, actor))]
    if blocking:
        raise InvalidInput("Not yet: " + " ".join(blocking), field="gates")
    old = LotState(lot.state)
    before = LotState(lot.state_before_hold) if lot.state_before_hold else None
    new = MACHINE.target(lot, name, before)
    if new is LotState.on_hold:
        lot.state_before_hold, lot.hold_reason = old.value, reason
    elif rule.target is None:
        lot.state_before_hold, lot.hold_reason = None, None
    lot.state = new
    session.flush()
    visibility = Visibility.unblinded if name in KIT_MOVES or old in CARRIES_KITS else Visibility.everyone
    audit.record(session, actor, f"lot {words(name)}", "lot", lot.number, field="state", old=old, new=new,
                 reason=reason, visibility=visibility)
    if not rule.signature:
        return None
    assert lot.id is not None  # a stored lot: claim() updated its row
    up_to = session.scalar(select(func.max(col(QcResult.id))).where(col(QcResult.lot_id) == lot.id))
    decision = LotDecision(lot_id=lot.id, decision=name, from_state=old.value, to_state=new.value, reason=reason,
                           qc_results_up_to=up_to, created_at=utcnow())
    session.add(decision)
    session.flush()
    sig = signatures.sign(session, user, password or "", rule.signature, "lot_decision", str(decision.id),
                          reason=reason, visibility=visibility)
    decision.signature_id = sig.id
    session.flush()
    return decision


def decisions_of(session: Session, lot: Lot) -> list[LotDecision]:
    return list(session.scalars(select(LotDecision).where(col(LotDecision.lot_id) == lot.id)
                                .order_by(col(LotDecision.id))))


HISTORY_SHOWN = 50  # the lot page's latest events; the whole history pages on the audit trail


def latest_history(session: Session, viewer: Actor, lot: Lot,
                   shown: int = HISTORY_SHOWN) -> tuple[list[AuditEvent], int]:
    """The lot's latest events as the viewer may see them, newest first, and how many it has in all
    (counted on the index, not read): a long-lived lot's whole history (hundreds of events) made
    its page grow with it (issue 18)."""
    flt = audit.TrailFilter(entity_type="lot", entity_id=lot.number)
    events = audit.trail(session, viewer, flt, limit=shown)
    if len(events) < shown:
        return events, len(events)
    counted = select(func.count()).select_from(audit.trail_query(viewer, flt).order_by(None).subquery())
    return events, session.scalar(counted) or 0


def lots(session: Session, state: str | None = None) -> list[Lot]:
    query = select(Lot).order_by(col(Lot.id).desc())
    if state:
        query = query.where(col(Lot.state) == state)
    return list(session.scalars(query))


LOT_ORDER = pagination.Order("lots", (col(Lot.id),), newest_first=True)  # newest first


def lot_page(session: Session, ask: pagination.Ask, state: str | None = None) -> pagination.Page[Lot]:
    query = select(Lot).where(col(Lot.state) == state) if state else select(Lot)
    return pagination.page(session, query, LOT_ORDER, ask)


def complete(session: Session, actor: Actor, lot: Lot, expiry: date | None) -> None:
    """The batch record is complete: the lot moves to QC (the table's "complete", whose guard, held
    by steps, says every step is done) and gets its expiry. Called by steps when the last step is
    signed, in that signature's transaction."""
    if not MACHINE.transition("complete").guards:  # steps not loaded: nothing would check the record
        raise InvalidInput("The batch record's completeness rule is not loaded; the lot stays in process.",
                           field="action")
    MACHINE.check(lot, "complete", actor.roles, session)
    old = LotState(lot.state)
    lot.state = MACHINE.target(lot, "complete")
    lot.expiry = expiry
    session.flush()
    audit.record(session, actor, "batch record complete", "lot", lot.number, field="state", old=old, new=lot.state)
    audit.record(session, actor, "expiry set", "lot", lot.number, field="expiry", new=lot.expiry)
