"""A shipment's receipt at the site: every kit scanned out of the dry shipper (the site's hot path,
written like scanning.scan: prebuilt statements, no ORM objects), then the receipt check, which
either puts every kit into the site's stock or holds the whole shipment, both arms, for QA.

Receipt and put-away in one pass (`receipt_step`, `receive_into_box`): the pharmacist scans a box
label, then the kits that go into it; each kit's receipt scan and its position are recorded
together. A kit may also be received without a position (the storage page then lists it as not yet
put away): the receipt check does not wait for the tank."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

from sqlalchemy import Connection, insert, select, text
from sqlmodel import Session, col

from .. import audit, deviations, kits, limits, notifications, storage_counts, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..models import Kit, KitState, LoggerReading, Shipment, ShipmentKit, Site, StorageBox, utc_text
from . import positions
from .events import fetch, move_kits, record, travelling
from .lifecycle import IN_TRANSIT, QUARANTINED, RECEIVED, RECEIVERS, check, claim, version
from .reading import by_number
from .storage import site_pharmacy
from .temperature import RECEIPT_CHECKS, LoggerRecord, cold_chain_of, judge_transit


@dataclass(frozen=True)
class ReceiptScan:
    """One kit scanned at receipt: its blinded view and the shipment's progress."""

    shipment: str
    kit: kits.KitView
    scanned: int
    total: int
    received_at: datetime
    position: positions.Position | None = None  # scanned into a box: where it was put

    @property
    def progress(self) -> str:
        return f"{self.scanned} of {self.total} scanned"

    def as_json(self) -> dict:
        return {"shipment": self.shipment, "kit": self.kit.as_json(), "scanned": self.scanned, "total": self.total,
                "remaining": self.total - self.scanned, "progress": self.progress,
                "received_at": self.received_at.replace(microsecond=0).isoformat(),
                "position": self.position.as_json() if self.position else None}


# One row: the shipment, the kit (if cellbench knows it), whether it is on this manifest and already
# scanned, and the counts. Plain SQL with named parameters: the sqlite3 driver takes it as it is.
# The two counts read the shipment's manifest rows: about 5 µs for 16 kits, 0.5 ms for 3,000 (SQLite,
# measured). Counters kept on the shipment row would make them constant if shipments grow that large.
_RECEIPT_ROW = (
    "SELECT s.id, s.state, s.site_id, s.study_id, k.id, k.number, k.state, k.location, k.row_version, b.code, "
    "b.expiry, st.code, "
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
                 secret_key: str, *, manual: object = False, reason: str | None = None) -> ReceiptScan:
    """The pharmacist scans one kit out of the dry shipper. On a Database.write_connection() (the
    API's hot path) or a session's connection (the page); one row read, one update, one audit event.
    A kit number typed by hand (marked, with its reason) is received too, and its audit event and
    receipt custody event say so."""
    if not actor.roles & RECEIVERS:  # before reading anything
        check(actor, IN_TRANSIT, "scan_receipt", shipment_number)
    entry = kits.read_code(code, secret_key, manual=manual, reason=reason)
    number = entry.number
    shipment_number = (shipment_number or "").strip().upper()
    conn = conn if isinstance(conn, Connection) else conn.connection()
    params = {"kit": number, "shipment": shipment_number}
    raw = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None  # see audit.record
    if raw is not None:
        row = raw.execute(_RECEIPT_ROW, params).fetchone()
    else:
        row = conn.execute(_RECEIPT_ROW_LOCKED, params).first()
    # another site's shipment reads as no shipment: its existence is not confirmed
    if row is None or not users.sees(actor, row[2], row[3]):
        raise NotFound(f"No shipment '{shipment_number}'.", field="shipment")
    (shipment_id, shipment_state, _site, _study, kit_id, number_found, kit_state, location, kit_version, lot, expiry,
     study, on_manifest, scanned_at, total, scanned) = row
    check(actor, shipment_state, "scan_receipt", shipment_number)
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
    # audit.record writes on a Connection too (the hot path)
    audit.record(conn, actor, "kit scanned at receipt", "kit", number,
                 field="shipment", new=shipment_number, reason=entry.note())
    if entry.typed:
        _record_typed(conn, actor, kit_id, shipment_id, shipment_number, entry)
    if isinstance(expiry, str):  # the raw SQLite row has the date as stored
        expiry = date.fromisoformat(expiry)
    view = kits.KitView(number_found, study, lot, expiry, KitState(kit_state).value, kits.state_label(kit_state),
                        location, kit_version)
    return ReceiptScan(shipment_number, view, scanned + 1, total, now)


_TYPED_AT_RECEIPT = text(
    "INSERT INTO custody_event (kit_id, action, from_place, to_place, shipment_id, by_user, by_name, at, condition) "
    "VALUES (:kit_id, 'identified at receipt', :place, NULL, :shipment_id, :by_user, :by_name, :at, :condition)")


def _record_typed(conn: Connection, actor: Actor, kit_id: int, shipment_id: int, shipment_number: str,
                  entry: kits.KitCode) -> None:
    """A kit received by its typed number has that on its custody chain, not only in the audit trail:
    whoever reads the chain later sees this link was not a label scan."""
    conn.execute(_TYPED_AT_RECEIPT, {"kit_id": kit_id, "place": f"Shipment {shipment_number}",
                                     "shipment_id": shipment_id, "by_user": actor.user_id, "by_name": actor.name,
                                     "at": utc_text(utcnow()), "condition": entry.method})


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
    check(actor, shipment, "complete_receipt")
    users.require_scope(actor, shipment.site_id, shipment.study_id, field="shipment")
    intact = _seal(seal_intact)
    limits.text(missing_reason, "missing_reason", "reason the kits are missing", "reason")
    claim(session, shipment, version(seen_version, "shipment_version"))
    check(actor, shipment, "complete_receipt")
    lines = session.execute(select(Kit, col(ShipmentKit.received_at))
                            .join(ShipmentKit, col(ShipmentKit.kit_id) == col(Kit.id))
                            .where(col(ShipmentKit.shipment_id) == shipment.id).order_by(col(Kit.number))).all()
    scanned = [kit for kit, at in lines if at is not None]
    unscanned = [kit for kit, at in lines if at is None]
    if not scanned:
        raise InvalidInput(f"No kit of shipment {shipment.number} has been scanned. Scan every kit; if the shipment "
                           "did not arrive, the supply manager reports it lost.", field="code")
    if unscanned and not (missing_reason or "").strip():
        listed = ", ".join(kit.number for kit in unscanned)
        raise InvalidInput(f"{len(unscanned)} of {len(lines)} kits are not scanned: {listed}. Scan them, or give a "
                           "reason to record them as missing.", field="missing_reason")
    site = fetch(session, Site, shipment.site_id, "site")
    now = utcnow()
    dispatched = shipment.dispatched_at or now  # a shipment in transit was dispatched
    minutes = max(0, int((now - dispatched).total_seconds() // 60))
    judge_transit(logger, dispatched, now)
    chain = cold_chain_of(session, shipment.study_id)  # the study's presentation: both arms alike
    problems = [why for rule in RECEIPT_CHECKS if (why := rule(intact, logger, minutes, chain))]

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
    arriving = [kit for kit in scanned if travelling(kit) and KitState(kit.state) is not KitState.quarantined]
    # Held while in transit (its lot was quarantined, with companions of the other arm): it
    # arrives held, whatever the receipt check says, and joins the site's stock when released.
    held = [kit for kit in scanned if KitState(kit.state) is KitState.quarantined and travelling(kit)]
    at_site = {"site_id": site.id}
    boxed = _boxed(session, arriving + held)
    if problems:
        _arrive(session, actor, arriving + held, "receive_into_quarantine", boxed,
                reason=f"shipment {shipment.number} held on receipt for QA: {'; '.join(problems)}",
                place=place, action="received into quarantine", shipment_id=shipment.id,
                condition=f"held: {'; '.join(problems)}", also=at_site)
    else:
        condition = _condition(intact, logger)
        still_held = kits.GENERIC_QUARANTINE_REASON.lower().rstrip(".")
        _arrive(session, actor, arriving, "receive", boxed, reason=f"received in shipment {shipment.number}",
                place=place, action="received", shipment_id=shipment.id, condition=condition, also=at_site)
        _arrive(session, actor, held, "receive_into_quarantine", boxed,
                reason=f"received in shipment {shipment.number}; {still_held}",
                place=place, action="received into quarantine", shipment_id=shipment.id,
                condition=f"{condition}; held: {still_held}", also=at_site)
    session.flush()
    notifications.shipment_received(session, actor, shipment, site, problems, len(scanned))
    return problems


def _boxed(session: Session, arriving: list[Kit]) -> dict[int | None, tuple[str, int]]:
    """kit id -> (its place, its tank) for the kits scanned into a box at receipt."""
    found = {}
    for kit in arriving:
        if kit.storage_location_id is not None and (where := positions.position_of(session, kit)) is not None:
            found[kit.id] = (where.place, kit.storage_location_id)
    return found


def _arrive(session: Session, actor: Actor, moving: list[Kit], move: str, boxed: dict[int | None, tuple[str, int]],
            *, place: str, **rest) -> None:
    """move_kits for kits arriving at the site: a kit scanned into a box stays in its position (the
    move takes it off any shelf: it goes back on its box's tank), every other kit is at the pharmacy."""
    groups: dict[tuple[str, int | None], list[Kit]] = {}
    for kit in moving:
        groups.setdefault(boxed.get(kit.id, (place, None)), []).append(kit)
    for (where, tank), group in groups.items():
        move_kits(session, actor, group, move, place=where, **rest)
        for kit in group:
            shelf, kit.storage_location_id = kit.storage_location_id, tank
            storage_counts.moved(session, kit, shelf)


def _condition(intact: bool, logger: LoggerRecord) -> str:
    seal = "seal intact" if intact else "seal broken"
    if logger.minimum is None:
        return f"{seal}; no temperature record"
    return f"{seal}; logger {logger.minimum:g} to {logger.maximum:g} °C"


# --- receipt and put-away in one pass ------------------------------------------------------------------------


def receipt_step(session: Session, actor: Actor, shipment_number: str, code: str | None, secret_key: str, *,
                 box: str | None = None, position: object = None, manual: object = False,
                 reason: str | None = None) -> ReceiptScan | StorageBox:
    """One scan on the receipt page. A box label chooses the box the next kits go into (nothing is
    recorded: the box is only where the next kits go); a kit's label receives the kit, into the
    chosen box (its next free position, or the position typed) when there is one, else without a
    position."""
    if positions.is_box_code(code) and not kits.is_marked(manual):
        shipment = _receiving(session, actor, shipment_number)
        box_code, _position = positions.target_of(code, field="code")
        return _box_at(session, actor, shipment, box_code, field="code")
    if not (box or "").strip():
        return receipt_scan(session, actor, shipment_number, code, secret_key, manual=manual, reason=reason)
    return receive_into_box(session, actor, shipment_number, code, secret_key, box=box, position=position,
                            manual=manual, reason=reason)


def receive_into_box(session: Session, actor: Actor, shipment_number: str, code: str | None, secret_key: str, *,
                     box: str | None, position: object = None, manual: object = False,
                     reason: str | None = None) -> ReceiptScan:
    """The kit scanned out of the dry shipper and put into the box, in one transaction: the receipt
    scan (receipt_scan's checks and records), then its position (a custody event naming it, its
    audit event). Refused (nothing recorded) when the box is not at the shipment's site, or the
    position is taken or not in the box."""
    shipment = _receiving(session, actor, shipment_number)
    chosen = _box_at(session, actor, shipment, box, field="box")
    scan = receipt_scan(session, actor, shipment_number, code, secret_key, manual=manual, reason=reason)
    kit = session.scalars(select(Kit).where(col(Kit.number) == scan.kit.number)).one()
    typed = None if position is None or str(position).strip() == "" else str(position)
    where = positions.place(session, actor, kit, chosen, typed, action="put away at receipt",
                            shipment_id=shipment.id)
    return replace(scan, kit=replace(scan.kit, location=kit.location), position=where)


def _receiving(session: Session, actor: Actor, shipment_number: str) -> Shipment:
    if not actor.roles & RECEIVERS:  # before reading anything
        check(actor, IN_TRANSIT, "scan_receipt", shipment_number)
    shipment = by_number(session, shipment_number, reader=actor)
    check(actor, shipment, "scan_receipt")
    return shipment


def _box_at(session: Session, actor: Actor, shipment: Shipment, code: str | None, *, field: str) -> StorageBox:
    chosen = positions.box_by_code(session, code, field=field, reader=actor)
    if chosen.site_id != shipment.site_id:
        raise InvalidInput(f"Box {chosen.code} is not at the site this shipment goes to.", field=field)
    return chosen
