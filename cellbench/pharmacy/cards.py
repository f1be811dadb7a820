"""The participant's identification card, printed once the participant is randomised (it carries
the randomisation number), by the investigator or the site's pharmacist; every printing is
audited under the participant. Nothing on it depends on the arm (`labels.CardText` has none)."""
from __future__ import annotations

from sqlmodel import Session

from .. import audit, sitecodes, users
from ..audit import Actor
from ..clock import utcnow
from ..custody import fetch
from ..errors import InvalidInput
from ..labels import CardText, render_participant_card_pdf
from ..models import Participant, Role, Site, Study
from .records import participant_ref

CARD_PRINTERS = (Role.investigator, Role.pharmacist)


def participant_card(session: Session, actor: Actor, participant: Participant, secret_key: str) -> bytes:
    """The card's PDF (85.6 x 54 mm) with its signed QR of study and randomisation number."""
    users.require_role(actor, *CARD_PRINTERS)
    users.require_scope(actor, participant.site_id, participant.study_id, field="participant")
    number = participant.randomisation_number
    if number is None:
        raise InvalidInput(f"{participant.screening_number} is not randomised yet: the card carries the "
                           "randomisation number.", field="participant")
    study = fetch(session, Study, participant.study_id, "study")
    site = fetch(session, Site, participant.site_id, "site")
    now = utcnow()
    pdf = render_participant_card_pdf(CardText(
        study_code=study.code, short_title=study.short_title, randomisation_number=number,
        site=f"{site.code} · {site.name}", qr_payload=sitecodes.card_payload(study.code, number, secret_key),
        emergency_phone=study.emergency_phone), creation_date=now)
    audit.record(session, actor, "participant card printed", "participant", participant_ref(study, participant),
                 field="card", new=number)
    return pdf
