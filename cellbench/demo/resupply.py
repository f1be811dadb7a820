"""The demo's resupply: the supply manager's settings for every site and arm of both studies, set
through the service (each setting evaluates its site at once), so that the supply manager finds a
resupply proposal open for RH-ENT, whose NCT07290946 minimum is set above what the story leaves
there."""
from __future__ import annotations

from sqlmodel import Session

from .. import studies
from ..audit import Actor
from ..supply import resupply_desk

# study, site -> (minimum, maximum, do-not-ship days), the same for both arms
SETTINGS = {("NCT07290946", "AUH-ENT"): (2, 4, 30), ("NCT06805448", "RH-ENT"): (1, 3, 30),
            ("NCT07290946", "RH-ENT"): (12, 16, 30)}


def seed_resupply(session: Session, supply: Actor) -> None:
    for (code, site), (minimum, maximum, days) in SETTINGS.items():
        study = studies.by_code(session, code)
        for arm in studies.arm_codes(study):
            resupply_desk.set_setting(session, supply, study_code=code, site_code=site, arm=arm, min_stock=minimum,
                                      max_stock=maximum, do_not_ship_days=days)
