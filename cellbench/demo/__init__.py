"""Demo data for `cellbench serve --demo` and `cellbench demo`, made through the service functions.

Parts: `manufacturing` (users, specifications, materials, equipment, donors, batch records, kits),
`release` (QC, reviews, certification and sponsor release of new lots) and `trial` (both trials at
the site over five months under a forward-only story clock, `story_clock`). Nothing imports this package but the
command line, the tests and the benchmarks.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session, col

from ..audit import Actor
from ..models import Lot, Role
from . import manufacturing, sites, trial
from . import release as release_demo
from .manufacturing import (
    DEMO_PASSWORD,
    DEMO_USERS,
    EQUIPMENT,
    MATERIALS,
    asc_lot,
    asc_values,
    create_users,
    default_values,
    eligible_donation,
    placebo_lot,
    placebo_values,
    run_step,
    seed_basics,
    seed_kits,
    seed_lots,
    seed_records,
    seed_studies,
    store_every_vial,
    wall_today,
)
from .release import demo_results, passing_value, seed_release_demo
from .sites import credentials_text


def seed(session: Session, by: Actor, *, release: bool = True) -> list[tuple[str, str, list[Role]]]:
    """The demo users (what `cellbench demo` prints), the batch records (`seed_records`) and, unless
    `release` is False (tests that need only batch records), the QC and release lots, the kits and,
    in a fresh database, the trial story that starts months ago and holds the rest (demo_trial)."""
    fresh = session.scalars(select(col(Lot.id))).first() is None
    if fresh and release and trial.story_fits(session):
        trial.seed_trial(session, by)
        return manufacturing.DEMO_USERS + sites.SECOND_SITE_USERS
    manufacturing.create_users(session, by)
    if fresh:
        manufacturing.seed_records(session)
        if release:
            release_demo.seed_release_demo(session)
            manufacturing.seed_kits(session)
    return manufacturing.DEMO_USERS
