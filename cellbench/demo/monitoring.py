"""The demo's monitoring visit: the monitor verifies RH-ENT's accountability of NCT07290946 against
source and signs it, in the middle of the story, so that the kits that move afterwards show on the
accountability page as "changed since verification" (what a monitor sees at the next visit)."""
from __future__ import annotations

from sqlmodel import Session

from .. import accountability, studies
from ..models import User


def verify_accountability(session: Session, monitor: User, password: str, study_code: str, site_code: str) -> None:
    study = studies.by_code(session, study_code)
    site = accountability.verification.site_of(session, study, site_code)
    now = accountability.standing(session, study, site)
    accountability.verify(session, monitor, password, study, site_code, seen_hash=now.figures_hash,
                          sequence=now.next_sequence, comment="Monitoring visit 1: stock and the dispensing "
                          "log checked against the pharmacy's source records.")
