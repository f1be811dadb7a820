"""Chain of custody: every hand-over or move of a kit (from, to, who, when, condition), storage
locations at the cell bench and the sites, and shipments from the cell bench to a site pharmacy.

Custody events are the readable chain of a kit; the audit trail holds the same changes, hashed.
Nothing here knows an arm: shipments and receipts treat active and placebo kits alike, and a
failed receipt check holds the whole shipment, both arms, never a chosen part of it. This module
never imports the sealed compartment or anything built on it (blinded pharmacists and monitors
read every shipment page).

A shipment moves packing -> in_transit -> received | quarantined (-> received | rejected), or
in_transit -> lost; `MOVES` is its one table. The receipt scan (`receipt_scan`) is the site's
hot path and is written like scanning.scan: prebuilt statements, no ORM objects.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from .. import audit, deviations, kits, signatures, studies, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from ..models import (
    BlindedLot,
    CustodyEvent,
    Kit,
    KitState,
    LoggerReading,
    Meaning,
    Role,
    Shipment,
    ShipmentKit,
    Signature,
    Site,
    StorageLocation,
    Study,
    StudySite,
    User,
    utc_text,
)
from . import scanning

CELL_BENCH = "Cell bench"

SHIPPERS = frozenset({Role.supply_manager})
RECEIVERS = frozenset({Role.pharmacist})
ASSESSORS = frozenset({Role.qa})
READERS = frozenset({Role.supply_manager, Role.qa, Role.pharmacist, Role.monitor})
DAMAGE_REPORTERS = frozenset({Role.pharmacist, Role.supply_manager})
KEEPERS = frozenset({Role.supply_manager, Role.pharmacist})  # storage locations

# Above this, cryopreserved cells risk warming past the glass transition (reference §6).
ALARM_LIMIT_C = -150.0
# A charged dry shipper holds < -150 °C for about a week; a longer transit is not covered.
VALIDATED_HOLD = timedelta(days=7)
MAX_LOGGER_LINES = 100_000
PLAUSIBLE_C = (-273.15, 80.0)

PACKING, IN_TRANSIT, RECEIVED, QUARANTINED, REJECTED, LOST = (
    "packing", "in_transit", "received", "quarantined", "rejected", "lost")
STATE_LABELS = {
    PACKING: "Being packed",
    IN_TRANSIT: "In transit",
    RECEIVED: "Received",
    QUARANTINED: "Quarantined on receipt, awaiting QA",
    REJECTED: "Rejected by QA",
    LOST: "Lost in transit",
}
OPEN = frozenset({PACKING, IN_TRANSIT})
LOGGER_SOURCES = ("csv", "manual", "missing")
DECISIONS = {"accept": ("accepted", RECEIVED, "lift_quarantine", Meaning.released),
             "reject": ("rejected", REJECTED, "withdraw", Meaning.rejected)}


@dataclass(frozen=True)
class Step:
    sources: frozenset[str]
    roles: frozenset[Role]
    label: str


# The shipment state machine: what may happen in which state, and who may do it.
MOVES: dict[str, Step] = {
    "pack": Step(frozenset({PACKING}), SHIPPERS, "pack kits into a shipment"),
    "unpack": Step(frozenset({PACKING}), SHIPPERS, "take kits out of a shipment"),
    "dispatch": Step(frozenset({PACKING}), SHIPPERS, "dispatch a shipment"),
    "report_lost": Step(frozenset({IN_TRANSIT}), SHIPPERS, "report a shipment lost"),
    "scan_receipt": Step(frozenset({IN_TRANSIT}), RECEIVERS, "scan kits into a receipt"),
    "complete_receipt": Step(frozenset({IN_TRANSIT}), RECEIVERS, "complete a receipt"),
    "accept": Step(frozenset({QUARANTINED}), ASSESSORS, "accept a held shipment"),
    "reject": Step(frozenset({QUARANTINED}), ASSESSORS, "reject a held shipment"),
}


def state_label(state: str) -> str:
    return STATE_LABELS.get(state, state)


def allowed_actions(shipment: Shipment, actor: Actor) -> list[str]:
    return [name for name, step in MOVES.items() if shipment.state in step.sources and actor.roles & step.roles]


def _authorise(actor: Actor, shipment: Shipment | None, name: str, *, state: str | None = None,
               number: str | None = None) -> None:
    step = MOVES[name]
    if not actor.roles & step.roles:
        who = " or ".join(sorted(r.value.replace("_", " ") for r in step.roles))
        raise Forbidden(f"Only the {who} may {step.label}.")
    state = shipment.state if shipment is not None else state
    if state not in step.sources:
        raise InvalidInput(f"Shipment {shipment.number if shipment else number} is {state_label(state).lower()}: "
                           f"you cannot {step.label} now.", field="shipment")


def record(session: Session, actor: Actor, kit: Kit, action: str, *, from_place: str | None = None,
           to_place: str | None = None, shipment_id: int | None = None, condition: str | None = None) -> CustodyEvent:
    """One link of the kit's chain, in the caller's transaction (next to the kit move's audit event)."""
    event = CustodyEvent(kit_id=kit.id, action=action, from_place=from_place, to_place=to_place,
                         shipment_id=shipment_id, by_user=actor.user_id, by_name=actor.name, at=utcnow(),
                         condition=condition)
    session.add(event)
    return event


def chain(session: Session, kit: Kit) -> list[CustodyEvent]:
    """The kit's custody events, oldest first."""
    return list(session.scalars(select(CustodyEvent).where(CustodyEvent.kit_id == kit.id).order_by(CustodyEvent.id)))


# --- small shared helpers ------------------------------------------------------------------------


def _text(value: str | None, field: str, what: str, *, max_length: int = 64, required: bool = True) -> str | None:
    value = (value or "").strip()
    if not value:
        if required:
            raise InvalidInput(f"Enter the {what}.", field=field)
        return None
    if len(value) > max_length:
        raise InvalidInput(f"The {what} is longer than {max_length} characters.", field=field)
    return value


def _version(value: int | str | None, field: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidInput("This form is damaged; reload the page.", field=field) from None


def _claim_kit(session: Session, kit: Kit, seen_version: int | None = None, *, field: str = "code") -> None:
    """Take the kit for this transaction: a second person acting on it at once gets a conflict."""
    expected = kit.row_version if seen_version is None else seen_version
    changed = session.execute(update(Kit).where(Kit.id == kit.id, Kit.row_version == expected)
                              .values(row_version=Kit.row_version + 1))
    if changed.rowcount != 1:
        raise Conflict(f"Someone else acted on kit {kit.number} at the same moment. Reload and check it.", field=field)
    session.refresh(kit)


def _claim(session: Session, shipment: Shipment, seen_version: int | None = None) -> None:
    """Take the shipment for this transaction (optimistic: row_version), then re-read it."""
    expected = shipment.row_version if seen_version is None else seen_version
    changed = session.execute(update(Shipment).where(Shipment.id == shipment.id, Shipment.row_version == expected)
                              .values(row_version=Shipment.row_version + 1))
    if changed.rowcount != 1:
        raise Conflict(f"Shipment {shipment.number} was changed by someone else a moment ago. Reload it and check.",
                       field="shipment_version")
    session.refresh(shipment)


def _relocate(session: Session, actor: Actor, kit: Kit, place: str) -> None:
    place = place[:100]
    if kit.location != place:
        old, kit.location = kit.location, place
        session.flush()
        audit.record(session, actor, "kit moved", "kit", kit.number, field="location", old=old, new=place)


def _move_kits(session: Session, actor: Actor, moving: list[Kit], move: str, *, reason: str, place: str,
               action: str, to_place: str | None = None, shipment_id: int | None = None,
               condition: str | None = None, also: dict | None = None) -> None:
    """Kits of one shipment moving together: the state (kits.move_many: each kit checked, one
    audit event each), the new place (audited like _relocate), and a custody link each."""
    if not moving:
        return
    place = place[:100]
    came_from = {kit.id: kit.location for kit in moving}
    kits.move_many(session, actor, moving, move, reason=reason, also={**(also or {}), "location": place})
    for kit in moving:
        if came_from[kit.id] != place:
            audit.record(session, actor, "kit moved", "kit", kit.number, field="location", old=came_from[kit.id],
                         new=place)
        record(session, actor, kit, action, from_place=came_from[kit.id], to_place=to_place or place,
               shipment_id=shipment_id, condition=condition[:200] if condition else None)


def travelling(kit: Kit) -> bool:
    """In a shipment on its way: in transit, or held while in transit (its lot was quarantined)."""
    state = KitState(kit.state)
    return state is KitState.in_transit or (state is KitState.quarantined
                                             and kit.state_before_quarantine == KitState.in_transit.value)


def site_by_code(session: Session, code: str | None, *, field: str = "site") -> Site:
    text_ = (code or "").strip().upper()
    if not text_:
        raise InvalidInput("Choose a site.", field=field)
    site = session.scalars(select(Site).where(Site.code == text_)).first()
    if site is None:
        raise NotFound(f"No site '{text_}'.", field=field)
    return site


# --- storage locations ---------------------------------------------------------------------------

LOCATION_KINDS = ("tank", "freezer")
# Where a kit may be put away: states in which it is physically in that place's hands.
STORABLE_AT_BENCH = frozenset({KitState.packaged, KitState.released, KitState.quarantined, KitState.withdrawn,
                               KitState.damaged})
STORABLE_AT_SITE = frozenset({KitState.at_site, KitState.allocated, KitState.quarantined, KitState.withdrawn,
                              KitState.returned, KitState.damaged})


def place_name(session: Session, location: StorageLocation) -> str:
    """How a kit's location reads: 'RH-ENT · Freezer 1', 'Cell bench · Tank 2'."""
    where = session.get(Site, location.site_id).code if location.site_id else CELL_BENCH
    return f"{where} · {location.name}"[:100]


def stored_counts(session: Session) -> dict[int, int]:
    """storage location id -> kits in it now (a dispensed or shipped kit has left its tank)."""
    held = sorted(state.value for state in STORABLE_AT_BENCH | STORABLE_AT_SITE)
    return dict(session.execute(select(Kit.storage_location_id, func.count())
                                .where(Kit.storage_location_id.is_not(None), Kit.state.in_(held))
                                .group_by(Kit.storage_location_id)).all())


def site_pharmacy(site: Site) -> str:
    return f"{site.code} · pharmacy"


def locations(session: Session, site: Site | None, *, everywhere: bool = False) -> list[StorageLocation]:
    """Active storage locations of a site (None: the cell bench), or of every place."""
    query = select(StorageLocation).where(StorageLocation.active.is_(True))
    if not everywhere:
        query = query.where(StorageLocation.site_id.is_(None) if site is None else StorageLocation.site_id == site.id)
    # the cell bench first on every engine (SQLite sorts NULL first, PostgreSQL last)
    return list(session.scalars(query.order_by(StorageLocation.site_id.is_not(None), StorageLocation.site_id,
                                               StorageLocation.code)))


def location_by_code(session: Session, code: str | None, *, field: str = "location") -> StorageLocation:
    text_ = (code or "").strip().upper()
    if not text_:
        raise InvalidInput("Choose a storage location.", field=field)
    row = session.scalars(select(StorageLocation).where(StorageLocation.code == text_)).first()
    if row is None or not row.active:
        raise NotFound(f"No storage location '{text_}'.", field=field)
    return row


def add_location(session: Session, actor: Actor, *, site_code: str | None, code: str | None, name: str | None,
                 kind: str | None) -> StorageLocation:
    """A tank or freezer at the cell bench (site_code empty) or at a site."""
    users.require_role(actor, *KEEPERS)
    site = site_by_code(session, site_code) if (site_code or "").strip() else None
    if site is None and Role.supply_manager not in actor.roles:
        raise Forbidden("Only the supply manager adds storage at the cell bench.")
    code = _text(code, "code", "location code").upper()
    name = _text(name, "name", "location name", max_length=60)
    kind = (kind or "").strip().lower()
    if kind not in LOCATION_KINDS:
        raise InvalidInput(f"Choose a kind: {', '.join(LOCATION_KINDS)}.", field="kind")
    if session.scalars(select(StorageLocation.id).where(StorageLocation.code == code)).first() is not None:
        raise InvalidInput(f"There is already a storage location {code}.", field="code")
    row = StorageLocation(site_id=site.id if site else None, code=code, name=name, kind=kind)
    session.add(row)
    session.flush()
    audit.record(session, actor, "storage location added", "storage_location", code,
                 new={"place": site.code if site else CELL_BENCH, "name": name, "kind": kind})
    return row


def store(session: Session, actor: Actor, kit: Kit, location_code: str | None, *,
          seen_version: int | None = None) -> StorageLocation:
    """Put a kit away in a tank or freezer of the place where it is."""
    location = location_by_code(session, location_code)
    state = KitState(kit.state)
    if location.site_id is None:
        users.require_role(actor, Role.supply_manager)
        if kit.site_id is not None or state not in STORABLE_AT_BENCH:
            raise InvalidInput(f"Kit {kit.number} is not at the cell bench ({kit.location}).", field="code")
    else:
        users.require_role(actor, *RECEIVERS)
        if kit.site_id != location.site_id or state not in STORABLE_AT_SITE:
            site = session.get(Site, location.site_id)
            raise InvalidInput(f"Kit {kit.number} is not in stock at {site.code} ({kit.location}; "
                               f"{kits.state_label(state).lower()}).", field="code")
    if kit.storage_location_id == location.id:
        raise InvalidInput(f"Kit {kit.number} is already in {location.name}.", field="location")
    _claim_kit(session, kit, seen_version)
    old = kit.location
    kit.storage_location_id = location.id
    place = place_name(session, location)
    _relocate(session, actor, kit, place)
    record(session, actor, kit, "stored", from_place=old, to_place=place)
    session.flush()
    return location


def report_damaged(session: Session, actor: Actor, kit: Kit, reason: str | None, *,
                   seen_version: int | None = None) -> None:
    """A damaged kit, at the site or at the bench (in transit too, if the courier reports it)."""
    users.require_role(actor, *DAMAGE_REPORTERS)
    reason = audit.require_reason(reason)
    place = kit.location
    kits.move(session, actor, kit, "damage", reason=reason, seen_version=seen_version)
    record(session, actor, kit, "damaged", from_place=place, to_place=place, condition=reason[:200])
    session.flush()


# --- shipments: reading --------------------------------------------------------------------------


def by_number(session: Session, number: str | None, *, field: str = "shipment") -> Shipment:
    text_ = (number or "").strip().upper()
    row = session.scalars(select(Shipment).where(Shipment.number == text_)).first() if text_ else None
    if row is None:
        raise NotFound(f"No shipment '{text_}'.", field=field)
    return row


def shipments(session: Session, *, state: str | None = None, site: Site | None = None,
              study: Study | None = None) -> list[Shipment]:
    query = select(Shipment)
    if state:
        if state == "open":
            query = query.where(Shipment.state.in_(sorted(OPEN)))
        elif state not in STATE_LABELS:
            raise InvalidInput(f"Unknown shipment state '{state}'.", field="state")
        else:
            query = query.where(Shipment.state == state)
    if site is not None:
        query = query.where(Shipment.site_id == site.id)
    if study is not None:
        query = query.where(Shipment.study_id == study.id)
    return list(session.scalars(query.order_by(Shipment.id.desc())))


def counts_by_state(session: Session) -> dict[str, int]:
    found = dict(session.execute(select(Shipment.state, func.count()).group_by(Shipment.state)).all())
    return {state: found.get(state, 0) for state in STATE_LABELS}


def kit_counts(session: Session, shipment_ids: list[int]) -> dict[int, tuple[int, int]]:
    """shipment id -> (kits, kits scanned at receipt)."""
    if not shipment_ids:
        return {}
    rows = session.execute(select(ShipmentKit.shipment_id, func.count(), func.count(ShipmentKit.received_at))
                           .where(ShipmentKit.shipment_id.in_(shipment_ids)).group_by(ShipmentKit.shipment_id))
    return {sid: (total, scanned) for sid, total, scanned in rows}


@dataclass(frozen=True)
class ManifestLine:
    kit_number: str
    blinded_lot: str | None
    state: str
    state_label: str
    location: str
    packed_at: datetime
    received_at: datetime | None  # scanned at receipt


def manifest(session: Session, shipment: Shipment) -> list[ManifestLine]:
    """The kits of the shipment in kit-number order (random numbers: the order says nothing)."""
    rows = session.execute(select(Kit.number, BlindedLot.code, Kit.state, Kit.location, ShipmentKit.packed_at,
                                  ShipmentKit.received_at)
                           .join(ShipmentKit, ShipmentKit.kit_id == Kit.id)
                           .outerjoin(BlindedLot, BlindedLot.id == Kit.blinded_lot_id)
                           .where(ShipmentKit.shipment_id == shipment.id).order_by(Kit.number))
    return [ManifestLine(number, lot, KitState(state).value, kits.state_label(state), location, packed, received)
            for number, lot, state, location, packed, received in rows]


def kits_of(session: Session, shipment: Shipment) -> list[Kit]:
    return list(session.scalars(select(Kit).join(ShipmentKit, ShipmentKit.kit_id == Kit.id)
                                .where(ShipmentKit.shipment_id == shipment.id).order_by(Kit.number)))


def progress(session: Session, shipment: Shipment) -> tuple[int, int]:
    """(kits scanned at receipt, kits on the manifest)."""
    total, scanned = kit_counts(session, [shipment.id]).get(shipment.id, (0, 0))
    return scanned, total


def reading_count(session: Session, shipment: Shipment) -> int:
    """How many logger readings were uploaded at receipt."""
    return session.scalar(select(func.count()).select_from(LoggerReading)
                          .where(LoggerReading.shipment_id == shipment.id)) or 0


def problems_of(shipment: Shipment) -> list[str]:
    return [p for p in (shipment.receipt_problems or "").split("\n") if p]


def qa_signature(session: Session, shipment: Shipment) -> Signature | None:
    return session.get(Signature, shipment.qa_signature_id) if shipment.qa_signature_id else None


@signatures.content_rule("shipment")
def _signed_content(session: Session, number: str) -> dict:
    """What QA's signed assessment covers: the receipt findings, the kits and the decision. Nothing
    here changes after the decision, so `cellbench verify` can recompute it for good."""
    shipment = by_number(session, number)
    study, site = session.get(Study, shipment.study_id), session.get(Site, shipment.site_id)
    return {"number": shipment.number, "study": study.code, "site": site.code, "shipper_id": shipment.shipper_id,
            "seal_number": shipment.seal_number, "logger_id": shipment.logger_id,
            "dispatched_at": shipment.dispatched_at, "received_at": shipment.received_at,
            "seal_intact": shipment.seal_intact, "logger_source": shipment.logger_source,
            "logger_min": shipment.logger_min, "logger_max": shipment.logger_max,
            "transit_minutes": shipment.transit_minutes, "receipt_problems": problems_of(shipment),
            "kits": [line.kit_number for line in manifest(session, shipment)],
            "decision": shipment.qa_decision, "reason": shipment.qa_reason}


# --- shipments: packing and dispatch ---------------------------------------------------------------


def _next_number(session: Session) -> str:
    prefix = f"SH-{utcnow():%Y}-"
    last = session.scalar(select(func.max(Shipment.number)).where(Shipment.number.like(prefix + "%")))
    return f"{prefix}{(int(last.rsplit('-', 1)[1]) if last else 0) + 1:04d}"


def create(session: Session, actor: Actor, study_code: str | None, site_code: str | None) -> Shipment:
    """A new, empty shipment from the cell bench to one site of one study."""
    users.require_role(actor, *SHIPPERS)
    study = studies.by_code(session, study_code)
    site = site_by_code(session, site_code)
    if session.get(StudySite, (study.id, site.id)) is None:
        raise InvalidInput(f"{site.code} is not a site of {study.code}.", field="site")
    for _attempt in range(5):  # two supply managers creating at once would pick the same number
        shipment = Shipment(number=_next_number(session), study_id=study.id, site_id=site.id, state=PACKING,
                            created_by=actor.user_id, created_at=utcnow())
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
    return session.scalar(select(Shipment.number).join(ShipmentKit, ShipmentKit.shipment_id == Shipment.id)
                          .where(ShipmentKit.kit_id == kit.id, Shipment.state.in_(sorted(OPEN))))


def kit_may_be_packed(session: Session, shipment: Shipment, kit: Kit) -> str | None:
    """Why this kit cannot go into this shipment, or None."""
    if kit.study_id != shipment.study_id:
        return (f"Kit {kit.number} is a kit of {session.get(Study, kit.study_id).code}; shipment {shipment.number} "
                f"is for {session.get(Study, shipment.study_id).code}.")
    if (other := _open_shipment_of(session, kit)) is not None:
        where = "this shipment" if other == shipment.number else f"shipment {other}"
        return f"Kit {kit.number} is already packed in {where}."
    if KitState(kit.state) is not KitState.released:
        return f"Kit {kit.number} is {kits.state_label(kit.state).lower()}: only released kits can be packed."
    if kit.site_id is not None:
        return f"Kit {kit.number} is not at the cell bench ({kit.location})."
    return None


def pack(session: Session, actor: Actor, shipment: Shipment, code: str | None, secret_key: str) -> Kit:
    """The supply manager scans a kit's label into the shipment."""
    _authorise(actor, shipment, "pack")
    kit = kits.scan(session, code, secret_key)
    if why := kit_may_be_packed(session, shipment, kit):
        raise InvalidInput(why, field="code")
    _claim(session, shipment)
    _authorise(actor, shipment, "pack")  # re-read: it may have been dispatched meanwhile
    _claim_kit(session, kit)
    session.add(ShipmentKit(shipment_id=shipment.id, kit_id=kit.id, packed_at=utcnow()))
    session.flush()
    audit.record(session, actor, "kit packed", "shipment", shipment.number, field="kits", new=kit.number)
    record(session, actor, kit, "packed", from_place=kit.location, to_place=f"Shipment {shipment.number}",
           shipment_id=shipment.id)
    session.flush()
    return kit


def unpack(session: Session, actor: Actor, shipment: Shipment, kit_number: str | None) -> Kit:
    _authorise(actor, shipment, "unpack")
    kit = kits.by_number(session, kit_number, field="kit_number")
    link = session.get(ShipmentKit, (shipment.id, kit.id))
    if link is None:
        raise InvalidInput(f"Kit {kit.number} is not packed in shipment {shipment.number}.", field="kit_number")
    _claim(session, shipment)
    _authorise(actor, shipment, "unpack")
    _claim_kit(session, kit, field="kit_number")
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
    _authorise(actor, shipment, "dispatch")
    values = {"shipper_id": shipper_id, "seal_number": seal_number, "logger_id": logger_id}
    names = {"shipper_id": "dry-shipper id", "seal_number": "seal number", "logger_id": "temperature logger id"}
    missing = [name for name, value in values.items() if not (value or "").strip()]
    if missing:
        listed = [names[m] for m in missing]
        words = listed[0] if len(listed) == 1 else f"{', '.join(listed[:-1])} and {listed[-1]}"
        raise InvalidInput(f"Enter the {words}.", field=missing[0])
    cleaned = {name: _text(value, name, names[name]) for name, value in values.items()}
    _claim(session, shipment, _version(seen_version, "shipment_version"))
    _authorise(actor, shipment, "dispatch")
    packed = kits_of(session, shipment)
    if not packed:
        raise InvalidInput(f"Shipment {shipment.number} has no kits. Scan kits into it first.", field="code")
    for kit in packed:
        if KitState(kit.state) is not KitState.released:
            raise InvalidInput(f"Kit {kit.number} is now {kits.state_label(kit.state).lower()}: unpack it before "
                               "dispatch.", field="code")
    site = session.get(Site, shipment.site_id)
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
    _move_kits(session, actor, packed, "ship", reason=f"dispatched in shipment {shipment.number} to {site.code}",
               place=to_place, action="dispatched", to_place=f"{to_place} to {site.code}", shipment_id=shipment.id,
               condition=condition)
    session.flush()


def report_lost(session: Session, actor: Actor, shipment: Shipment, reason: str | None, *,
                seen_version: int | str | None = None) -> None:
    """The shipment never arrived: it and every kit still in transit in it are lost."""
    _authorise(actor, shipment, "report_lost")
    reason = audit.require_reason(reason)
    _claim(session, shipment, _version(seen_version, "shipment_version"))
    _authorise(actor, shipment, "report_lost")
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


# --- shipments: receipt ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceiptScan:
    """One kit scanned at receipt: its blinded view and the shipment's progress."""

    shipment: str
    kit: kits.KitView
    scanned: int
    total: int
    received_at: datetime

    @property
    def progress(self) -> str:
        return f"{self.scanned} of {self.total} scanned"

    def as_json(self) -> dict:
        return {"shipment": self.shipment, "kit": self.kit.as_json(), "scanned": self.scanned, "total": self.total,
                "remaining": self.total - self.scanned, "progress": self.progress,
                "received_at": self.received_at.replace(microsecond=0).isoformat()}


# One row: the shipment, the kit (if cellbench knows it), whether it is on this manifest and already
# scanned, and the counts. Plain SQL with named parameters: the sqlite3 driver takes it as it is.
# The two counts read the shipment's manifest rows: about 5 µs for 16 kits, 0.5 ms for 3,000 (SQLite,
# measured). Counters kept on the shipment row would make them constant if shipments grow that large.
_RECEIPT_ROW = (
    "SELECT s.id, s.state, k.id, k.number, k.state, k.location, k.row_version, b.code, b.expiry, st.code, "
    "sk.kit_id, sk.received_at, "
    "(SELECT count(*) FROM shipment_kit c WHERE c.shipment_id = s.id), "
    "(SELECT count(c.received_at) FROM shipment_kit c WHERE c.shipment_id = s.id) "
    "FROM shipment s "
    "LEFT JOIN kit k ON k.number = :kit "
    "LEFT JOIN blinded_lot b ON b.id = k.blinded_lot_id "
    "LEFT JOIN study st ON st.id = k.study_id "
    "LEFT JOIN shipment_kit sk ON sk.shipment_id = s.id AND sk.kit_id = k.id "
    "WHERE s.number = :shipment")
# On PostgreSQL the shipment row is locked, so a receipt being completed and a scan of the same
# shipment never interleave (SQLite's one writer already serialises them).
_RECEIPT_ROW_LOCKED = text(_RECEIPT_ROW + " FOR UPDATE OF s")
_MARK_SCANNED = ("UPDATE shipment_kit SET received_at = :at WHERE shipment_id = :shipment_id AND kit_id = :kit_id "
                 "AND received_at IS NULL")
_MARK_SCANNED_CORE = text(_MARK_SCANNED)


def receipt_scan(conn: Connection | Session, actor: Actor, shipment_number: str, code: str | None,
                 secret_key: str) -> ReceiptScan:
    """The pharmacist scans one kit out of the dry shipper. On a Database.write_connection() (the
    API's hot path) or a session's connection (the page); one row read, one update, one audit event."""
    if not actor.roles & RECEIVERS:  # before reading anything
        _authorise(actor, None, "scan_receipt", state=IN_TRANSIT)
    number = scanning.kit_number_of(code, secret_key)
    shipment_number = (shipment_number or "").strip().upper()
    conn = conn if isinstance(conn, Connection) else conn.connection()
    params = {"kit": number, "shipment": shipment_number}
    raw = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None  # see audit.record
    if raw is not None:
        row = raw.execute(_RECEIPT_ROW, params).fetchone()
    else:
        row = conn.execute(_RECEIPT_ROW_LOCKED, params).first()
    if row is None:
        raise NotFound(f"No shipment '{shipment_number}'.", field="shipment")
    (shipment_id, shipment_state, kit_id, number_found, kit_state, location, version, lot, expiry, study, on_manifest,
     scanned_at, total, scanned) = row
    _authorise(actor, None, "scan_receipt", state=shipment_state, number=shipment_number)
    if kit_id is None:
        raise NotFound(f"Kit {number} is not a kit of cellbench: do not use it, and report the label.", field="code")
    if on_manifest is None:
        raise InvalidInput(f"Kit {number} is not on the manifest of shipment {shipment_number}: set it aside and "
                           "tell the supply manager.", field="code")
    if scanned_at is not None:
        raise Conflict(f"Kit {number} was already scanned into this receipt.", field="code")
    now = utcnow()
    values = {"at": utc_text(now), "shipment_id": shipment_id, "kit_id": kit_id}
    if raw is not None:
        changed = raw.execute(_MARK_SCANNED, values).rowcount
    else:
        changed = conn.execute(_MARK_SCANNED_CORE, values).rowcount
    if changed != 1:
        raise Conflict(f"Kit {number} was scanned by someone else at the same moment.", field="code")
    audit.record(conn, actor, "kit scanned at receipt", "kit", number, field="shipment", new=shipment_number)
    if isinstance(expiry, str):  # the raw SQLite row has the date as stored
        expiry = date.fromisoformat(expiry)
    view = kits.KitView(number_found, study, lot, expiry, KitState(kit_state).value, kits.state_label(kit_state),
                        location, version)
    return ReceiptScan(shipment_number, view, scanned + 1, total, now)


@dataclass
class LoggerRecord:
    """The temperature record read at receipt: a logger file, min/max typed from the logger, or none."""

    source: str
    minimum: float | None = None
    maximum: float | None = None
    readings: list[tuple[datetime, float]] = field(default_factory=list)
    outside_transit: int = 0  # readings before dispatch or after receipt, kept but not judged


def _temperature(text_: str | None) -> float | None:
    cleaned = (text_ or "").strip().replace("\u2212", "-").replace("°C", "").replace("°", "").strip()
    if "," in cleaned and "." not in cleaned:
        cleaned = cleaned.replace(",", ".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) and PLAUSIBLE_C[0] <= value <= PLAUSIBLE_C[1] else None


def _moment(text_: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text_.strip())
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def _show(cell: str) -> str:
    cell = cell.strip()
    return cell if len(cell) <= 40 else cell[:37] + "..."


def parse_logger_csv(content: str | bytes | None) -> list[tuple[datetime, float]]:
    """A logger export, one reading a line: `timestamp,temperature` (ISO 8601 with its UTC offset,
    degrees Celsius). An optional header line; ';' also accepted as the separator (then ',' may be
    the decimal mark). Any bad line is refused by its number; nothing is stored from a bad file."""
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput("The logger file is not UTF-8 text. Export it as CSV.", field="logger_csv") from None
    content = (content or "").lstrip("\ufeff")
    if not content.strip():
        raise InvalidInput("The logger file is empty.", field="logger_csv")
    first = next(line for line in content.splitlines() if line.strip())
    delimiter = ";" if ";" in first else ","
    readings: list[tuple[datetime, float]] = []
    seen_first = False
    reader = csv.reader(io.StringIO(content), delimiter=delimiter)
    try:
        for cells in reader:
            line = reader.line_num
            if line > MAX_LOGGER_LINES:
                raise InvalidInput(f"The logger file has more than {MAX_LOGGER_LINES} lines.", field="logger_csv")
            if not any(c.strip() for c in cells):
                continue
            is_first, seen_first = not seen_first, True
            if is_first and cells and _moment(cells[0]) is None and not cells[0].strip()[:1].isdigit():
                continue  # a header line
            if len(cells) != 2:
                raise InvalidInput(f"Line {line}: expected two columns (timestamp, temperature); found {len(cells)}.",
                                   field="logger_csv")
            at = _moment(cells[0])
            if at is None:
                raise InvalidInput(f"Line {line}: '{_show(cells[0])}' is not a date and time with its UTC offset "
                                   "(for example 2026-03-01T08:00:00Z).", field="logger_csv")
            value = _temperature(cells[1])
            if value is None:
                raise InvalidInput(f"Line {line}: '{_show(cells[1])}' is not a temperature in °C.", field="logger_csv")
            if readings and at < readings[-1][0]:
                raise InvalidInput(f"Line {line}: the time goes back before the line above it.", field="logger_csv")
            readings.append((at, value))
    except csv.Error as error:
        raise InvalidInput(f"Line {reader.line_num}: {error}.", field="logger_csv") from None
    if not readings:
        raise InvalidInput("The logger file has no readings.", field="logger_csv")
    return readings


def logger_record(source: str | None, *, csv_content: str | bytes | None = None, minimum: str | float | None = None,
                  maximum: str | float | None = None) -> LoggerRecord:
    """Validate what the pharmacist gives as the shipment's temperature record."""
    source = (source or "").strip().lower()
    if source not in LOGGER_SOURCES:
        raise InvalidInput("Say how the logger record comes: uploaded file, minimum and maximum read from the "
                           "logger, or missing.", field="logger_source")
    if source == "missing":
        return LoggerRecord("missing")
    if source == "csv":
        return LoggerRecord("csv", readings=parse_logger_csv(csv_content))
    low = _temperature(str(minimum)) if minimum is not None else None
    high = _temperature(str(maximum)) if maximum is not None else None
    if low is None:
        raise InvalidInput("Enter the logger's minimum temperature in °C.", field="logger_min")
    if high is None:
        raise InvalidInput("Enter the logger's maximum temperature in °C.", field="logger_max")
    if low > high:
        raise InvalidInput("The minimum is above the maximum.", field="logger_min")
    return LoggerRecord("manual", minimum=low, maximum=high)


def _judge_transit(logger: LoggerRecord, dispatched: datetime, received: datetime) -> None:
    """A logger file's readings count from dispatch to receipt: a logger started at room
    temperature before it went into the shipper is not an excursion."""
    if logger.source != "csv":
        return
    inside = [value for at, value in logger.readings if dispatched <= at <= received]
    logger.outside_transit = len(logger.readings) - len(inside)
    if inside:
        logger.minimum, logger.maximum = min(inside), max(inside)


# The receipt checks: each a small rule that says why the shipment must be held, or None.
def seal_broken(seal_intact: bool, logger: LoggerRecord, minutes: int) -> str | None:
    return None if seal_intact else "the seal was not intact on arrival"


def no_temperature_record(seal_intact: bool, logger: LoggerRecord, minutes: int) -> str | None:
    if logger.source == "missing":
        return "no temperature record: the logger record is missing"
    if logger.maximum is None:
        return "the logger file has no reading between dispatch and receipt"
    return None


def temperature_excursion(seal_intact: bool, logger: LoggerRecord, minutes: int) -> str | None:
    if logger.maximum is not None and logger.maximum > ALARM_LIMIT_C:
        return f"the temperature reached {logger.maximum:g} °C, above the {ALARM_LIMIT_C:g} °C limit"
    return None


def transit_beyond_hold_time(seal_intact: bool, logger: LoggerRecord, minutes: int) -> str | None:
    hold = int(VALIDATED_HOLD.total_seconds() // 60)
    if minutes > hold:
        return f"the transit took {minutes} minutes, beyond the dry shipper's validated {hold} minutes"
    return None


RECEIPT_CHECKS = (seal_broken, no_temperature_record, temperature_excursion, transit_beyond_hold_time)


def _seal(value: bool | str | None) -> bool:
    if isinstance(value, bool):
        return value
    text_ = (value or "").strip().lower()
    if text_ in ("yes", "true", "1", "intact"):
        return True
    if text_ in ("no", "false", "0", "broken"):
        return False
    raise InvalidInput("Say whether the seal was intact.", field="seal_intact")


def complete_receipt(session: Session, actor: Actor, shipment: Shipment, *, seal_intact: bool | str | None,
                     logger: LoggerRecord, missing_reason: str | None = None,
                     seen_version: int | str | None = None) -> list[str]:
    """The receipt check, after the kits are scanned: seal, temperature record, transit time and the
    manifest. Any failed check holds the whole shipment (every kit, both arms alike) for QA;
    otherwise every kit enters the site's stock. Returns the problems found (empty: received)."""
    _authorise(actor, shipment, "complete_receipt")
    intact = _seal(seal_intact)
    _claim(session, shipment, _version(seen_version, "shipment_version"))
    _authorise(actor, shipment, "complete_receipt")
    lines = session.execute(select(Kit, ShipmentKit.received_at).join(ShipmentKit, ShipmentKit.kit_id == Kit.id)
                            .where(ShipmentKit.shipment_id == shipment.id).order_by(Kit.number)).all()
    scanned = [kit for kit, at in lines if at is not None]
    unscanned = [kit for kit, at in lines if at is None]
    if not scanned:
        raise InvalidInput(f"No kit of shipment {shipment.number} has been scanned. Scan every kit; if the shipment "
                           "did not arrive, the supply manager reports it lost.", field="code")
    if unscanned and not (missing_reason or "").strip():
        listed = ", ".join(kit.number for kit in unscanned)
        raise InvalidInput(f"{len(unscanned)} of {len(lines)} kits are not scanned: {listed}. Scan them, or give a "
                           "reason to record them as missing.", field="missing_reason")
    site = session.get(Site, shipment.site_id)
    now = utcnow()
    minutes = max(0, int((now - shipment.dispatched_at).total_seconds() // 60))
    _judge_transit(logger, shipment.dispatched_at, now)
    problems = [why for check in RECEIPT_CHECKS if (why := check(intact, logger, minutes))]

    shipment.received_by, shipment.received_at, shipment.seal_intact = actor.user_id, now, intact
    shipment.logger_source, shipment.logger_min, shipment.logger_max = logger.source, logger.minimum, logger.maximum
    shipment.transit_minutes = minutes
    shipment.receipt_problems = "\n".join(problems) or None
    shipment.state = QUARANTINED if problems else RECEIVED
    if logger.readings:
        session.execute(insert(LoggerReading), [{"shipment_id": shipment.id, "at": at, "temperature_c": value}
                                                for at, value in logger.readings])
    session.flush()
    audit.record(session, actor, "shipment received", "shipment", shipment.number, field="state", old=IN_TRANSIT,
                 new=shipment.state, reason="; ".join(problems) or None)
    audit.record(session, actor, "receipt check", "shipment", shipment.number, field="receipt",
                 new={"seal_intact": intact, "logger": logger.source, "logger_min": logger.minimum,
                      "logger_max": logger.maximum, "readings": len(logger.readings),
                      "readings_outside_transit": logger.outside_transit, "transit_minutes": minutes,
                      "kits_scanned": len(scanned), "kits_missing": [kit.number for kit in unscanned]})

    if problems:
        deviations.raise_deviation(
            session, actor, origin="shipment", severity="major", shipment_id=shipment.id,
            blinded_summary=f"Shipment {shipment.number} was held on receipt for QA's assessment.",
            description=(f"Shipment {shipment.number} to {site.code} failed its receipt check and is held, every kit "
                         f"in it, for QA's assessment: {'; '.join(problems)}. Seal {shipment.seal_number} "
                         f"{'intact' if intact else 'not intact'}; logger {shipment.logger_id} ({logger.source}"
                         + (f", {logger.minimum:g} to {logger.maximum:g} °C" if logger.maximum is not None else "")
                         + f"); transit {minutes} minutes; {len(scanned)} of {len(lines)} kits scanned."))

    reason = (missing_reason or "").strip()
    for kit in unscanned:
        if not travelling(kit):
            continue
        kits.move(session, actor, kit, "lose", reason=f"not in shipment {shipment.number} on arrival: {reason}")
        record(session, actor, kit, "missing at receipt", from_place=kit.location, to_place=None,
               shipment_id=shipment.id, condition=reason[:200])

    place = site_pharmacy(site)
    # reported damaged or lost while in transit: such a kit keeps that state
    arriving = [kit for kit in scanned if KitState(kit.state) is KitState.in_transit]
    # Held while in transit (its lot was quarantined, with companions of the other arm): it
    # arrives held, whatever the receipt check says, and joins the site's stock when released.
    held = [kit for kit in scanned if KitState(kit.state) is KitState.quarantined and travelling(kit)]
    at_site = {"site_id": site.id}
    if problems:
        _move_kits(session, actor, arriving + held, "receive_into_quarantine",
                   reason=f"shipment {shipment.number} held on receipt for QA: {'; '.join(problems)}",
                   place=place, action="received into quarantine", shipment_id=shipment.id,
                   condition=f"held: {'; '.join(problems)}", also=at_site)
    else:
        condition = _condition(intact, logger)
        still_held = kits.GENERIC_QUARANTINE_REASON.lower().rstrip(".")
        _move_kits(session, actor, arriving, "receive", reason=f"received in shipment {shipment.number}",
                   place=place, action="received", shipment_id=shipment.id, condition=condition, also=at_site)
        _move_kits(session, actor, held, "receive_into_quarantine",
                   reason=f"received in shipment {shipment.number}; {still_held}",
                   place=place, action="received into quarantine", shipment_id=shipment.id,
                   condition=f"{condition}; held: {still_held}", also=at_site)
    session.flush()
    return problems


def _condition(intact: bool, logger: LoggerRecord) -> str:
    seal = "seal intact" if intact else "seal broken"
    if logger.minimum is None:
        return f"{seal}; no temperature record"
    return f"{seal}; logger {logger.minimum:g} to {logger.maximum:g} °C"


# --- QA's assessment of a quarantined shipment --------------------------------------------------------


def assess(session: Session, user: User, shipment: Shipment, decision: str | None, reason: str | None,
           password: str | None, *, seen_version: int | str | None = None) -> None:
    """QA accepts the held shipment (every kit into the site's stock) or rejects it (every kit
    withdrawn), with a reason and a password signature."""
    actor = users.actor(session, user)
    decision = (decision or "").strip().lower()
    if decision not in DECISIONS:
        _authorise(actor, shipment, "accept")
        raise InvalidInput("Choose accept or reject.", field="decision")
    _authorise(actor, shipment, decision)
    reason = audit.require_reason(reason)
    word, new_state, move, meaning = DECISIONS[decision]
    _claim(session, shipment, _version(seen_version, "shipment_version"))
    _authorise(actor, shipment, decision)
    shipment.qa_decision, shipment.qa_reason = word, reason
    session.flush()
    sig = signatures.sign(session, user, password or "", meaning, "shipment", shipment.number, reason=reason)
    shipment.qa_signature_id, shipment.state = sig.id, new_state
    session.flush()
    audit.record(session, actor, f"shipment {word}", "shipment", shipment.number, field="state", old=QUARANTINED,
                 new=new_state, reason=reason)
    held = select(Kit).join(ShipmentKit, ShipmentKit.kit_id == Kit.id).where(
        ShipmentKit.shipment_id == shipment.id, Kit.state == KitState.quarantined.value)
    if decision == "accept":
        # a kit also held by a kit quarantine (its lot) stays held until that quarantine ends
        held = held.where(Kit.quarantine_id.is_(None))
    kit_reason = (f"shipment {shipment.number} accepted by QA: {reason}" if decision == "accept"
                  else f"shipment {shipment.number} rejected by QA: {reason}")
    kits.move_many(session, actor, list(session.scalars(held.order_by(Kit.number))), move, reason=kit_reason)
    session.flush()
