"""The trials as registered: randomisation asks the investigator to confirm the consent date and
each eligibility criterion of the study file, and records them; treatment 2 is due four months
after the actual first administration, with the study file's window, not after randomisation."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from cellbench import clock, pharmacy, qrpayload, studies, users
from cellbench.errors import InvalidInput
from cellbench.models import AuditEvent, EligibilityRecord, Participant, Visit

from ..bedside_support import checked_at_bedside
from ..conftest import SECRET, actor_of
from ..eligible import criteria, eligible
from .test_pharmacy import SITE, STUDY, later


def enrolled(db, screening: str) -> int:
    with db.write() as s:
        return pharmacy.enrol(s, actor_of(db, "ida"), studies.by_code(s, STUDY), site_code=SITE,
                              screening_number=screening).id


def randomise(db, participant_id: int, **confirmed) -> Participant:
    with db.write() as s:
        return pharmacy.randomise(s, actor_of(db, "ida"), s.get(Participant, participant_id), **confirmed)


def visits(db, participant_id: int) -> dict[int, Visit]:
    with db.read() as s:
        return {v.treatment: v for v in s.scalars(select(Visit).where(Visit.participant_id == participant_id))}


def refusal(db, participant_id: int, **confirmed) -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        randomise(db, participant_id, **confirmed)
    with db.read() as s:
        participant = s.get(Participant, participant_id)
        assert participant.randomisation_number is None, "a refusal changes nothing"
        assert s.get(EligibilityRecord, participant_id) is None
    return refused.value


# --- eligibility and consent ----------------------------------------------------------------------


def test_the_study_files_carry_the_registrys_eligibility_criteria_with_their_source(db):
    for code in ("NCT07290946", "NCT06805448"):
        definition, _sha = studies.load_study_file(studies.study_files()[0].parent / f"{code}.toml")
        assert [c.code for c in definition.eligibility if c.inclusion][:2] == ["I1", "I2"]
        assert all(c.source.startswith(f"{code} registry record, ") for c in definition.eligibility)
    definition, _sha = studies.load_study_file(studies.study_files()[0].parent / f"{STUDY}.toml")
    assert next(c.text for c in definition.eligibility if c.code == "I4") == "UWS of 0.05 mL/min to 0.5 ml/min"
    assert next(c.text for c in definition.eligibility if c.code == "E5") == "Previous submandibular surgery or biopsy"


def test_randomisation_is_refused_without_a_consent_date_or_with_one_in_the_future(site, db):
    participant = enrolled(db, "SCR-301")
    missing = refusal(db, participant, criteria=criteria(STUDY))
    assert missing.field == "consent_date" and "Enter the date of informed consent" in str(missing)
    tomorrow = (clock.today() + timedelta(days=1)).isoformat()
    future = refusal(db, participant, consent_date=tomorrow, criteria=criteria(STUDY))
    assert future.field == "consent_date"
    assert f"The date of informed consent {tomorrow} is in the future." in str(future)
    typo = refusal(db, participant, consent_date="2026-13-01", criteria=criteria(STUDY))
    assert typo.field == "consent_date"


def test_randomisation_is_refused_naming_the_criterion_not_confirmed(site, db):
    participant = enrolled(db, "SCR-302")
    answers = criteria(STUDY)
    refused = refusal(db, participant, consent_date=clock.today(), criteria={**answers, "I4": False})
    assert refused.field == "criterion_I4"
    assert str(refused) == ("Not randomised: Inclusion criterion I4 is not confirmed as met: UWS of 0.05 mL/min to "
                            "0.5 ml/min")
    del answers["E5"]  # not answered counts as not confirmed
    refused = refusal(db, participant, consent_date=clock.today(), criteria=answers)
    assert refused.field == "criterion_E5" and "Exclusion criterion E5 is not confirmed as absent" in str(refused)


def test_randomisation_records_the_consent_date_and_every_criterion_confirmed(site, db):
    participant = enrolled(db, "SCR-303")
    consent = clock.today() - timedelta(days=3)
    number = randomise(db, participant, consent_date=consent.isoformat(), criteria=criteria(STUDY))
    with db.read() as s:
        record = s.get(EligibilityRecord, participant)
        study = studies.by_code(s, STUDY)
        assert (record.consent_date, record.study_file_sha256, record.confirmed_by) == (
            consent, study.file_sha256, users.by_username(s, "ida").id)
        confirmed = json.loads(record.criteria)
        assert len(confirmed) == 16 and confirmed["I1"] == "met" and confirmed["E9"] == "absent"
        actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.entity_type == "participant")
                                 .order_by(AuditEvent.seq)))
        assert actions == ["participant enrolled", "eligibility confirmed", "participant randomised"]
    assert number.randomisation_number is not None


def test_the_api_and_the_page_ask_for_consent_and_criteria(site, as_, db):
    ida = as_("ida")
    ida.post("/api/v1/participants", json={"study": STUDY, "site": SITE, "screening_number": "SCR-304"})
    refused = ida.post(f"/api/v1/participants/{STUDY}/SCR-304/randomise", json={"consent_date": None})
    assert refused.status_code == 422 and refused.json()["field"] == "consent_date"
    page = ida.get(f"/participants/{STUDY}/SCR-304").text
    assert 'name="consent_date"' in page and 'name="criterion_I4"' in page and "UWS of 0.05 mL/min" in page
    done = ida.post(f"/api/v1/participants/{STUDY}/SCR-304/randomise", json=eligible(STUDY))
    assert done.status_code == 200 and done.json()["randomisation_number"]


# --- treatment 2 from the actual treatment 1 --------------------------------------------------------


def treat(db, participant_id: int, treatment: int = 1) -> None:
    """Assigned, dispensed, prepared and both glands injected now (service calls, as the pages make)."""
    with db.write() as s:
        visit = pharmacy.visits_of(s, s.get(Participant, participant_id))[treatment - 1]
        kit = pharmacy.assign(s, actor_of(db, "frida"), visit)
        label = qrpayload.make_payload(kit.number, SECRET)
    with db.write() as s:
        visit = pharmacy.visits_of(s, s.get(Participant, participant_id))[treatment - 1]
        pharmacy.dispense(s, actor_of(db, "frida"), visit, label, SECRET)
        pharmacy.start_preparation(s, actor_of(db, "jonas"), label, SECRET)
        checked_at_bedside(s, actor_of(db, "ida"), visit)
    for gland in (1, 2):
        with db.write() as s:
            visit = pharmacy.visits_of(s, s.get(Participant, participant_id))[treatment - 1]
            pharmacy.administer(s, actor_of(db, "ida"), visit, gland=gland, volume_ml="1.0")


def test_treatment_2_is_due_four_months_after_the_actual_treatment_1_with_the_study_files_window(site, db,
                                                                                                  monkeypatch):
    participant = enrolled(db, "SCR-305")
    randomise(db, participant, **eligible(STUDY))
    randomised_on = clock.today()
    planned = visits(db, participant)[2]
    assert planned.target_date == randomised_on + timedelta(days=120)  # until treatment 1 is given
    later(monkeypatch, db, days=9)  # treatment 1 on day 9 of its 14-day window
    treated_on = clock.today()
    treat(db, participant)
    with db.read() as s:
        window = studies.by_code(s, STUDY).window_days
    second = visits(db, participant)[2]
    assert (second.target_date, second.window_start, second.window_end) == (
        treated_on + timedelta(days=120), treated_on + timedelta(days=120 - window),
        treated_on + timedelta(days=120 + window))
    with db.read() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "visit rescheduled")).one()
        assert event.entity_id.endswith("/T2") and event.reason == f"treatment 1 first administered on {treated_on}"
        assert str(randomised_on + timedelta(days=120)) in event.old_value
        assert str(treated_on + timedelta(days=120)) in event.new_value
