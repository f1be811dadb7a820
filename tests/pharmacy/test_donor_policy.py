"""The study's donor policy for repeat doses (issue 13): the donor of every administered dose is
recorded in the sealed compartment (none for a placebo dose, written the same way), and a
`same_donor` study's later treatment is drawn only from kits of treatment 1's donor, for an active
participant; a placebo participant may have any placebo kit. When no kit fits, the pharmacist's
answer is the one "no kit" of both arms and the supply manager's shortage names the requirement."""
from __future__ import annotations

import json

from sqlalchemy import func, select

from cellbench import audit, clock, sealed, studies
from cellbench.models import AuditEvent, Donor, Kit, Participant, SealedKitShortage, Visibility

from ..conftest import actor_of
from ..trialworld import STUDY, donate, site_id, to_site
from .test_pharmacy import one_of_each_arm, treat


def donor_policy(db, policy: str) -> None:
    """Setup: the study's stored definition with another donor policy (the file says `any`)."""
    with db.write() as s:
        study = studies.by_code(s, STUDY)
        content = json.loads(study.content)
        content["schedule"]["donor_policy"] = policy
        study.content = json.dumps(content)


def donors_of(db, number: str) -> list[tuple[int, int, str | None]]:
    """(treatment, dose, donor code) of a participant, read as Sara (a logged, unblinded read)."""
    with db.write() as s:
        rows = sealed.dose_donors(s, actor_of(db, "sara"), studies.by_code(s, STUDY), number)
        return [(r.treatment, r.dose, r.donor_id and s.get(Donor, r.donor_id).code) for r in rows]


def treatment_one(db, number: str, kit_number: str) -> None:
    """Treatment 1 of a participant given with this kit, both glands, recorded through the door."""
    with db.write() as s:
        kit = s.scalars(select(Kit).where(Kit.number == kit_number)).one()
        for dose in (1, 2):
            sealed.record_dose_donor(s, actor_of(db, "ida"), studies.by_code(s, STUDY), number, 1, dose, kit)


def draw(db, number: str, treatment: int, times: int = 1) -> list[str | None]:
    with db.write() as s:
        study, where, day = studies.by_code(s, STUDY), site_id(db), clock.utcnow().date()
        found = [sealed.assign_kit(s, actor_of(db, "frida"), study, number, where, in_date_on=day,
                                   treatment=treatment) for _ in range(times)]
        return [kit.number if kit else None for kit in found]


def test_each_administered_dose_records_its_donor_sealed_and_a_placebo_dose_records_none(site, as_, db):
    donate(db, site.asc_lot, "DN-0007")
    arms = one_of_each_arm(as_, db)
    seq = _last_seq(db)
    for screening in arms.values():
        treat(as_, screening)
    with db.read() as s:
        numbers = {arm: s.scalars(select(Participant.randomisation_number)
                                  .where(Participant.screening_number == screening)).one()
                   for arm, screening in arms.items()}
        logged = [(e.action, e.field, e.visibility) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.seq > seq, AuditEvent.field == "dose donor"))]
    assert donors_of(db, numbers["active"]) == [(1, 1, "DN-0007"), (1, 2, "DN-0007")]
    assert donors_of(db, numbers["placebo"]) == [(1, 1, None), (1, 2, None)]
    # each gland's record is a logged door call, hidden from blinded readers of the trail
    assert logged == [("sealed assignment", "dose donor", Visibility.unblinded.value)] * 4
    with db.read() as s:
        assert audit.trail(s, actor_of(db, "ida"), audit.TrailFilter(action="sealed assignment"), limit=None) == []


def test_a_same_donor_study_draws_treatment_two_from_treatment_ones_donor_for_an_active_participant(db, trial_world):
    donate(db, trial_world.kits.asc_lot, "DN-0001")
    donate(db, "ASC-2026-0102", "DN-0002", identifier="A9999 26 654321 K")
    active, placebo = trial_world.participant("active"), trial_world.participant("placebo")
    first, second = trial_world.first_active, trial_world.second_active  # one donor each
    treatment_one(db, active, first[0])
    treatment_one(db, placebo, trial_world.first_placebo[0])
    to_site(db, first[1:] + second + trial_world.first_placebo[1:] + trial_world.second_placebo)
    # the file's policy, `any`: every kit of the arm may come
    assert set(draw(db, active, 2, 60)) == set(first[1:] + second)
    donor_policy(db, "same_donor")
    assert set(draw(db, active, 2, 40)) == set(first[1:])
    assert set(draw(db, active, 1, 60)) == set(first[1:] + second), "treatment 1 itself is not narrowed"
    # the placebo participant had no donor: every placebo kit, exactly as before
    assert set(draw(db, placebo, 2, 60)) == set(trial_world.first_placebo[1:] + trial_world.second_placebo)


def test_with_no_kit_of_the_donor_both_arms_get_the_same_no_kit_and_supply_is_told_the_requirement(
        db, trial_world, as_):
    donate(db, trial_world.kits.asc_lot, "DN-0001")
    donate(db, "ASC-2026-0102", "DN-0002", identifier="A9999 26 654321 K")
    donor_policy(db, "same_donor")
    active, placebo = trial_world.participant("active"), trial_world.participant("placebo")
    treatment_one(db, active, trial_world.first_active[0])
    treatment_one(db, placebo, trial_world.first_placebo[0])
    # the site holds only the other donor's active kits, and no placebo kit at all
    to_site(db, trial_world.second_active)
    seq = _last_seq(db)
    assert draw(db, active, 2) == draw(db, placebo, 2) == [None]
    with db.read() as s:
        doors = [(e.action, e.field, e.visibility) for e in s.scalars(select(AuditEvent).where(AuditEvent.seq > seq))]
        shortages = {r.randomisation_number: (r.arm, r.requirement) for r in s.scalars(select(SealedKitShortage))}
    # what the door leaves on the trail is the same for both (and hidden from blinded roles): its
    # assignment, then supply told at once (nobody has an address in this world: dead at once)
    told = [("notification queued", "recipients", Visibility.unblinded.value),
            ("notification dead", "state", Visibility.unblinded.value)]
    assert doors == [("sealed assignment", "kit assignment", Visibility.unblinded.value), *told] * 2
    assert shortages == {active: ("active", "treatment 2 from the donor of treatment 1 (donor DN-0001)"),
                         placebo: ("placebo", None)}
    assert "treatment 2 from the donor of treatment 1 (donor DN-0001)" in as_("sara").get("/supply/shortages").text
    # a kit of the donor arriving at the site ends the shortage for the active participant
    to_site(db, trial_world.first_active[1:2])
    assert draw(db, active, 2) == trial_world.first_active[1:2]


def _last_seq(db) -> int:
    with db.read() as s:
        return s.scalar(select(func.max(AuditEvent.seq))) or 0
