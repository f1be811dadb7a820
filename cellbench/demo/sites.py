"""The demo's people tied to their sites (users.scope): the Rigshospitalet team at RH-ENT, and a
second Danish ENT department, Aarhus University Hospital (AUH-ENT, in NCT07290946 only), with its
own pharmacist, preparer and investigator, participants and a shipment, so that each site's people
see and act on their own site only."""
from __future__ import annotations

from sqlmodel import Session

from .. import users
from ..audit import Actor
from ..models import Role, Study
from .manufacturing import DEMO_PASSWORD, DEMO_USERS, demo_email
from .manufacturing import credentials_text as _people_text

HOME, SECOND = "RH-ENT", "AUH-ENT"
SECOND_STUDY = "NCT07290946"
# username, printed name, roles: the second site's people (printed by `cellbench demo` too)
SECOND_SITE_USERS = [
    ("pharmacist-aarhus", "Line Aagaard", [Role.pharmacist]),
    ("preparer-aarhus", "Rasmus Vinther", [Role.preparer]),
    ("investigator-aarhus", "Sofie Kjær", [Role.investigator]),
]
HOME_SITE_USERS = ("pharmacist", "preparer", "investigator", "monitor")


def credentials_text() -> str:
    """What `cellbench demo` prints: every demo user, the second site's people included."""
    return _people_text(DEMO_USERS + SECOND_SITE_USERS)


def link_people(session: Session, by: Actor, loaded: dict[str, Study]) -> None:
    """The RH-ENT people at RH-ENT in both studies; the Aarhus people, created here, at AUH-ENT in
    NCT07290946. The monitor follows both sites of NCT07290946 and RH-ENT's NCT06805448."""
    for username in HOME_SITE_USERS:
        user = users.by_username(session, username)
        users.link(session, by, user, site=HOME)
        for code in sorted(loaded):
            users.link(session, by, user, study=code)
    users.link(session, by, users.by_username(session, "monitor"), site=SECOND)
    for username, name, roles in SECOND_SITE_USERS:
        user = users.create_user(session, by, username, name, DEMO_PASSWORD, [r.value for r in roles],
                                 email=demo_email(username))
        users.link(session, by, user, site=SECOND, study=SECOND_STUDY)
