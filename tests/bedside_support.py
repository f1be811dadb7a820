"""The bedside check that must come before a dose is recorded (pharmacy.bedside), done the way the
investigator does it: the participant's card scanned, then each syringe label; and before it the
preparer's record the check asks for (each syringe drawn up and its label printed), made through
the service as the demo makes it. For the tests and flows that record administrations and are not
about the preparation or the check themselves."""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlmodel import col

from cellbench import pharmacy, sitecodes, users
from cellbench.demo import preparation as demo_preparation
from cellbench.models import Participant, PreparationSyringe, Role, Study, User, Visit

from .conftest import SECRET


def card_code(study: str, randomisation_number: str) -> str:
    return sitecodes.card_payload(study, randomisation_number, SECRET)


def syringe_code(kit_number: str, dose: int, randomisation_number: str) -> str:
    return sitecodes.syringe_payload(kit_number, dose, randomisation_number, SECRET)


def scanned_at_bedside(client, visit_api_url: str, doses: Iterable[int] = (1, 2)) -> None:
    """Through the API, as the investigator `client`: the card, then each dose's syringe label."""
    visit = client.get(visit_api_url)
    assert visit.status_code == 200, visit.text
    study, number, kit = visit.json()["study"], visit.json()["participant"], visit.json()["kit_number"]
    recorded_by_preparer(client.app.state.db, study, number, visit.json()["treatment"])
    for code in [card_code(study, number), *(syringe_code(kit, dose, number) for dose in doses)]:
        scanned = client.post(f"{visit_api_url}/bedside-scans", json={"code": code})
        assert scanned.status_code == 201, scanned.text


def checked_at_bedside(session, actor, visit, doses: Iterable[int] | None = None, secret: str = SECRET) -> None:
    """The same through the service, in the caller's transaction."""
    prepared_by_preparer(session, visit)
    ctx = pharmacy.context(session, visit)
    number, kit = ctx.participant.randomisation_number or "", ctx.held_kit.number
    pharmacy.bedside_scan(session, actor, visit, sitecodes.card_payload(ctx.study.code, number, secret), secret)
    for dose in doses or range(1, ctx.study.doses_per_treatment + 1):
        pharmacy.bedside_scan(session, actor, visit, sitecodes.syringe_payload(kit, dose, number, secret), secret)


def prepared_by_preparer(session, visit) -> None:
    """The preparer's full record of a visit in preparation (thaw end, units, masking, a syringe and
    its label per dose), by a preparer of the visit's site, unless it is already there."""
    drawn = session.scalar(select(col(PreparationSyringe.id)).where(col(PreparationSyringe.visit_id) == visit.id))
    if drawn is not None:
        return
    ctx = pharmacy.context(session, visit)
    preparer = next(actor for actor in (users.actor(session, user) for user in
                                        session.scalars(select(User).order_by(col(User.id))))
                    if Role.preparer in actor.roles and users.scope_refusal(actor, ctx.site, ctx.study) is None)
    demo_preparation.record(session, preparer, visit, lambda _hhmm: None, 0)


def recorded_by_preparer(db, study: str, randomisation_number: str, treatment: int = 1) -> None:
    """`prepared_by_preparer` for a visit named as pages name it, in a transaction of its own."""
    with db.write() as session:
        visit = session.scalars(select(Visit).join(Participant, col(Participant.id) == col(Visit.participant_id))
                                .join(Study, col(Study.id) == col(Participant.study_id))
                                .where(col(Study.code) == study,
                                       col(Participant.randomisation_number) == randomisation_number,
                                       col(Visit.treatment) == treatment)).one()
        prepared_by_preparer(session, visit)
