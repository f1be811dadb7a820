"""Decisions on a lot: every move of a lot (`move_lot`, with its release gates and what it does to
the lot's kits), the QP's initial and final certification with the tests still pending, the
sponsor release and rejection.

`lots.move` makes the move of the table and signs it; the lot's kits are supply's, so the kits are
carried along here, in the same transaction (lots imports neither release nor supply)."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit, clock, inputs, limits, lots, qc, users
from ..clock import utcnow
from ..errors import InvalidInput
from ..models import Lot, LotDecision, LotState, PendingTest, Role, Signature, User, UserRole, Visibility, saved_id
from ..specifications import ReleaseTest
from ..supply import packaging, quarantine
from .gates import GUARDS, counts_for_release, declared_pending, name_of


def move_lot(session: Session, user: User, lot: Lot, name: str, reason: str | None, *,
             password: str | None = None, seen_version: int | None = None) -> LotDecision | None:
    """Every move of a lot, pages and API alike: the table's move with its release gates, then what
    it does to the lot's kits, in the same transaction. A reason typed here is a person's: limits.REASON."""
    return _move_lot(session, user, lot, name, limits.text(reason, "reason", "reason", "reason"),
                     password=password, seen_version=seen_version)


def _move_lot(session: Session, user: User, lot: Lot, name: str, reason: str | None, *,
              password: str | None = None, seen_version: int | None = None) -> LotDecision | None:
    gates = GUARDS[lots.GATED[name]] if name in lots.GATED else ()
    travelling = LotState(lot.state) in lots.CARRIES_KITS
    decision = lots.move(session, user, lot, name, reason, password=password, seen_version=seen_version, gates=gates)
    actor = users.actor(session, user)
    if name in RELEASES_KITS:
        packaging.after_lot_release(session, actor, lot)
    elif name == "reject" and travelling:  # its kits may be at sites: held, blind kept, for QA to withdraw
        quarantine.quarantine_lot(session, actor, lot, cause="recall", reason=reason or name)
    elif name in ("quarantine", "recall"):
        quarantine.quarantine_lot(session, actor, lot, cause="lot_quarantine" if name == "quarantine" else "recall",
                                  reason=reason or name)
    elif name == "release_from_quarantine" and decision is not None:
        quarantine.after_lot_quarantine_lifted(session, user, actor, lot, decision.signature_id)
    return decision


# Lot moves after which the lot's kits may move on: travel (release for shipment), or be used.
RELEASES_KITS = frozenset({"release", "release_for_shipment", "certify_final_shipped"})


def _signed(session: Session, user: User, lot: Lot, name: str, reason: str | None, password: str,
            seen_version: int | None) -> LotDecision:
    """A move the table signs: it always leaves its decision record."""
    decision = _move_lot(session, user, lot, name, reason, password=password, seen_version=seen_version)
    if decision is None:
        raise RuntimeError(f"The lot move '{name}' is signed in lots.MOVES and leaves a decision.")
    return decision


# --- pending tests of an initial certification --------------------------------------------------


def pending_tests(session: Session, lot: Lot, *, open_only: bool = False) -> list[PendingTest]:
    query = select(PendingTest).where(col(PendingTest.lot_id) == lot.id)
    if open_only:
        query = query.where(col(PendingTest.resolved_at).is_(None))
    return list(session.scalars(query.order_by(col(PendingTest.id))))


def owner_names(session: Session, pending: list[PendingTest]) -> dict[int, str]:
    """The printed names of the pending tests' owners, by user id."""
    ids = {p.owner_id for p in pending}
    if not ids:
        return {}
    return {i: name for i, name in session.execute(select(col(User.id), col(User.full_name))
                                                    .where(col(User.id).in_(ids))) if i is not None}


def qc_analysts(session: Session) -> list[User]:
    """Who may own a pending test: the active QC analysts, by name."""
    return list(session.scalars(select(User).join(UserRole, col(UserRole.user_id) == User.id)
                                .where(col(UserRole.role) == Role.qc_analyst.value, col(User.active).is_(True))
                                .order_by(col(User.full_name))))


def _parse_pending(session: Session, lot: Lot,
                   pending: Iterable[tuple[str, str, date | str]]) -> list[tuple[ReleaseTest, User, date]]:
    statuses = {s.test.code: s for s in qc.test_status(session, lot) if counts_for_release(s.test)}
    rows: list[tuple[ReleaseTest, User, date]] = []
    seen: set[str] = set()
    today = clock.today()
    for item in pending:
        code, owner_name, due = (str(item[0] or "").strip(), str(item[1] or "").strip(), item[2])
        if not code:
            continue
        status = statuses.get(code)
        if status is None:
            raise InvalidInput(f"'{code}' is not a test required for the release of lot {lot.number}.", field="pending")
        name = name_of(status.test)
        if code in seen:
            raise InvalidInput(f"{name} is listed twice.", field="pending")
        seen.add(code)
        if status.state == qc.PASS:
            raise InvalidInput(f"{name} already has a passing reviewed result: it is not pending.", field="pending")
        if status.state == qc.OOS:
            raise InvalidInput(f"{name} is out of specification: a lot cannot be certified while an OOS result "
                               "stands.", field="pending")
        owner = session.scalars(select(User).where(col(User.username) == owner_name)).first() if owner_name else None
        if owner is None or not owner.active or Role.qc_analyst not in users.roles_of(session, saved_id(owner)):
            raise InvalidInput(f"{name}: the owner must be an active QC analyst.", field="owner")
        day = inputs.day(due, "due_date", f"due date of {name}")
        if day < today:
            raise InvalidInput(f"{name}: the due date {day.isoformat()} is in the past.", field="due_date")
        rows.append((status.test, owner, day))
    if not rows:
        raise InvalidInput("An initial certification lists at least one pending test, with its owner and due date; "
                           "with every result in, certify finally.", field="pending")
    return rows


# --- certification, sponsor release, rejection --------------------------------------------------


def certify(session: Session, qp_user: User, password: str, lot: Lot, *, final: bool,
            pending: Iterable[tuple[str, str, date | str]] = (), comment: str | None = None,
            seen_version: int | None = None) -> LotDecision:
    """The QP certifies (meaning "certified"): finally, or initially with the tests still pending,
    each with an owner (a QC analyst) and a due date. A final certification after an initial one
    resolves the pending tests: the gate has just checked that every result is in and in specification."""
    actor = users.actor(session, qp_user)
    users.require_role(actor, Role.qp)
    comment = limits.text(comment, "comment", "comment", "reason")  # it becomes the signed move's reason
    if final:
        if any(str(p[0] or "").strip() for p in pending):
            raise InvalidInput("A final certification lists no pending tests.", field="pending")
        # a lot released for shipment is released by its final certification, its kits with it
        move = "certify_final_shipped" if LotState(lot.state) is LotState.released_for_shipment else "certify_final"
        decision = _signed(session, qp_user, lot, move, comment, password, seen_version)
        for row in pending_tests(session, lot, open_only=True):
            row.resolved_at = utcnow()
            audit.record(session, actor, "pending test resolved", "lot", lot.number, field=f"pending:{row.test_code}",
                         new=f"final certification #{decision.id}", visibility=Visibility.unblinded)
        session.flush()
        return decision
    rows = _parse_pending(session, lot, pending)
    # The reason is part of what the QP signs: the signature then covers the pending list too.
    listed = "; ".join(f"{name_of(t)} ({t.code}): owner {o.full_name}, due {d.isoformat()}" for t, o, d in rows)
    reason = f"Pending tests: {listed}." + (f" {comment}" if comment else "")
    with declared_pending(session, frozenset(t.code for t, _, _ in rows)):
        decision = _signed(session, qp_user, lot, "certify_initial", reason, password, seen_version)
    for test, owner, due in rows:
        session.add(PendingTest(decision_id=saved_id(decision), lot_id=saved_id(lot), test_code=test.code,
                                owner_id=saved_id(owner), due_date=due))
        audit.record(session, actor, "pending test listed", "lot", lot.number, field=f"pending:{test.code}",
                     new=f"owner {owner.full_name}, due {due.isoformat()}", visibility=Visibility.unblinded)
    session.flush()
    return decision


def sponsor_release(session: Session, supply_user: User, password: str, lot: Lot,
                    seen_version: int | None = None) -> LotDecision:
    """The sponsor's regulatory release (meaning "released"): the lot becomes usable for kits."""
    return _signed(session, supply_user, lot, "release", None, password, seen_version)


def release_for_shipment(session: Session, supply_user: User, password: str, lot: Lot,
                         seen_version: int | None = None) -> LotDecision:
    """Two-step release (EU GMP Annex 16): the sponsor releases an initially certified lot for
    shipment under quarantine (meaning "released"). Its kits travel; they are assigned only after
    the QP's final certification, which releases the lot and them in its transaction."""
    return _signed(session, supply_user, lot, "release_for_shipment", None, password, seen_version)


def reject(session: Session, user: User, password: str, lot: Lot, reason: str | None,
           seen_version: int | None = None) -> LotDecision:
    """QP or QA rejects the lot (meaning "rejected"), with a reason; its pending tests are withdrawn."""
    reason = limits.text(reason, "reason", "reason", "reason")
    decision = _signed(session, user, lot, "reject", reason, password, seen_version)
    actor = users.actor(session, user)
    for row in pending_tests(session, lot, open_only=True):
        row.resolved_at = utcnow()
        audit.record(session, actor, "pending test withdrawn", "lot", lot.number, field=f"pending:{row.test_code}",
                     new="lot rejected", visibility=Visibility.unblinded)
    session.flush()
    return decision


def decisions_with_signatures(session: Session, lot: Lot) -> list[tuple[LotDecision, Signature | None]]:
    rows = session.execute(select(LotDecision, Signature)
                           .join(Signature, col(Signature.id) == LotDecision.signature_id, isouter=True)
                           .where(col(LotDecision.lot_id) == lot.id).order_by(col(LotDecision.id)))
    return [(d, s) for d, s in rows]
