"""Dispensing: a kit of the participant's arm assigned to the visit (chosen behind the sealed
compartment's blind-safe door), the pharmacist's scan that dispenses exactly that kit to the
preparer, a damaged, missing or unusable kit replaced, and a kit put back in stock when the
participant did not come. The same steps and words for both arms."""
from __future__ import annotations

from sqlmodel import Session

from .. import audit, clock, custody, kits, users
from ..audit import Actor
from ..custody import key
from ..errors import Conflict, InvalidInput
from ..models import Kit, KitState, User, Visit
from .doors import kit_for
from .lifecycle import VisitState, authorise, outside_window, set_state
from .records import VisitContext, detach_kit, in_date_on, kit_expired, lock, scan_kit, use_window

NO_KIT_MESSAGE = ("No kit is available for this visit at this site. Supply has been alerted and will send kits; "
                  "assign again when they have been received.")


class NoKitAvailable(Conflict):
    """No kit of the participant's arm at the site: the same words for both arms. Raised by the
    routes after `assign` has committed what the attempt leaves (the sealed compartment's shortage
    record, which alerts the supply manager with the arm and the site, its log of the attempt, and
    the visit's audit event)."""

    def __init__(self) -> None:
        super().__init__(NO_KIT_MESSAGE, field="kit")


def _no_kit(session: Session, actor: Actor, ctx: VisitContext) -> None:
    """The visit's own record of the refusal, the same for both arms. The supply manager's alert
    is the shortage the sealed door recorded (it alone knows the arm); no message goes to the
    study's emergency address, which is the sponsor's unblinding mailbox, not supply."""
    audit.record(session, actor, "no kit available", "visit", ctx.ref, field="kit", new=None,
                 reason="supply alerted")
    session.flush()


def _allocate(session: Session, actor: Actor, ctx: VisitContext, kit: Kit, why: str) -> None:
    kits.move(session, actor, kit, "allocate", reason=f"{ctx.who}: {why}")
    ctx.visit.kit_id, ctx.kit = key(kit), kit
    session.flush()
    audit.record(session, actor, "kit assigned", "visit", ctx.ref, field="kit", new=kit.number, reason=why)
    set_state(session, actor, ctx, VisitState.kit_assigned)


def assign(session: Session, actor: Actor, visit: Visit, *, seen_version: int | None = None) -> Kit | None:
    """A kit of the participant's arm, at the site, in date through the use window: chosen by the
    sealed compartment, allocated to the visit. The pharmacist then scans it to dispense.

    None when there is no such kit: the visit stays as it was and supply is alerted (the sealed
    door's shortage record), in the caller's transaction, which commits it; the caller then
    refuses with NoKitAvailable (the same words for both arms)."""
    ctx = lock(session, visit, seen_version)
    authorise(session, actor, ctx, "assign")
    kit = kit_for(session, actor, ctx, use_window(ctx.study))
    if kit is None:
        _no_kit(session, actor, ctx)
        return None
    _allocate(session, actor, ctx, kit, "assigned at the visit")
    return kit


def dispense(session: Session, actor: Actor, visit: Visit, code: str | None, secret_key: str, *,
             seen_version: int | None = None, kit_version: int | None = None, manual: object = False,
             reason: str | None = None) -> Kit:
    """The pharmacist scans the label of the kit in hand (or, the label unreadable, types its number,
    marked as typed by hand with the reason): the assigned kit is dispensed to the preparer; any
    other kit is refused, naming both numbers and nothing else."""
    ctx = lock(session, visit, seen_version)
    authorise(session, actor, ctx, "dispense")
    scanned, entry = scan_kit(session, code, secret_key, manual=manual, reason=reason)
    assigned = ctx.held_kit
    if scanned.id != assigned.id:
        raise InvalidInput(f"This is kit {scanned.number}; the kit assigned to this visit is {assigned.number}.",
                           field="code")
    if KitState(assigned.state) is not KitState.allocated:
        raise InvalidInput(f"Kit {assigned.number} is {kits.state_label(assigned.state).lower()}: do not use it; "
                           "replace it.", field="code")
    if kit_version is not None and int(kit_version) != assigned.row_version:
        raise Conflict(f"Someone else acted on kit {assigned.number} at the same moment. Reload and check it.",
                       field="kit_version")
    if why := kit_expired(session, assigned, in_date_on(ctx.site, use_window(ctx.study))):
        raise InvalidInput(f"{why} Replace it (it is unusable).", field="code")
    kits.move(session, actor, assigned, "dispense", reason=_with(ctx.who, entry), seen_version=kit_version)
    to_place = f"{ctx.site.code}: with the preparer"
    custody.record(session, actor, assigned, "dispensed", from_place=assigned.location, to_place=to_place,
                   condition="label scanned and matched" if not entry.typed else f"{entry.method}; matched")
    custody.relocate(session, actor, assigned, to_place)
    set_state(session, actor, ctx, VisitState.dispensed)
    return assigned


def _with(why: str, entry: kits.KitCode) -> str:
    return f"{why}; {entry.method}" if entry.typed else why


REPLACEMENT_MOVES = {"damaged": "damage", "missing": "lose", "unusable": "unallocate"}


def replace_kit(session: Session, user: User, password: str, visit: Visit, *, what: str | None,
                reason: str | None, seen_version: int | None = None) -> Kit | None:
    """The assigned kit is damaged or missing before preparation (or unusable, such as past its
    expiry, while still in the pharmacy): the pharmacist says why and re-enters the password; the
    old kit is recorded damaged or missing (an unusable one goes back to stock, where the sealed
    assignment never picks it again for this visit) and a new kit is assigned, excluding every kit
    this visit had. With no kit left, the old kit's fate is still recorded, the visit waits for a
    kit, and supply is alerted: returns None."""
    actor = users.actor(session, user)
    ctx = lock(session, visit, seen_version)
    authorise(session, actor, ctx, "replace")
    move = REPLACEMENT_MOVES.get((what or "").strip())
    if move is None:
        raise InvalidInput("Say what happened to the kit: damaged, missing or unusable.", field="what")
    old = ctx.held_kit
    held = KitState(old.state) is KitState.quarantined  # taken out of use after assignment: QA decides its fate
    if move == "unallocate" and not held and KitState(old.state) is not KitState.allocated:
        raise InvalidInput(f"Kit {old.number} has left the pharmacy; record it damaged or missing, or return it.",
                           field="what")
    reason = audit.require_reason(reason)
    users.reauthenticate(session, user, password)
    if not held:
        kits.move(session, actor, old, move, reason=f"{ctx.who}: {reason}")
        if move != "unallocate":
            custody.record(session, actor, old, what or move, from_place=old.location, condition=reason)
    detach_kit(ctx.visit)
    session.flush()
    audit.record(session, actor, "kit replaced", "visit", ctx.ref, field="kit", old=old.number, new=None,
                 reason=f"{what}: {reason}")
    set_state(session, actor, ctx, VisitState.planned, reason=f"kit {old.number} {what}")
    ctx.kit = None
    if outside_window(ctx.visit, clock.today(ctx.site)):
        return None
    new = kit_for(session, actor, ctx, use_window(ctx.study))
    if new is None:
        _no_kit(session, actor, ctx)
        return None
    _allocate(session, actor, ctx, new, f"replaces kit {old.number}")
    return new


def unallocate(session: Session, actor: Actor, visit: Visit, reason: str | None, *,
               seen_version: int | None = None) -> Kit:
    """The participant did not come: the assigned kit goes back into the site's stock."""
    ctx = lock(session, visit, seen_version)
    authorise(session, actor, ctx, "unallocate")
    reason = audit.require_reason(reason)
    kit = ctx.held_kit
    kits.move(session, actor, kit, "unallocate", reason=f"{ctx.who}: {reason}")
    detach_kit(ctx.visit)
    session.flush()
    audit.record(session, actor, "kit put back in stock", "visit", ctx.ref, field="kit", old=kit.number, new=None,
                 reason=reason)
    set_state(session, actor, ctx, VisitState.planned, reason=reason)
    return kit


