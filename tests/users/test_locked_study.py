"""After the database lock, blinded site work in the study stops: Ida enrols and randomises nobody
more, Frida assigns and dispenses no kit, Jonas prepares none and Ida records no administration.
Each refusal names the lock (pharmacy.lifecycle.study_locked), reads the same for both arms, and
records nothing."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from cellbench import study_data, users
from cellbench.models import AuditEvent

from ..conftest import PASSWORD
from ..pharmacy.test_pharmacy import (
    STUDY,
    assign,
    kits_at_site,
    one_of_each_arm,
    payload,
    randomised,
    sealed_randomisation_list,
    visit_url,
)

LOCKED = f"The database of {STUDY} is locked"


@pytest.fixture
def pharmacy_site(kit_world, db):
    sealed_randomisation_list(db)
    kits_at_site(db)
    return kit_world


def lock(db) -> None:
    with db.write() as s:
        study_data.lock(s, users.by_username(s, "sara"), study_data.studies.by_code(s, STUDY), PASSWORD)


def trial_events(db) -> int:
    with db.read() as s:
        return len(list(s.scalars(select(AuditEvent.seq).where(AuditEvent.entity_type.in_(["participant", "visit",
                                                                                            "kit"])))))


def refused_by_the_lock(answer, field: str = "study") -> str:
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field and answer.json()["error"].startswith(LOCKED), answer.json()
    return answer.json()["error"]


def test_after_the_lock_nobody_is_enrolled_or_randomised(pharmacy_site, as_, db):
    ida = as_("ida")
    assert ida.post("/api/v1/participants", json={"study": STUDY, "site": "RH-ENT",
                                                  "screening_number": "SCR-001"}).status_code == 201
    lock(db)
    before = trial_events(db)
    refused_by_the_lock(ida.post("/api/v1/participants", json={"study": STUDY, "site": "RH-ENT",
                                                               "screening_number": "SCR-002"}))
    refused_by_the_lock(ida.post(f"/api/v1/participants/{STUDY}/SCR-001/randomise"))
    assert trial_events(db) == before


def test_after_the_lock_every_visit_action_stops_the_same_for_both_arms(pharmacy_site, as_, db):
    arms = one_of_each_arm(as_, db)  # arm -> screening number, both randomised
    kits = {arm: assign(as_, screening).json()["kit_number"] for arm, screening in arms.items()}
    lock(db)
    before = trial_events(db)
    said = {}
    for arm, screening in arms.items():
        visit = visit_url(screening)
        said[arm] = [
            refused_by_the_lock(as_("frida").post(f"{visit}/dispense", json={"code": payload(kits[arm])})),
            refused_by_the_lock(as_("frida").post(f"{visit}/unallocate", json={"reason": "did not come"})),
            refused_by_the_lock(as_("frida").post(f"{visit_url(screening, 2)}/assign")),
        ]
    assert said["active"] == said["placebo"], "the lock's refusal reads the same for both arms"
    assert trial_events(db) == before


def test_after_the_lock_preparation_and_administration_stop(pharmacy_site, as_, db):
    kits = {}
    for screening in ("SCR-001", "SCR-002"):
        randomised(as_, screening)
        kits[screening] = assign(as_, screening).json()["kit_number"]
        assert as_("frida").post(f"{visit_url(screening)}/dispense",
                                 json={"code": payload(kits[screening])}).status_code == 200
    assert as_("jonas").post("/api/v1/preparation", json={"code": payload(kits["SCR-001"])}).status_code == 200
    lock(db)
    before = trial_events(db)
    refused_by_the_lock(as_("jonas").post("/api/v1/preparation", json={"code": payload(kits["SCR-002"])}))
    refused_by_the_lock(as_("ida").post(f"{visit_url('SCR-001')}/administrations",
                                        json={"gland": "left", "volume_ml": 1.0}))
    assert trial_events(db) == before


def test_before_the_lock_the_study_is_open_for_site_work(pharmacy_site, as_, db):
    randomised(as_, "SCR-001")
    assert assign(as_, "SCR-001").status_code == 200
