"""Reading stored studies: by code or id, every study, a study's sites, and what its stored
definition says (arms, schedule, donor policy). Nothing here reveals which kit or participant is
on which arm."""
from __future__ import annotations

import json
from functools import lru_cache

from sqlalchemy import select
from sqlmodel import Session, col

from ..errors import NotFound
from ..models import Role, Site, Study, StudySite
from .definition import StudyDefinition

# Who reads studies (pages and API): everyone signed in, except a user who is only an administrator
# (users and roles, no trial data).
READERS = tuple(role for role in Role if role is not Role.admin)


@lru_cache(maxsize=32)
def _parse(content: str) -> StudyDefinition:
    return StudyDefinition.model_validate(json.loads(content))


def definition(study: Study) -> StudyDefinition:
    """The parsed definition as stored (cached: a given content never changes)."""
    return _parse(study.content)


def by_code(session: Session, code: str | None, *, field: str = "study") -> Study:
    study = session.scalars(select(Study).where(col(Study.code) == (code or "").strip().upper())).first()
    if study is None:
        raise NotFound(f"No study '{(code or '').strip()}'.", field=field)
    return study


def by_id(session: Session, study_id: int | None) -> Study:
    """The study a stored record (kit, blinded lot, run, quarantine) belongs to."""
    study = session.get(Study, study_id) if study_id is not None else None
    if study is None:
        raise NotFound(f"No study #{study_id}.", field="study")
    return study


def all_studies(session: Session) -> list[Study]:
    return list(session.scalars(select(Study).order_by(col(Study.code))))


def sites_of(session: Session, study: Study) -> list[tuple[Site, StudySite]]:
    rows = session.execute(select(Site, StudySite).join(StudySite, col(StudySite.site_id) == col(Site.id))
                           .where(col(StudySite.study_id) == study.id).order_by(col(Site.code))).all()
    return [(site, study_site) for site, study_site in rows]


def donor_policy(study: Study) -> str:
    """`any` or `same_donor` (as treatment 1): the study's rule for repeat doses."""
    return definition(study).schedule.donor_policy


def arm_codes(study: Study) -> tuple[str, ...]:
    return tuple(arm.code for arm in definition(study).arms)


def arm_for_kind(study: Study, product_kind: str) -> str:
    """The arm whose kits are filled with this kind of product (asc or placebo)."""
    return next(arm.code for arm in definition(study).arms if arm.product_kind == product_kind)


def placebo_arm(study: Study) -> str:
    return arm_for_kind(study, "placebo")


def window_of(study: Study, treatment: int) -> tuple[int, int]:
    """Days before and after its target day a treatment may be given: treatment 1 from its day to
    window_days later, a later one ± window_days (the study file's window)."""
    return (0, study.window_days) if treatment == 1 else (study.window_days, study.window_days)


def longest_visit_window_days(study: Study) -> int:
    """The longest window of any treatment visit of the study: how long a kit may wait for its visit."""
    return max(sum(window_of(study, treatment)) for treatment in range(1, study.treatments + 1))
