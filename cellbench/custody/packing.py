"""Shipments out of the cell bench: created for one site of one study, packed by scanning
released kits (finally, or for shipment under quarantine), and dispatched in a sealed dry shipper
with a temperature logger. A kit whose blinded lot would expire too soon is refused at packing and
again at dispatch, by one rule (kit_in_date_to_ship), in words that are the same for both arms."""
from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from .. import audit, clock, inputs, kits, notifications, studies, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput
from ..models import BlindedLot, Kit, KitState, Shipment, ShipmentKit, Site, Study, StudySite
from .events import claim_kit, fetch, key, move_kits, person, record
from .lifecycle import IN_TRANSIT, OPEN, PACKING, SHIPPERS, check, claim, version
from .reading import kits_of
from .storage import site_by_code


def _next_number(session: Session) -> str:
    prefix = f"SH-{utcnow():%Y}-"
    last = session.scalar(select(func.max(col(Shipment.number))).where(col(Shipment.number).like(prefix + "%")))
    return f"{prefix}{(int(last.rsplit('-', 1)[1]) if last else 0) + 1:04d}"


def create(session: Session, actor: Actor, study_code: str | None, site_code: str | None) -> Shipment:
    """A new, empty shipment from the cell bench to one site of one study."""
    users.require_role(actor, *SHIPPERS)
    study = studies.by_code(session, study_code)
    site = site_by_code(session, site_code)
    if session.get(StudySite, (study.id, site.id)) is None:
        raise InvalidInput(f"{site.code} is not a site of {study.code}.", field="site")
    for _attempt in range(5):  # two supply managers creating at once would pick the same number
        shipment = Shipment(number=_next_number(session), study_id=key(study), site_id=key(site), state=PACKING,
                            created_by=person(actor), created_at=utcnow())
        try:
            with session.begin_nested():
                session.add(shipment)
                session.flush()
            break
        except IntegrityError:
            continue
    else:
        raise Conflict("Another shipment was created at the same moment. Try again.", field="shipment")
    audit.record(session, actor, "shipment created", "shipment", shipment.number,
                 new={"study": study.code, "site": site.code})
    return shipment


def _open_shipment_of(session: Session, kit: Kit) -> str | None:
    return session.scalar(select(col(Shipment.number))
                          .join(ShipmentKit, col(ShipmentKit.shipment_id) == col(Shipment.id))
                          .where(col(ShipmentKit.kit_id) == kit.id, col(Shipment.state).in_(sorted(OPEN))))


# A kit may travel released, or released for shipment under quarantine (two-step release): it
# then travels and arrives awaiting final release, both arms alike.
SHIPPABLE = kits.MOVES["ship"].sources | kits.MOVES[kits.AWAITING_TWIN["ship"]].sources


def kit_in_date_to_ship(session: Session, kit: Kit, dispatch_day: date) -> str | None:
    """Do-not-ship: the kit's blinded lot (the earliest expiry of every lot in it, both arms) must
    stay in date for the transit, the study's do-not-ship days and the longest visit window the kit
    may serve, counted from the day it is dispatched."""
    blinded = session.get(BlindedLot, kit.blinded_lot_id) if kit.blinded_lot_id else None
    if blinded is None:
        return None  # not packaged: its state refuses it
    study = fetch(session, Study, kit.study_id, "study")
    supply, window = studies.definition(study).supply, studies.longest_visit_window_days(study)
    last_day = blinded.expiry - timedelta(days=supply.transit_days + supply.do_not_ship_days + window)
    if dispatch_day <= last_day:
        return None
    return (f"Kit {kit.number} must not be shipped after {last_day.isoformat()}: its blinded lot {blinded.code} "
            f"expires on {blinded.expiry.isoformat()}, before {dispatch_day.isoformat()} + {supply.transit_days} "
            f"days' transit + {supply.do_not_ship_days} do-not-ship days + the {window}-day visit window it may "
            "serve.")


def kit_may_be_packed(session: Session, shipment: Shipment, kit: Kit) -> str | None:
    """Why this kit cannot go into this shipment, or None."""
    if kit.study_id != shipment.study_id:
        return (f"Kit {kit.number} is a kit of {fetch(session, Study, kit.study_id, 'study').code}; "
                f"shipment {shipment.number} is for {fetch(session, Study, shipment.study_id, 'study').code}.")
    if (other := _open_shipment_of(session, kit)) is not None:
        where = "this shipment" if other == shipment.number else f"shipment {other}"
        return f"Kit {kit.number} is already packed in {where}."
    if KitState(kit.state) not in SHIPPABLE:
        return f"Kit {kit.number} is {kits.state_label(kit.state).lower()}: only released kits can be packed."
    if kit.site_id is not None:
        return f"Kit {kit.number} is not at the cell bench ({kit.location})."
    return kit_in_date_to_ship(session, kit, clock.today())


def pack(session: Session, actor: Actor, shipment: Shipment, code: str | None, secret_key: str) -> Kit:
    """The supply manager scans a kit's label into the shipment. Only a label scan: the bench prints
    labels, so a kit whose label does not scan is relabelled, never typed in (kits.codes)."""
    check(actor, shipment, "pack")
    return pack_kit(session, actor, shipment, kits.scan(session, code, secret_key, manual_allowed=False))


def pack_kit(session: Session, actor: Actor, shipment: Shipment, kit: Kit, *, field: str = "code") -> Kit:
    """A kit into the shipment, by the same rules as a scan (an accepted resupply proposal's kits)."""
    check(actor, shipment, "pack")
    if why := kit_may_be_packed(session, shipment, kit):
        raise InvalidInput(why, field=field)
    claim(session, shipment)
    check(actor, shipment, "pack")  # re-read: it may have been dispatched meanwhile
    claim_kit(session, kit)
    session.add(ShipmentKit(shipment_id=key(shipment), kit_id=key(kit), packed_at=utcnow()))
    session.flush()
    audit.record(session, actor, "kit packed", "shipment", shipment.number, field="kits", new=kit.number)
    record(session, actor, kit, "packed", from_place=kit.location, to_place=f"Shipment {shipment.number}",
           shipment_id=shipment.id)
    session.flush()
    return kit


def unpack(session: Session, actor: Actor, shipment: Shipment, kit_number: str | None) -> Kit:
    check(actor, shipment, "unpack")
    kit = kits.by_number(session, kit_number, field="kit_number")
    link = session.get(ShipmentKit, (shipment.id, kit.id))
    if link is None:
        raise InvalidInput(f"Kit {kit.number} is not packed in shipment {shipment.number}.", field="kit_number")
    claim(session, shipment)
    check(actor, shipment, "unpack")
    claim_kit(session, kit, field="kit_number")
    session.delete(link)
    session.flush()
    audit.record(session, actor, "kit unpacked", "shipment", shipment.number, field="kits", old=kit.number)
    record(session, actor, kit, "unpacked", from_place=f"Shipment {shipment.number}", to_place=kit.location,
           shipment_id=shipment.id)
    session.flush()
    return kit


def dispatch(session: Session, actor: Actor, shipment: Shipment, *, shipper_id: str | None,
             seal_number: str | None, logger_id: str | None, seen_version: int | str | None = None) -> None:
    """Close the dry shipper: its id, the seal and the logger are recorded, every kit goes in transit."""
    check(actor, shipment, "dispatch")
    values = {"shipper_id": shipper_id, "seal_number": seal_number, "logger_id": logger_id}
    names = {"shipper_id": "dry-shipper id", "seal_number": "seal number", "logger_id": "temperature logger id"}
    missing = [name for name, value in values.items() if not (value or "").strip()]
    if missing:
        listed = [names[m] for m in missing]
        words = listed[0] if len(listed) == 1 else f"{', '.join(listed[:-1])} and {listed[-1]}"
        raise InvalidInput(f"Enter the {words}.", field=missing[0])
    cleaned = {name: inputs.text(value, name, names[name], 64) for name, value in values.items()}
    claim(session, shipment, version(seen_version, "shipment_version"))
    check(actor, shipment, "dispatch")
    packed = kits_of(session, shipment)
    if not packed:
        raise InvalidInput(f"Shipment {shipment.number} has no kits. Scan kits into it first.", field="code")
    today = clock.today()
    for kit in packed:
        if KitState(kit.state) not in SHIPPABLE:
            raise InvalidInput(f"Kit {kit.number} is now {kits.state_label(kit.state).lower()}: unpack it before "
                               "dispatch.", field="code")
        if why := kit_in_date_to_ship(session, kit, today):
            raise InvalidInput(f"{why} Unpack it before dispatch.", field="code")
    site = fetch(session, Site, shipment.site_id, "site")
    now = utcnow()
    shipment.shipper_id, shipment.seal_number, shipment.logger_id = (
        cleaned["shipper_id"], cleaned["seal_number"], cleaned["logger_id"])
    shipment.dispatched_by, shipment.dispatched_at, shipment.state = actor.user_id, now, IN_TRANSIT
    session.flush()
    audit.record(session, actor, "shipment dispatched", "shipment", shipment.number, field="state",
                 old=PACKING, new=IN_TRANSIT)
    audit.record(session, actor, "shipment sealed", "shipment", shipment.number, field="dispatch",
                 new={**cleaned, "kits": len(packed), "to": site.code})
    condition = f"dry shipper {shipment.shipper_id}, seal {shipment.seal_number}, logger {shipment.logger_id}"
    to_place = f"In transit · {shipment.number}"
    # out of the bench's tank (the "ship" move clears the storage location), into the dry shipper
    move_kits(session, actor, packed, "ship", reason=f"dispatched in shipment {shipment.number} to {site.code}",
               place=to_place, action="dispatched", to_place=f"{to_place} to {site.code}", shipment_id=shipment.id,
               condition=condition)
    session.flush()
    notifications.shipment_dispatched(session, actor, shipment, site, len(packed))
