"""Every vial accounted for: the one fate each filled vial gets, by scanning its code.

A vial made at fill has no fate until it is placed at a storage position (by the storage step of the
batch record), pulled for QC, kept as a retained sample, or destroyed with a reason. It gets exactly
one: a second is refused, naming the field, and two people scanning the same vial at the same moment
get one success and one conflict (the fate is set only where the vial still has none). Only a placed
vial may go into a kit, so the free units of a lot are its placed vials not otherwise used
(`free_units`, the one rule packaging counts with), and a lot is reconciled when its filled vials
equal placed + QC + retained + destroyed (`reconcile`, read by the release gate and the pages).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, select, update
from sqlmodel import Session, col

from .. import audit, limits, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from ..models import Lot, LotState, Role, Vial, VialState
from ..statemachine import Machine, Transition

# Who records a vial's fate at the bench: the operator placing and pulling, QC taking its samples,
# QA destroying or retaining.
RECORDERS = (Role.operator, Role.qc_analyst, Role.qa)
_T = Transition[VialState]
_FILLED = frozenset({VialState.filled})
# A vial's life: one fate from filled, then a placed vial may go into a kit (supply.packaging). A
# correction of the storage entry that placed it takes the placement back, with the reason.
MOVES: dict[str, _T] = {
    "place": _T(_FILLED, VialState.stored, frozenset({Role.operator, Role.qa})),
    "pull_for_qc": _T(_FILLED, VialState.qc, frozenset(RECORDERS)),
    "retain": _T(_FILLED, VialState.retained, frozenset(RECORDERS)),
    "destroy": _T(_FILLED, VialState.destroyed, frozenset(RECORDERS), needs_reason=True),
    "withdraw_placement": _T(frozenset({VialState.stored}), VialState.filled, frozenset({Role.operator, Role.qa}),
                             needs_reason=True),
    "kit": _T(frozenset({VialState.stored}), VialState.kitted, frozenset({Role.supply_manager})),
}
MACHINE: Machine[Vial, VialState] = Machine("vial", lambda vial: VialState(vial.state), MOVES)
# A fate given by scan on the lot page, by its move; placement is the storage step's (a signed entry).
SCANNED_FATES = {"qc": "pull_for_qc", "retained": "retain", "destroyed": "destroy"}
# How each state reads on pages and in the batch record.
WORDS = {VialState.filled: "no fate yet", VialState.stored: "placed in storage", VialState.qc: "pulled for QC",
         VialState.retained: "retained sample", VialState.destroyed: "destroyed",
         VialState.kitted: "placed, now in a kit"}
PLACED = frozenset({VialState.stored, VialState.kitted})  # a kitted vial was placed before it was packed
# Lots whose vials take no more fates: nothing of theirs goes anywhere any more.
CLOSED_LOTS = frozenset({LotState.aborted, LotState.rejected, LotState.recalled})
SHOWN_CODES = 10  # a blocking reason names this many vials, then counts the rest


def words(state: str | VialState) -> str:
    return WORDS.get(VialState(state), str(state))


def free_units() -> ColumnElement[bool]:
    """The one rule for a unit free to go into a kit: placed (or received into stock), and not
    pulled for QC, retained, destroyed or already in a kit. Placed − pulled − retained − destroyed."""
    return col(Vial.state) == VialState.stored.value


# --- small named rules ---------------------------------------------------------------------------


def lot_takes_fates(lot: Lot) -> str | None:
    state = LotState(lot.state)
    if state in CLOSED_LOTS:
        return f"Lot {lot.number} is {state.value}: its vials take no new fate."
    return None


def vial_has_no_fate(vial: Vial) -> str | None:
    """One fate per vial: a vial that has one keeps it."""
    state = VialState(vial.state)
    if state is VialState.filled:
        return None
    where = f" at {vial.storage_position}" if state in PLACED and vial.storage_position else ""
    return f"Vial {vial.code} is already {words(state)}{where}: a vial has one fate."


def position_is_free(session: Session, position: str) -> str | None:
    """A storage position never holds two vials."""
    if session.scalars(select(col(Vial.id)).where(col(Vial.storage_position) == position)).first() is not None:
        return f"Storage position {position} already holds a vial."
    return None


def reason_given(move: str, reason: str) -> str | None:
    if MACHINE.transition(move).needs_reason and not reason:
        return "Say why the vial was destroyed." if move == "destroy" else "Give the reason."
    return None


# --- finding and settling a vial ---------------------------------------------------------------


def vial_of(session: Session, lot: Lot, scanned: str | None, field_name: str = "vial") -> Vial:
    """The vial a scan or typed code names, which must be one of this lot's."""
    code = (scanned or "").strip().upper()
    if not code:
        raise InvalidInput("Scan or type the vial's code.", field=field_name)
    vial = session.scalars(select(Vial).where(col(Vial.code) == code)).first()
    if vial is None:
        raise NotFound(f"No vial '{code}'.", field=field_name)
    if vial.lot_id != lot.id:
        raise InvalidInput(f"Vial {code} is not a vial of lot {lot.number}.", field=field_name)
    return vial


def _settle(session: Session, actor: Actor, vial: Vial, move: str, field_name: str, *, note: str | None = None,
            position: str | None = None) -> VialState:
    """Give the vial its fate (a move of MACHINE) only where it still has none: of two people at the
    same moment, the second matches no row and gets a conflict."""
    if why := MACHINE.role_refusal(move, actor.roles):
        raise Forbidden(why)
    if why := vial_has_no_fate(vial):
        raise Conflict(why, field=field_name)
    state = MACHINE.target(vial, move)
    values: dict[str, object] = {"state": state.value, "fate_note": note, "fate_at": utcnow()}
    if position is not None:
        values["storage_position"] = position
    done = session.execute(update(Vial).where(col(Vial.id) == vial.id, col(Vial.state) == VialState.filled.value)
                           .values(**values).execution_options(synchronize_session=False))
    if done.rowcount != 1:  # type: ignore[attr-defined]  # a CursorResult: an UPDATE's rows matched
        raise Conflict(f"Someone else recorded the fate of vial {vial.code} at the same moment. Reload.",
                       field=field_name)
    session.refresh(vial)
    return state


def place(session: Session, actor: Actor, lot: Lot, scanned: str, position: str, *,
          field_name: str = "vial_id") -> Vial:
    """The storage step places a vial at its position (the step's entry is the signed record)."""
    vial = vial_of(session, lot, scanned, field_name)
    if why := lot_takes_fates(lot):
        raise InvalidInput(why, field=field_name)
    if why := vial_has_no_fate(vial):
        raise Conflict(why, field=field_name)
    if why := position_is_free(session, position):
        raise Conflict(why, field="position")
    _settle(session, actor, vial, "place", field_name, position=position)
    audit.record(session, actor, "vial placed", "lot", lot.number, field=f"vial {vial.code}",
                 old=words(VialState.filled), new=f"{words(VialState.stored)} {position}")
    return vial


def correct_placement(session: Session, actor: Actor, lot: Lot, placed_code: str, scanned: str, position: str, *,
                      reason: str) -> Vial:
    """A corrected storage entry: the vial it placed goes back to no fate, and the vial and position
    it now names are placed (the same vial at a new position, or another vial). Called by the
    correction of the entry, in its transaction; the entry is then signed again."""
    placed = vial_of(session, lot, placed_code, "value")
    new = vial_of(session, lot, scanned, "value")
    if why := MACHINE.role_refusal("withdraw_placement", actor.roles):
        raise Forbidden(why)
    moved = session.execute(update(Vial).where(col(Vial.id) == placed.id, col(Vial.state) == VialState.stored.value)
                            .values(state=VialState.filled.value, storage_position=None, fate_note=None, fate_at=None)
                            .execution_options(synchronize_session=False))
    if moved.rowcount != 1:  # type: ignore[attr-defined]  # a CursorResult: an UPDATE's rows matched
        raise Conflict(f"Vial {placed.code} is no longer where this entry placed it (it is {words(placed.state)}): "
                       "its placement cannot be corrected.", field="value")
    session.refresh(placed)
    audit.record(session, actor, "vial placement withdrawn", "lot", lot.number, field=f"vial {placed.code}",
                 old=words(VialState.stored), new=words(VialState.filled), reason=reason)
    if why := position_is_free(session, position):
        raise Conflict(why, field="value")
    session.refresh(new)
    _settle(session, actor, new, "place", "value", position=position)
    audit.record(session, actor, "vial placed", "lot", lot.number, field=f"vial {new.code}",
                 old=words(VialState.filled), new=f"{words(VialState.stored)} {position}", reason=reason)
    return new


def record_fate(session: Session, actor: Actor, lot: Lot, scanned: str, fate: str, reason: str | None = None) -> Vial:
    """A vial pulled for QC, kept as a retained sample (the note says where) or destroyed (the
    reason says why), recorded by scanning its code."""
    users.require_role(actor, *RECORDERS)
    move = SCANNED_FATES.get((fate or "").strip())
    if move is None:
        raise InvalidInput("Choose what happened to the vial: pulled for QC, retained sample or destroyed.",
                           field="fate")
    vial = vial_of(session, lot, scanned)
    if why := lot_takes_fates(lot):
        raise InvalidInput(why, field="vial")
    note = limits.text(reason, "reason", "note", "fate_note") or ""
    if why := reason_given(move, note):
        raise InvalidInput(why, field="reason")
    state = _settle(session, actor, vial, move, "vial", note=note or None)
    audit.record(session, actor, f"vial {words(state)}", "lot", lot.number, field=f"vial {vial.code}",
                 old=words(VialState.filled), new=words(state), reason=note or None)
    return vial


# --- reconciliation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reconciliation:
    """Filled = placed + QC + retained + destroyed + no fate yet; reconciled when none is left."""

    filled: int
    placed: int
    qc: int
    retained: int
    destroyed: int
    without_fate: list[str] = field(default_factory=list)  # codes, in fill order
    free: int = 0  # placed and not yet in a kit

    @property
    def reconciled(self) -> bool:
        return not self.without_fate and self.filled == self.placed + self.qc + self.retained + self.destroyed


def without_fate(session: Session, lot: Lot) -> list[str]:
    """The codes of the lot's vials that have no fate yet, in fill order."""
    return list(session.scalars(select(col(Vial.code)).where(col(Vial.lot_id) == lot.id,
                                                             col(Vial.state) == VialState.filled.value)
                                .order_by(col(Vial.seq))))


def reconcile(session: Session, lot: Lot) -> Reconciliation:
    counts = {VialState(state): n for state, n in session.execute(
        select(col(Vial.state), func.count()).where(col(Vial.lot_id) == lot.id).group_by(col(Vial.state)))}
    return Reconciliation(filled=sum(counts.values()), placed=sum(counts.get(s, 0) for s in PLACED),
                          qc=counts.get(VialState.qc, 0), retained=counts.get(VialState.retained, 0),
                          destroyed=counts.get(VialState.destroyed, 0),
                          without_fate=without_fate(session, lot) if counts.get(VialState.filled) else [],
                          free=counts.get(VialState.stored, 0))


def unreconciled(reconciliation: Reconciliation) -> str | None:
    """Why a lot's vials do not add up: which vials have no recorded fate."""
    if reconciliation.reconciled:
        return None
    missing = reconciliation.without_fate
    shown = ", ".join(missing[:SHOWN_CODES]) + (f" and {len(missing) - SHOWN_CODES} more"
                                               if len(missing) > SHOWN_CODES else "")
    return (f"{len(missing)} of {reconciliation.filled} vial{'s' if reconciliation.filled != 1 else ''} "
            f"{'has' if len(missing) == 1 else 'have'} no recorded fate: {shown}.")


def count_agrees(session: Session, lot: Lot, state: VialState, counted: int) -> str | None:
    """A count the batch record states (vials pulled for QC, retained) is the number of vials scanned
    with that fate: the record never says 3 where 2 vials are accounted for."""
    codes = list(session.scalars(select(col(Vial.code)).where(col(Vial.lot_id) == lot.id,
                                                              col(Vial.state) == state.value).order_by(col(Vial.seq))))
    if len(codes) == counted:
        return None
    scanned = f": {', '.join(codes)}" if codes else ""
    return (f"{counted} typed, but {len(codes)} vial{'s' if len(codes) != 1 else ''} of lot {lot.number} "
            f"{'is' if len(codes) == 1 else 'are'} recorded as {words(state)}{scanned}. Scan each vial's fate on "
            "the lot page, then give the count.")


def vials_of(session: Session, lot: Lot) -> list[Vial]:
    return list(session.scalars(select(Vial).where(col(Vial.lot_id) == lot.id).order_by(col(Vial.seq))))

