"""Kit shortages: a visit asked for a kit and none of the participant's arm was at the site. The
pharmacist's refusal reads the same for both arms; the supply manager is alerted here, with the
arm and the site (the sealed door recorded them, for it alone knows the arm), and acknowledges
each alert with what is done about it. Unblinded work: the list is a logged read of the compartment.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlmodel import Session

from .. import inputs, sealed, studies
from ..audit import Actor
from ..models import Site, User, saved_id
from .views import arm_names

HANDLERS = tuple(sealed.SHORTAGE_HANDLERS)


@dataclass(frozen=True)
class Shortage:
    """One "no kit" answer as the supply manager reads it."""

    id: int
    study: str
    site: str  # code
    site_name: str
    participant: str  # randomisation number
    arm: str  # the arm's name in the study
    needed_until: date  # a kit had to be in date until this day
    reported_at: datetime
    reported_by: str
    acknowledged_at: datetime | None
    acknowledged_by: str
    acknowledgement: str | None
    requirement: str | None = None  # beyond the arm, e.g. the donor of treatment 1 (a study's donor policy)


def open_count(session: Session, actor: Actor) -> int:
    return sealed.open_shortage_count(session, actor)


def shortages(session: Session, actor: Actor, *, open_only: bool = True) -> list[Shortage]:
    """Open ones (or all), oldest open first: a logged read, so the caller's transaction writes."""
    rows = sealed.kit_shortages(session, actor, open_only=open_only)
    sites = {saved_id(site): site for site in session.scalars(select(Site))}
    people = {saved_id(user): user.full_name for user in session.scalars(select(User))}
    found = []
    for row in rows:
        study = studies.by_id(session, row.study_id)
        site = sites[row.site_id]
        found.append(Shortage(saved_id(row), study.code, site.code, site.name, row.randomisation_number,
                              arm_names(study).get(row.arm, row.arm), row.in_date_on, row.reported_at,
                              people.get(row.reported_by or 0, ""), row.acknowledged_at,
                              people.get(row.acknowledged_by or 0, ""), row.acknowledgement, row.requirement))
    return found


def acknowledge(session: Session, actor: Actor, shortage_id: object, reason: str | None) -> int:
    """The supply manager has seen the shortage and says what is done (audited); its number."""
    number = inputs.whole(shortage_id, "shortage", "shortage number", minimum=1)
    return saved_id(sealed.acknowledge_shortage(session, actor, number, reason))
