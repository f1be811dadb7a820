"""The bedside check that must come before a dose is recorded (pharmacy.bedside), done the way the
investigator does it: the participant's card scanned, then each syringe label. For the tests and
flows that record administrations and are not about the check itself."""
from __future__ import annotations

from collections.abc import Iterable

from cellbench import pharmacy, sitecodes

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
    for code in [card_code(study, number), *(syringe_code(kit, dose, number) for dose in doses)]:
        scanned = client.post(f"{visit_api_url}/bedside-scans", json={"code": code})
        assert scanned.status_code == 201, scanned.text


def checked_at_bedside(session, actor, visit, doses: Iterable[int] | None = None, secret: str = SECRET) -> None:
    """The same through the service, in the caller's transaction."""
    ctx = pharmacy.context(session, visit)
    number, kit = ctx.participant.randomisation_number or "", ctx.held_kit.number
    pharmacy.bedside_scan(session, actor, visit, sitecodes.card_payload(ctx.study.code, number, secret), secret)
    for dose in doses or range(1, ctx.study.doses_per_treatment + 1):
        pharmacy.bedside_scan(session, actor, visit, sitecodes.syringe_payload(kit, dose, number, secret), secret)
