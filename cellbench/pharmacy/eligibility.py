"""Eligibility at randomisation: the investigator confirms the date of informed consent and each
eligibility criterion of the study file (inclusion met, exclusion absent); a missing or wrong
answer refuses the randomisation, naming the criterion, and changes nothing. What was confirmed is
kept (`EligibilityRecord`) and audited in the randomisation's transaction. The same for both arms:
it is asked before the sealed list is read."""
from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date

from sqlmodel import Session

from .. import audit, clock, inputs, studies
from ..audit import Actor
from ..clock import utcnow
from ..custody import key, person
from ..errors import InvalidInput
from ..models import EligibilityRecord, Participant, Site, Study
from ..studies import Criterion
from .records import participant_ref

YES = frozenset({"yes", "true", "1", "on", "met", "absent"})


def consent_refusal(consent: date | None, today: date) -> str | None:
    """Informed consent is given, and not on a day still to come."""
    if consent is None:
        return "Enter the date of informed consent: a participant is randomised only after consenting."
    if consent > today:
        return f"The date of informed consent {consent.isoformat()} is in the future."
    return None


def criterion_refusal(criterion: Criterion, answer: object) -> str | None:
    """The investigator confirmed this criterion: an inclusion criterion met, an exclusion one absent."""
    if str(answer if answer is not None else "").strip().lower() in YES or answer is True:
        return None
    if criterion.inclusion:
        return f"Inclusion criterion {criterion.code} is not confirmed as met: {criterion.text}"
    return f"Exclusion criterion {criterion.code} is not confirmed as absent: {criterion.text}"


def confirm(session: Session, actor: Actor, study: Study, participant: Participant, site: Site,
            consent_date: date | str | None, criteria: Mapping[str, object] | None) -> EligibilityRecord:
    """Check and record the confirmation (before the sealed list is read); refused, naming the field."""
    typed = consent_date if isinstance(consent_date, date) or (consent_date or "").strip() else None
    consent = inputs.past_day(typed, "consent_date", "date of informed consent") if typed else None
    if why := consent_refusal(consent, clock.today(site)):
        raise InvalidInput(why, field="consent_date")
    assert consent is not None, "consent_refusal refuses a missing date"
    answers = dict(criteria or {})
    listed = studies.definition(study).eligibility
    for criterion in listed:
        if why := criterion_refusal(criterion, answers.get(criterion.code)):
            raise InvalidInput(f"Not randomised: {why}", field=f"criterion_{criterion.code}")
    confirmed = {c.code: "met" if c.inclusion else "absent" for c in listed}
    row = EligibilityRecord(participant_id=key(participant), consent_date=consent, criteria=json.dumps(confirmed),
                            study_file_sha256=study.file_sha256, confirmed_by=person(actor), confirmed_at=utcnow())
    session.add(row)
    session.flush()
    audit.record(session, actor, "eligibility confirmed", "participant", participant_ref(study, participant),
                 field="eligibility", new={"consent_date": consent, "criteria": confirmed})
    return row
