"""Stock by arm, for resupply (supply/resupply): a site's usable kits of each arm, the kits of
each arm on their way to it, the arms of the participants whose visits are due there, and the
kits of each arm at the cell bench that a shipment could take. One logged read per evaluation,
whoever runs it (the supply manager, or the resupply trigger acting for supply)."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import func, select
from sqlmodel import Session, col

from ..audit import Actor
from ..models import BlindedLot, Kit, KitState, SealedKitArm, Shipment, ShipmentKit, Study
from ..sealing import SHORTAGE_HANDLERS
from .walls import _arm_of_number, _read

# Kits that will be at the site's disposal without a further shipment: packed for it, travelling
# to it, or arrived and awaiting their final release (two-step release).
_ON_THEIR_WAY = (KitState.released, KitState.awaiting_release, KitState.in_transit,
                 KitState.transit_awaiting_release)
_OPEN_SHIPMENTS = ("packing", "in_transit")


@dataclass(frozen=True)
class BenchKit:
    """A kit at the cell bench a shipment could take: its id, number and blinded expiry."""

    id: int
    number: str
    expiry: date


@dataclass
class ArmStock:
    at_site: int = 0  # usable now: in stock at the site, not held, in date through the day asked
    on_the_way: int = 0  # packed for the site, travelling, or at the site awaiting final release
    due: list[str] = field(default_factory=list)  # randomisation numbers of the due visits of this arm
    candidates: list[BenchKit] = field(default_factory=list)  # at the bench, earliest expiry first


def site_stock(session: Session, actor: Actor, study: Study, site_id: int, *, usable_through: date,
               ship_through: date, due: Sequence[str] = (), exclude: Iterable[int] = ()) -> dict[str, ArmStock]:
    """Per arm code: the site's usable kits (in date through `usable_through`), its kits on their
    way, which of the `due` participants (randomisation numbers) are on that arm, and the released
    kits at the cell bench in date through `ship_through` (not held, not packed, none in `exclude`,
    such as kits another proposal picked), earliest expiry first. For supply only, logged."""
    _read(session, actor, SHORTAGE_HANDLERS, "stock by arm for resupply", f"{study.code} site #{site_id}")
    stock: dict[str, ArmStock] = defaultdict(ArmStock)
    armed = (select(col(SealedKitArm.arm), func.count()).select_from(Kit)
             .join(SealedKitArm, col(SealedKitArm.kit_id) == col(Kit.id))
             .join(BlindedLot, col(BlindedLot.id) == col(Kit.blinded_lot_id))
             .where(col(Kit.study_id) == study.id))
    usable = armed.where(col(Kit.site_id) == site_id, col(Kit.state) == KitState.at_site,
                         col(Kit.quarantine_id).is_(None), col(BlindedLot.expiry) >= usable_through)
    for arm, count in session.execute(usable.group_by(col(SealedKitArm.arm))):
        stock[arm].at_site = count
    waiting = armed.where(col(Kit.site_id) == site_id, col(Kit.state) == KitState.site_awaiting_release)
    for arm, count in session.execute(waiting.group_by(col(SealedKitArm.arm))):
        stock[arm].on_the_way += count
    shipped = (armed.join(ShipmentKit, col(ShipmentKit.kit_id) == col(Kit.id))
               .join(Shipment, col(Shipment.id) == col(ShipmentKit.shipment_id))
               .where(col(Shipment.site_id) == site_id, col(Shipment.state).in_(_OPEN_SHIPMENTS),
                      col(Kit.state).in_([state.value for state in _ON_THEIR_WAY])))
    for arm, count in session.execute(shipped.group_by(col(SealedKitArm.arm))):
        stock[arm].on_the_way += count
    for number in due:
        arm = _arm_of_number(session, study, number)
        if arm is not None:
            stock[arm].due.append(number)
    packed = select(col(ShipmentKit.kit_id)).join(Shipment, col(Shipment.id) == col(ShipmentKit.shipment_id)).where(
        col(Shipment.state) == "packing")
    bench = (select(col(Kit.id), col(Kit.number), col(BlindedLot.expiry), col(SealedKitArm.arm)).select_from(Kit)
             .join(SealedKitArm, col(SealedKitArm.kit_id) == col(Kit.id))
             .join(BlindedLot, col(BlindedLot.id) == col(Kit.blinded_lot_id))
             .where(col(Kit.study_id) == study.id, col(Kit.site_id).is_(None), col(Kit.state) == KitState.released,
                    col(Kit.quarantine_id).is_(None), col(BlindedLot.expiry) >= ship_through,
                    col(Kit.id).not_in(packed)))
    left_out = set(exclude)
    for kit_id, number, expiry, arm in session.execute(bench):
        if kit_id not in left_out:
            stock[arm].candidates.append(BenchKit(kit_id, number, expiry))
    for arm_stock in stock.values():
        arm_stock.candidates.sort(key=lambda kit: (kit.expiry, kit.number))
    return dict(stock)
