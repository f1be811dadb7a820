"""Participants: enrolled by screening number (no names are kept in cellbench) at a site of the
study, then randomised: the sealed list's next number (never the arm), and the treatment visits
planned from the study's schedule."""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from .. import audit, clock, studies, users
from ..audit import Actor
from ..clock import utcnow
from ..custody import fetch, key, person
from ..errors import Conflict, InvalidInput
from ..models import Participant, Site, Study, StudySite, Visit
from . import counts, eligibility
from .doors import randomisation_number
from .lifecycle import ENROLLERS, RANDOMISERS, VisitState, require_study_open
from .records import participant_ref

_SCREENING = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,31}$")


def _screening_number(text: str | None) -> str:
    number = (text or "").strip().upper()
    if not _SCREENING.match(number) or not any(c.isdigit() for c in number):
        raise InvalidInput("A screening number is letters, digits and hyphens with at least one digit, such as "
                           "SCR-014. Never a name.", field="screening_number")
    return number


def _site_of_study(session: Session, study: Study, site_code: str | None) -> Site:
    code = (site_code or "").strip().upper()
    site = session.scalars(select(Site).where(col(Site.code) == code)).first()
    if site is None or session.get(StudySite, (study.id, site.id)) is None:
        raise InvalidInput(f"Choose a site of {study.code}.", field="site")
    return site


def enrol(session: Session, actor: Actor, study: Study, *, site_code: str | None,
          screening_number: str | None) -> Participant:
    """A participant by screening number (no names are kept in cellbench), at a site of the study."""
    users.require_role(actor, *ENROLLERS)
    site = _site_of_study(session, study, site_code)
    users.require_scope(actor, site, study)
    require_study_open(session, study)
    number = _screening_number(screening_number)
    taken = select(col(Participant.id)).where(col(Participant.study_id) == study.id,
                                              col(Participant.screening_number) == number)
    if session.scalar(taken) is not None:
        raise Conflict(f"Screening number {number} is already enrolled in {study.code}.", field="screening_number")
    participant = Participant(study_id=key(study), site_id=key(site), screening_number=number,
                              enrolled_by=person(actor), enrolled_at=utcnow())
    try:
        with session.begin_nested():  # two enrolments of one number at the same moment: one wins
            session.add(participant)
            session.flush()
    except IntegrityError:
        raise Conflict(f"Screening number {number} is already enrolled in {study.code}.",
                       field="screening_number") from None
    audit.record(session, actor, "participant enrolled", "participant", participant_ref(study, participant),
                 field="site", new=site.code)
    return participant


def schedule(study: Study, day: date) -> list[tuple[int, date, date, date]]:
    """(treatment, target, window start, window end) from the randomisation day: treatment 1 on
    that day, its window from that day to window_days later; treatment k at (k-1) intervals,
    ± window_days."""
    rows = []
    for k in range(1, study.treatments + 1):
        target = day + timedelta(days=(k - 1) * study.interval_days)
        before, after = studies.window_of(study, k)
        rows.append((k, target, target - timedelta(days=before), target + timedelta(days=after)))
    return rows


def randomise(session: Session, actor: Actor, participant: Participant, *, consent_date: date | str | None = None,
              criteria: Mapping[str, object] | None = None) -> Participant:
    """Once the investigator has confirmed consent and every eligibility criterion of the study
    file (eligibility.confirm, recorded), the next line of the sealed randomisation list gives the
    randomisation number (never the arm); the treatment visits follow from the study's schedule."""
    users.require_role(actor, *RANDOMISERS)
    users.require_scope(actor, participant.site_id, participant.study_id, field="participant")
    study = fetch(session, Study, participant.study_id, "study")
    require_study_open(session, study)
    # one randomisation at a time per study: two would read the same free line
    session.execute(select(col(Study.id)).where(col(Study.id) == study.id).with_for_update())
    participant = session.scalars(select(Participant).where(col(Participant.id) == participant.id).with_for_update()
                                  .execution_options(populate_existing=True)).one()
    if participant.randomisation_number is not None:
        raise Conflict(f"{participant.screening_number} is already randomised as {participant.randomisation_number}.",
                       field="participant")
    site = fetch(session, Site, participant.site_id, "site")
    eligibility.confirm(session, actor, study, participant, site, consent_date, criteria)
    number = randomisation_number(session, actor, study, participant)
    now = utcnow()
    participant.randomisation_number, participant.randomised_at = number, now
    session.flush()
    ref = participant_ref(study, participant)
    audit.record(session, actor, "participant randomised", "participant", ref, field="randomisation_number",
                 new=number)
    planned = schedule(study, clock.today(site, now))
    for treatment, target, start, end in planned:
        session.add(Visit(participant_id=key(participant), treatment=treatment, target_date=target, window_start=start,
                          window_end=end, state=VisitState.planned.value))
        session.flush()
        audit.record(session, actor, "visit planned", "visit", f"{ref}/T{treatment}", field="window",
                     new={"target": target, "from": start, "to": end})
    counts.created(session, participant, [VisitState.planned] * len(planned))
    return participant


