"""Blind-preserving quarantine of kits.

When a manufacturing lot is quarantined, recalled or gets an out-of-specification result after
certification, its kits are taken out of use *with* companions from the other arm, so that the
set of unavailable kits does not tell which are active:

* "proportionate": in each blinded lot and at each place (a site's stock, a shipment on its way,
  the cell bench), the lot's kits there plus a random set of the other arm's kits there, the same
  fraction of them, rounded up (the kits of a lot are all on one arm): every hold anyone can see
  holds both arms whenever the other arm has kits at that place;
* "blinded_lot": every kit of each blinded lot the lot's kits are in.

Kits are held wherever they are: at the cell bench, in a shipment on its way (such a kit arrives
at the site still held: custody's receipt makes the "receive_into_quarantine" move, and the kit
goes back to the site's stock, not "in transit", when the quarantine is lifted), in the site's
stock or assigned to a visit (see kits.MOVES "lift_quarantine" for where it goes back to).

The study's policy applies to automatic quarantines; the supply manager sets it and may choose
again for a manual one. Blinded people see "temporarily unavailable" and one generic reason, with
no quarantine number or kit count that would tie the held kits together or count them; the number,
cause, lot, policy and members are on the KitQuarantine record, shown to unblinded roles only.
"""
from __future__ import annotations

import math
import secrets
from collections import defaultdict
from enum import Enum

from sqlalchemy import func, insert, select
from sqlmodel import Session, col

from .. import audit, kits, notifications, qc, sealed, signatures, studies, users
from ..audit import Actor
from ..clock import utcnow
from ..custody import travelling
from ..errors import Forbidden, InvalidInput, NotFound
from ..models import (
    Kit,
    KitQuarantine,
    KitQuarantineKit,
    KitState,
    Lot,
    LotState,
    Meaning,
    QcResult,
    Role,
    ShipmentKit,
    User,
    Visibility,
    saved_id,
)
from ..statemachine import Machine, Transition, claim

OPENERS = (Role.supply_manager, Role.qa)  # a manual quarantine
DECIDERS = (Role.qa,)  # lift or withdraw, signed
CAUSES = {
    "lot_quarantine": "manufacturing lot quarantined",
    "recall": "manufacturing lot recalled",
    "post_release_oos": "out-of-specification result after certification",
    "manual": "quarantined by hand",
}
# Kits a quarantine can take: at the bench, in transit, at a site, assigned to a visit, and those
# held on receipt awaiting QA's assessment of their shipment (they join it: accepting the
# shipment must not put a kit of a quarantined lot back into use).
QUARANTINABLE = kits.MOVES["quarantine"].sources


_random = secrets.SystemRandom()


class QuarantineState(str, Enum):
    open = "open"
    lifted = "lifted"
    withdrawn = "withdrawn"


def every_lot_released(q: KitQuarantine, session: Session, actor: Actor) -> str | None:
    """A quarantine is lifted only when every lot inside its kits is released again."""
    return lot_still_under_investigation(session, actor, q)


_Q = Transition[QuarantineState]
_OPEN = frozenset({QuarantineState.open})
# A kit quarantine's lifecycle: open until QA decides, signed, to lift it (its kits back to where
# they were) or to withdraw its kits for good. The kits move by kits.MOVES "lift_quarantine" and
# "withdraw" in the same transaction.
MOVES: dict[str, _Q] = {
    "lift": _Q(_OPEN, QuarantineState.lifted, frozenset(DECIDERS), guards=(every_lot_released,),
               signature=Meaning.released, needs_reason=True),
    "withdraw": _Q(_OPEN, QuarantineState.withdrawn, frozenset(DECIDERS), signature=Meaning.rejected,
                   needs_reason=True),
}
MACHINE: Machine[KitQuarantine, QuarantineState] = Machine(
    "kit quarantine", lambda q: QuarantineState(q.state), MOVES)
KIT_MOVES = {"lift": "lift_quarantine", "withdraw": "withdraw"}  # what each decision does to the kits


def allowed_decisions(q: KitQuarantine, actor: Actor) -> list[str]:
    """The decisions the table allows this actor on this quarantine now: what pages offer."""
    return MACHINE.allowed(q, actor.roles)


def _may_take(kit: Kit) -> bool:
    return KitState(kit.state) in QUARANTINABLE and kits.not_in_a_kit_quarantine(kit) is None


@signatures.content_rule("kit_quarantine")
def _content(session: Session, quarantine_id: str) -> dict:
    q = session.get(KitQuarantine, int(quarantine_id))
    if q is None:
        raise NotFound("No such kit quarantine.")
    lot = session.get(Lot, q.lot_id) if q.lot_id else None
    return {"number": q.number, "cause": q.cause, "lot": lot.number if lot else None, "policy": q.policy,
            "reason": q.reason, "kits": members(session, q), "state": q.state, "closure_reason": q.closure_reason}


def members(session: Session, q: KitQuarantine) -> list[str]:
    return list(session.scalars(select(col(Kit.number))
                                .join(KitQuarantineKit, col(KitQuarantineKit.kit_id) == col(Kit.id))
                                .where(col(KitQuarantineKit.quarantine_id) == q.id).order_by(col(Kit.number))))


def _number(session: Session) -> str:
    prefix = f"KQ-{utcnow():%Y}-"
    last = session.scalar(select(func.max(col(KitQuarantine.number)))
                          .where(col(KitQuarantine.number).like(prefix + "%")))
    return f"{prefix}{(int(last.rsplit('-', 1)[1]) if last else 0) + 1:04d}"


def _places(session: Session, kits_: list[Kit]) -> dict[int, tuple]:
    """Where each kit is held, as the people there would see the hold: a site's stock (its
    pharmacist sees which kits became unavailable), a shipment on its way (the receiving pharmacist
    sees which of its kits arrive held), or the cell bench."""
    on_the_way = [saved_id(kit) for kit in kits_ if travelling(kit)]
    rows = session.execute(select(col(ShipmentKit.kit_id), col(ShipmentKit.shipment_id))
                           .where(col(ShipmentKit.kit_id).in_(on_the_way), col(ShipmentKit.received_at).is_(None)))
    shipment_of: dict[int, int] = {row[0]: row[1] for row in rows}
    return {saved_id(kit): ("shipment", shipment_of.get(saved_id(kit))) if travelling(kit)
            else ("site", kit.site_id) if kit.site_id else ("cell bench",) for kit in kits_}


def choose_kits(session: Session, actor: Actor, affected: list[Kit], policy: str) -> list[Kit]:
    """The affected kits and their companions, blinded lot by blinded lot and, within one, place by
    place (_places). "proportionate": wherever kits of one arm are held, kits of every other arm at
    the same place and in the same blinded lot are held in the same proportion, rounded up, so that
    a hold seen anywhere holds both arms whenever the other arm has kits there."""
    chosen: dict[int, Kit] = {saved_id(kit): kit for kit in affected}
    for blinded_lot_id in sorted({kit.blinded_lot_id for kit in affected if kit.blinded_lot_id}):
        held_here = select(Kit).where(col(Kit.blinded_lot_id) == blinded_lot_id,
                                      col(Kit.state).in_([s.value for s in QUARANTINABLE]))
        pool = [kit for kit in session.scalars(held_here.order_by(col(Kit.number))) if _may_take(kit)]
        if policy == "blinded_lot":
            chosen.update((saved_id(kit), kit) for kit in pool)
            continue
        arms = sealed.arms_of_kits(session, actor, [saved_id(kit) for kit in pool] + list(chosen), why="quarantine")
        place = _places(session, pool)
        hit = {saved_id(kit) for kit in affected if kit.blinded_lot_id == blinded_lot_id}
        by_place: dict[tuple, dict[str, list[Kit]]] = defaultdict(lambda: defaultdict(list))
        for kit in pool:
            by_place[place[saved_id(kit)]][arms[saved_id(kit)]].append(kit)
        for by_arm in by_place.values():
            for arm, wanted in _companions_wanted(by_arm, hit).items():
                free = [kit for kit in by_arm[arm] if saved_id(kit) not in chosen]
                chosen.update((saved_id(kit), kit) for kit in _random.sample(free, min(len(free), wanted)))
    return sorted(chosen.values(), key=lambda kit: kit.number)


def _companions_wanted(by_arm: dict[str, list[Kit]], hit: set[int]) -> dict[str, int]:
    """At one place, how many kits of each arm join the hold: for each arm with affected kits there,
    the same fraction of every other arm's kits there, rounded up (one affected kit among many of
    its arm still takes one companion); the largest such number per arm."""
    wanted: dict[str, int] = defaultdict(int)
    for hit_arm, arm_kits in by_arm.items():
        share = sum(saved_id(kit) in hit for kit in arm_kits) / len(arm_kits)
        for arm, others in by_arm.items():
            if arm != hit_arm and share:
                wanted[arm] = max(wanted[arm], math.ceil(share * len(others)))
    return dict(wanted)


def quarantine_lot(session: Session, actor: Actor, lot: Lot, *, cause: str, reason: str,
                   policy: str | None = None) -> list[KitQuarantine]:
    """Quarantine the lot's kits that can still be, blind kept; one record per study."""
    if cause not in CAUSES:
        raise InvalidInput(f"Unknown cause '{cause}'.", field="cause")
    affected = [kit for kit in sealed.kits_containing_lot(session, actor, lot, why=CAUSES[cause]) if _may_take(kit)]
    opened = []
    for study_id in sorted({kit.study_id for kit in affected}):
        study = studies.by_id(session, study_id)
        chosen_policy = (policy or study.quarantine_policy).strip()
        if chosen_policy not in studies.QUARANTINE_POLICIES:
            raise InvalidInput(f"Choose a policy: {', '.join(studies.QUARANTINE_POLICIES)}.", field="policy")
        chosen = choose_kits(session, actor, [k for k in affected if k.study_id == study_id], chosen_policy)
        q = KitQuarantine(number=_number(session), study_id=study_id, cause=cause, lot_id=lot.id, policy=chosen_policy,
                          reason=reason, kit_count=len(chosen), opened_by=kits.maker_id(actor), opened_at=utcnow())
        session.add(q)
        session.flush()
        audit.record(session, actor, "kit quarantine opened", "kit_quarantine", q.number,
                     new={"cause": cause, "lot": lot.number, "policy": chosen_policy, "kits": len(chosen),
                          "study": study.code}, reason=reason, visibility=Visibility.unblinded)
        kits.move_many(session, actor, chosen, "quarantine", reason=kits.GENERIC_QUARANTINE_REASON, quarantine_id=q.id)
        session.execute(insert(KitQuarantineKit), [{"quarantine_id": q.id, "kit_id": kit.id} for kit in chosen])
        notifications.kits_quarantined(session, actor, study=study, number=q.number, cause=CAUSES[cause],
                                       lot=lot.number, policy=chosen_policy, reason=reason, kits=chosen)
        opened.append(q)
    return opened


def open_manual(session: Session, actor: Actor, lot: Lot, policy: str | None,
                reason: str | None) -> list[KitQuarantine]:
    users.require_role(actor, *OPENERS)
    reason = audit.require_reason(reason)
    opened = quarantine_lot(session, actor, lot, cause="manual", reason=reason, policy=policy or None)
    if not opened:
        raise InvalidInput(f"Lot {lot.number} has no kits that can be quarantined.", field="lot")
    return opened


def _after_post_certification_oos(session: Session, actor: Actor, lot: Lot, result: QcResult) -> None:
    quarantine_lot(session, actor, lot, cause="post_release_oos",
                   reason=f"{result.test_code} out of specification (QC result #{result.id}) on lot {lot.number}")


qc.POST_CERTIFICATION_OOS_HOOKS.append(_after_post_certification_oos)


def lot_still_under_investigation(session: Session, actor: Actor, q: KitQuarantine) -> str | None:
    """A quarantine is lifted only when every lot inside its kits is released again."""
    held = [saved_id(kit) for kit in session.scalars(select(Kit).where(col(Kit.quarantine_id) == q.id,
                                                                     col(Kit.state) == KitState.quarantined.value))]
    blocking = sorted({lot.number for lot in sealed.lots_of_kits(session, actor, held, why="lift quarantine")
                       if LotState(lot.state) is not LotState.released})
    if not blocking:
        return None
    many = len(blocking) > 1
    return f"Lot{'s' if many else ''} {', '.join(blocking)} {'are' if many else 'is'} not released."


def _close(session: Session, user: User, actor: Actor, q: KitQuarantine, decision: str, reason: str | None,
           password: str | None, signature_id: int | None = None) -> None:
    claim(session, q)  # two QA deciding at once: the second finds it decided (one signature)
    if MACHINE.state_refusal(q, decision):
        raise InvalidInput(f"Quarantine {q.number} is already {q.state}.", field="quarantine")
    reason = audit.require_reason(reason)
    if why := MACHINE.role_refusal(decision, actor.roles):
        raise Forbidden(why)
    # the guards once (the lots' check is a logged read of the compartment), by the machine's parts
    if blocking := MACHINE.guard_refusals(q, decision, session, actor):
        raise InvalidInput(f"Not yet: {blocking[0]}", field="quarantine")
    move = MACHINE.transition(decision)
    state = MACHINE.target(q, decision).value
    # still held by it: a member since withdrawn with its rejected shipment, lost or damaged stays so
    held = list(session.scalars(select(Kit).where(col(Kit.quarantine_id) == q.id,
                                                  col(Kit.state) == KitState.quarantined.value)
                                .order_by(col(Kit.number))))
    q.state, q.closed_at, q.closure_reason = state, utcnow(), reason
    session.flush()
    if signature_id is None:
        assert move.signature is not None, "a quarantine decision is signed"
        signature_id = signatures.sign(session, user, password or "", move.signature, "kit_quarantine", str(q.id),
                                       reason=reason, visibility=Visibility.unblinded).id
    q.closure_signature_id = signature_id
    audit.record(session, actor, f"kit quarantine {state}", "kit_quarantine", q.number, field="state", old="open",
                 new=state, reason=reason, visibility=Visibility.unblinded)
    # what the kits' own histories say, blinded people included: no number that ties them together
    kit_reason = "quality review completed" if decision == "lift" else "withdrawn after a quality review"
    kits.move_many(session, actor, held, KIT_MOVES[decision], reason=kit_reason)
    session.flush()


def lift(session: Session, user: User, q: KitQuarantine, reason: str | None, password: str | None) -> None:
    actor = users.actor(session, user)
    users.require_role(actor, *DECIDERS)
    _close(session, user, actor, q, "lift", reason, password)


def withdraw(session: Session, user: User, q: KitQuarantine, reason: str | None, password: str | None) -> None:
    actor = users.actor(session, user)
    users.require_role(actor, *DECIDERS)
    _close(session, user, actor, q, "withdraw", reason, password)


def after_lot_quarantine_lifted(session: Session, user: User, actor: Actor, lot: Lot,
                                signature_id: int | None) -> None:
    """The lot's own quarantine lifted (QA, signed): the kit quarantines it caused end with it."""
    for q in session.scalars(select(KitQuarantine).where(col(KitQuarantine.lot_id) == lot.id,
                                                         col(KitQuarantine.state) == QuarantineState.open.value,
                                                         col(KitQuarantine.cause) == "lot_quarantine")):
        _close(session, user, actor, q, "lift", f"lot {lot.number} released from quarantine", None, signature_id)


def by_number(session: Session, number: str) -> KitQuarantine:
    q = session.scalars(select(KitQuarantine).where(col(KitQuarantine.number) == (number or "").strip())).first()
    if q is None:
        raise NotFound(f"No kit quarantine '{number}'.", field="quarantine")
    return q


def quarantines(session: Session, state: str | None = None) -> list[KitQuarantine]:
    query = select(KitQuarantine).order_by(col(KitQuarantine.id).desc())
    if state:
        query = query.where(col(KitQuarantine.state) == state)
    return list(session.scalars(query))
