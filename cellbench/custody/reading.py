"""Reading shipments: by number, listed and counted by state, their manifests, logger readings,
and the content QA's signed assessment covers."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlmodel import Session, col

from .. import kits, pagination, signatures, users
from ..audit import Actor
from ..errors import InvalidInput, NotFound
from ..models import BlindedLot, Kit, KitState, LoggerReading, Shipment, ShipmentKit, Signature, Site, Study, User
from .events import fetch, key
from .lifecycle import OPEN, STATE_LABELS


def by_number(session: Session, number: str | None, *, field: str = "shipment",
              reader: Actor | None = None) -> Shipment:
    """The shipment; for a `reader` of other sites or studies, as missing as one never made."""
    text_ = (number or "").strip().upper()
    row = session.scalars(select(Shipment).where(col(Shipment.number) == text_)).first() if text_ else None
    if row is None or (reader is not None and not users.sees(reader, row.site_id, row.study_id)):
        raise NotFound(f"No shipment '{text_}'.", field=field)
    return row


def shipments(session: Session, *, state: str | None = None, site: Site | None = None,
              study: Study | None = None, reader: Actor | None = None) -> list[Shipment]:
    query = _shipments(state=state, site=site, study=study, reader=reader)
    return list(session.scalars(query.order_by(col(Shipment.id).desc())))


# Newest first. A shipment carries kits of both arms, so its id says nothing of an arm.
SHIPMENT_ORDER = pagination.Order("shipments", (col(Shipment.id),), newest_first=True)


def shipment_page(session: Session, ask: pagination.Ask, *, state: str | None = None, site: Site | None = None,
                  reader: Actor | None = None) -> pagination.Page[Shipment]:
    return pagination.page(session, _shipments(state=state, site=site, reader=reader), SHIPMENT_ORDER, ask)


def _shipments(*, state: str | None = None, site: Site | None = None, study: Study | None = None,
               reader: Actor | None = None) -> Select:
    query = select(Shipment)
    if reader is not None:
        query = users.within(query, reader, site=col(Shipment.site_id), study=col(Shipment.study_id))
    if state:
        if state == "open":
            query = query.where(col(Shipment.state).in_(sorted(OPEN)))
        elif state not in STATE_LABELS:
            raise InvalidInput(f"Unknown shipment state '{state}'.", field="state")
        else:
            query = query.where(col(Shipment.state) == state)
    if site is not None:
        query = query.where(col(Shipment.site_id) == site.id)
    if study is not None:
        query = query.where(col(Shipment.study_id) == study.id)
    return query


def study_codes(session: Session) -> dict[int, str]:
    """study id -> code, for lists of shipments."""
    return {ident: code for ident, code in session.execute(select(col(Study.id), col(Study.code))) if ident is not None}


def site_codes(session: Session) -> dict[int, str]:
    """site id -> code, for lists of shipments."""
    return {ident: code for ident, code in session.execute(select(col(Site.id), col(Site.code))) if ident is not None}


def user_names(session: Session, *ids: int | None) -> dict[int | None, str]:
    """user id -> full name, for who created, dispatched and received a shipment (looked up by
    references that may be empty: .get(None) is None)."""
    wanted = [i for i in ids if i]
    if not wanted:
        return {}
    rows = session.execute(select(col(User.id), col(User.full_name)).where(col(User.id).in_(wanted)))
    return {ident: name for ident, name in rows if ident is not None}


def counts_by_state(session: Session, reader: Actor | None = None) -> dict[str, int]:
    query = select(col(Shipment.state), func.count()).group_by(col(Shipment.state))
    if reader is not None:
        query = users.within(query, reader, site=col(Shipment.site_id), study=col(Shipment.study_id))
    found = dict(session.execute(query).all())
    return {state: found.get(state, 0) for state in STATE_LABELS}


def kit_counts(session: Session, shipment_ids: Iterable[int | None]) -> dict[int, tuple[int, int]]:
    """shipment id -> (kits, kits scanned at receipt)."""
    shipment_ids = [i for i in shipment_ids if i is not None]
    if not shipment_ids:
        return {}
    rows = session.execute(select(col(ShipmentKit.shipment_id), func.count(), func.count(col(ShipmentKit.received_at)))
                           .where(col(ShipmentKit.shipment_id).in_(shipment_ids)).group_by(col(ShipmentKit.shipment_id)))
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
    rows = session.execute(select(col(Kit.number), col(BlindedLot.code), col(Kit.state), col(Kit.location),
                                  col(ShipmentKit.packed_at), col(ShipmentKit.received_at))
                           .join(ShipmentKit, col(ShipmentKit.kit_id) == col(Kit.id))
                           .outerjoin(BlindedLot, col(BlindedLot.id) == col(Kit.blinded_lot_id))
                           .where(col(ShipmentKit.shipment_id) == shipment.id).order_by(col(Kit.number)))
    return [ManifestLine(number, lot, KitState(state).value, kits.state_label(state), location, packed, received)
            for number, lot, state, location, packed, received in rows]


def kits_of(session: Session, shipment: Shipment) -> list[Kit]:
    return list(session.scalars(select(Kit).join(ShipmentKit, col(ShipmentKit.kit_id) == col(Kit.id))
                                .where(col(ShipmentKit.shipment_id) == shipment.id).order_by(col(Kit.number))))


def progress(session: Session, shipment: Shipment) -> tuple[int, int]:
    """(kits scanned at receipt, kits on the manifest)."""
    total, scanned = kit_counts(session, [key(shipment)]).get(key(shipment), (0, 0))
    return scanned, total


def reading_count(session: Session, shipment: Shipment) -> int:
    """How many logger readings were uploaded at receipt."""
    return session.scalar(select(func.count()).select_from(LoggerReading)
                          .where(col(LoggerReading.shipment_id) == shipment.id)) or 0


def problems_of(shipment: Shipment) -> list[str]:
    return [p for p in (shipment.receipt_problems or "").split("\n") if p]


def qa_signature(session: Session, shipment: Shipment) -> Signature | None:
    return session.get(Signature, shipment.qa_signature_id) if shipment.qa_signature_id else None


@signatures.content_rule("shipment")
def _signed_content(session: Session, number: str) -> dict:
    """What QA's signed assessment covers: the receipt findings, the kits and the decision. Nothing
    here changes after the decision, so `cellbench verify` can recompute it for good."""
    shipment = by_number(session, number)
    study, site = fetch(session, Study, shipment.study_id, "study"), fetch(session, Site, shipment.site_id, "site")
    return {"number": shipment.number, "study": study.code, "site": site.code, "shipper_id": shipment.shipper_id,
            "seal_number": shipment.seal_number, "logger_id": shipment.logger_id,
            "dispatched_at": shipment.dispatched_at, "received_at": shipment.received_at,
            "seal_intact": shipment.seal_intact, "logger_source": shipment.logger_source,
            "logger_min": shipment.logger_min, "logger_max": shipment.logger_max,
            "transit_minutes": shipment.transit_minutes, "receipt_problems": problems_of(shipment),
            "kits": [line.kit_number for line in manifest(session, shipment)],
            "decision": shipment.qa_decision, "reason": shipment.qa_reason}
