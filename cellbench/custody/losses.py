"""Losses and damage: a damaged kit at the site or the bench, and a shipment that never arrived."""
from __future__ import annotations

from sqlmodel import Session

from .. import audit, kits, users
from ..audit import Actor
from ..errors import InvalidInput
from ..models import Kit, Shipment
from .events import record, travelling
from .lifecycle import DAMAGE_REPORTERS, IN_TRANSIT, LOST, check, claim, version
from .reading import kits_of, progress


def report_damaged(session: Session, actor: Actor, kit: Kit, reason: str | None, *,
                   seen_version: int | None = None) -> None:
    """A damaged kit, at the site or at the bench (in transit too, if the courier reports it)."""
    users.require_role(actor, *DAMAGE_REPORTERS)
    users.require_scope(actor, kit.site_id, kit.study_id, field="code")
    reason = audit.require_reason(reason)
    place = kit.location
    kits.move(session, actor, kit, "damage", reason=reason, seen_version=seen_version)
    record(session, actor, kit, "damaged", from_place=place, to_place=place, condition=reason[:200])
    session.flush()


def report_lost(session: Session, actor: Actor, shipment: Shipment, reason: str | None, *,
                seen_version: int | str | None = None) -> None:
    """The shipment never arrived: it and every kit still in transit in it are lost."""
    check(actor, shipment, "report_lost")
    reason = audit.require_reason(reason)
    claim(session, shipment, version(seen_version, "shipment_version"))
    check(actor, shipment, "report_lost")
    scanned, _total = progress(session, shipment)
    if scanned:
        raise InvalidInput(f"{scanned} kits of shipment {shipment.number} have been scanned at the site: it "
                           "arrived. The pharmacist completes the receipt and records any kit missing.",
                           field="shipment")
    shipment.state = LOST
    session.flush()
    audit.record(session, actor, "shipment lost", "shipment", shipment.number, field="state", old=IN_TRANSIT,
                 new=LOST, reason=reason)
    # held kits too: a kit quarantined while in the shipper is lost with it
    for kit in [kit for kit in kits_of(session, shipment) if travelling(kit)]:
        kits.move(session, actor, kit, "lose", reason=f"shipment {shipment.number} lost in transit: {reason}")
        record(session, actor, kit, "lost in transit", from_place=kit.location, to_place=None,
               shipment_id=shipment.id, condition=reason[:200])
    session.flush()
