"""Storage excursions of a lot: a temperature excursion recorded by whoever saw it blocks the
lot's certification and release until QA assesses it (gates.no_unassessed_excursion)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit, inputs, limits, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..models import Lot, Role, StorageExcursion, Visibility, saved_id


def excursions_of(session: Session, lot: Lot) -> list[StorageExcursion]:
    return list(session.scalars(select(StorageExcursion).where(col(StorageExcursion.lot_id) == lot.id)
                                .order_by(col(StorageExcursion.observed_at), col(StorageExcursion.id))))


def record_excursion(session: Session, actor: Actor, lot: Lot, *, observed_at: datetime,
                     highest_temperature: float | str, description: str | None) -> StorageExcursion:
    """A temperature excursion in the lot's storage: it blocks release until QA assesses it."""
    users.require_role(actor, Role.operator, Role.qa, Role.supply_manager)
    if observed_at.tzinfo is None:
        raise InvalidInput("Give the time of the excursion with its UTC offset.", field="observed_at")
    if observed_at > utcnow():
        raise InvalidInput("An excursion cannot be observed in the future.", field="observed_at")
    temperature = inputs.temperature(highest_temperature, "highest_temperature", "highest temperature (°C)")
    text = limits.text(description, "description", "description of the excursion", "description", required=True) or ""
    exc = StorageExcursion(lot_id=saved_id(lot), observed_at=observed_at, highest_temperature=temperature,
                           description=text, recorded_by=actor.user_id or 0)
    session.add(exc)
    session.flush()
    audit.record(session, actor, "storage excursion recorded", "lot", lot.number, field=f"excursion:{exc.id}",
                 new=f"{temperature:g} °C at {audit.as_text(observed_at)}: {text}",
                 visibility=Visibility.unblinded)
    return exc


def assess_excursion(session: Session, actor: Actor, lot: Lot, excursion_id: int, *, acceptable: bool,
                     assessment: str | None) -> StorageExcursion:
    """QA's assessment of an excursion, once: acceptable lets the lot go on, unacceptable blocks it."""
    users.require_role(actor, Role.qa)
    exc = session.get(StorageExcursion, excursion_id)
    if exc is None or exc.lot_id != lot.id:
        raise NotFound("No such excursion on this lot.", field="excursion")
    if exc.acceptable is not None:
        raise Conflict("This excursion is already assessed.", field="excursion")
    exc.assessment = limits.text(assessment, "assessment", "assessment", "description", required=True) or ""
    exc.acceptable = bool(acceptable)
    exc.assessed_by, exc.assessed_at = actor.user_id, utcnow()
    session.flush()
    audit.record(session, actor, "storage excursion assessed", "lot", lot.number, field=f"excursion:{exc.id}",
                 new="acceptable" if acceptable else "not acceptable", reason=exc.assessment,
                 visibility=Visibility.unblinded)
    return exc
