"""Emergency unblinding: one participant's arm, to the investigator, once, after her password and a
reason; signed, audited, and told to the sponsor. Everyone else reads who, when and why."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from cellbench import audit, signatures, unblinding, users
from cellbench.models import AuditEvent, Notification, Participant, Signature, Unblinding, User

from .conftest import PASSWORD, actor_of
from .eligible import eligible
from .trialworld import STUDY, administer, build_trial, enrol, ship

ACTIVE_NAME = "Allogeneic adipose-derived mesenchymal stem cells"
PLACEBO_NAME = "Placebo: isotonic saline"
EMAIL = "emergency-unblinding@example.invalid"


@pytest.fixture
def trial(db, trial_world):
    """An active and a placebo participant, each given a kit of the first blinded lot in one shipment."""
    world = trial_world
    a, b = world.participant("active"), world.participant("placebo")
    enrol(db, a, "S-001")
    enrol(db, b, "S-002")
    administer(db, a, world.first_active[0])
    administer(db, b, world.first_placebo[0])
    world.a, world.b = a, b
    return world


def _form(client, participant, password=PASSWORD, reason_code="serious_adverse_event",
          reason="Anaphylactic reaction an hour after injection; treating physician needs the arm"):
    return client.submit("/unblinding", {"study": STUDY, "participant": participant, "reason_code": reason_code,
                                         "reason": reason, "password": password})


def _api(client, participant, password=PASSWORD, reason_code="serious_adverse_event", reason="SAE: hospitalised"):
    return client.post("/api/v1/unblindings", json={"study": STUDY, "participant": participant,
                                                    "reason_code": reason_code, "reason": reason, "password": password})


def test_an_investigator_with_a_reason_and_her_password_sees_that_one_participants_arm_once(db, trial, as_):
    ida = as_("ida")
    page = _form(ida, trial.a)
    assert page.status_code == 200, page.text
    assert ACTIVE_NAME in page.text and 'data-arm="active"' in page.text
    assert PLACEBO_NAME not in page.text

    with db.read() as s:
        p = s.scalars(select(Participant).where(Participant.randomisation_number == trial.a)).one()
        other = s.scalars(select(Participant).where(Participant.randomisation_number == trial.b)).one()
        row = s.scalars(select(Unblinding)).one()
        sig = s.get(Signature, row.signature_id)
        note = s.scalars(select(Notification)).one()
        events = {e.action: e for e in s.scalars(select(AuditEvent))}
    assert p.unblinded_at is not None and other.unblinded_at is None, "only that participant is unblinded"
    assert (row.reason_code, row.by_user) == ("serious_adverse_event", people_id(db, "ida"))
    assert "Anaphylactic" in row.reason
    assert (sig.meaning, sig.signer_name, sig.entity_type) == ("unblinded", "Ida Investigator", "unblinding")
    assert "active" not in sig.content, "the signed content is readable where the arm is not"
    assert events["signed"].visibility == "unblinded"
    assert note.to_address == EMAIL and note.sent_at is None
    assert trial.a in note.subject and "Ida Investigator" in note.body and "Anaphylactic" in note.body
    assert "Arm: active" in note.body
    told = events["emergency unblinding"]
    assert (told.visibility, told.entity_id) == ("all", f"{STUDY}/S-001") and "Serious adverse event" in told.reason
    revealed = events["arm revealed"]
    assert (revealed.visibility, revealed.new_value) == ("unblinded", "active")
    assert events["sealed assignment"].field == "emergency unblinding"

    again = ida.get(f"/unblinding/{STUDY}/{trial.a}")
    assert again.status_code == 200 and "Anaphylactic" in again.text
    assert ACTIVE_NAME not in again.text and "arm revealed" not in again.text, "shown once, then never again"
    with db.read() as s:
        assert signatures.verify_all(s)[1] == []


def people_id(db, username: str) -> int:
    with db.read() as s:
        return users.by_username(s, username).id


def test_the_api_returns_the_arm_of_a_placebo_participant_in_its_response(trial, as_):
    response = _api(as_("ida"), trial.b)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["participant"], body["arm"], body["arm_name"]) == (trial.b, "placebo", PLACEBO_NAME)
    assert body["signature"]["meaning"] == "unblinded" and body["notified"] == EMAIL


def test_a_wrong_password_reveals_nothing_and_the_attempt_is_audited(db, trial, as_):
    response = _api(as_("ida"), trial.a, password="not my password at all")
    assert response.status_code == 401
    assert response.json()["field"] == "password"
    assert "arm" not in response.text and ACTIVE_NAME not in response.text
    page = _form(as_("ida"), trial.a, password="still not my password")
    assert page.status_code == 401 and ACTIVE_NAME not in page.text and "Wrong password" in page.text
    with db.read() as s:
        assert s.scalars(select(Unblinding)).all() == []
        assert s.scalars(select(Notification)).all() == []
        participant = s.scalars(select(Participant).where(Participant.randomisation_number == trial.a)).one()
        assert participant.unblinded_at is None
        refused = s.scalars(select(AuditEvent).where(AuditEvent.action == "emergency unblinding refused")).all()
        assert [(e.entity_id, e.user_name) for e in refused] == [(f"{STUDY}/S-001", "Ida Investigator")] * 2
        assert "Serious adverse event" in refused[0].reason and "wrong password" in refused[0].reason
        assert s.scalars(select(AuditEvent).where(AuditEvent.action == "sealed assignment")).all() == []
        assert s.scalars(select(User).where(User.username == "ida")).one().failed_logins == 2


def test_a_reason_is_required_coded_and_in_words(db, trial, as_):
    ida = as_("ida")
    assert _api(ida, trial.a, reason_code="curiosity").json()["field"] == "reason_code"
    missing = _api(ida, trial.a, reason="  ")
    assert (missing.status_code, missing.json()["field"]) == (422, "reason")
    unknown = _api(ida, "X-999")
    assert (unknown.status_code, unknown.json()["field"]) == (404, "participant")
    with db.read() as s:
        assert s.scalars(select(Unblinding)).all() == []


@pytest.mark.parametrize("who", ["mette", "frida", "jonas", "adam", "sara", "anna"])
def test_only_an_investigator_may_unblind(trial, as_, who):
    response = _api(as_(who), trial.a)
    assert response.status_code == 403
    assert "arm" not in response.text


def _normalised(text: str, numbers: dict[str, str]) -> str:
    for old, new in numbers.items():
        text = text.replace(old, new)
    text = re.sub(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[ ]?[+-]\d{2}:\d{2})?", "<time>", text)
    text = re.sub(r"\b[0-9a-f]{64}\b", "<hash>", text)
    return re.sub(r"\d+ (minutes?|hours?|days?) ago", "<age>", text)


def test_a_monitor_reads_who_when_and_why_and_the_same_for_an_active_and_a_placebo_participant(db, trial, as_):
    for participant in (trial.a, trial.b):
        assert _form(as_("ida"), participant, reason="Severe swelling at the injection site").status_code == 200
    mette = as_("mette")
    listing = mette.get(f"/unblinding?study={STUDY}")
    assert listing.status_code == 200 and "Severe swelling" in listing.text and "Ida Investigator" in listing.text
    kit_a, kit_b = trial.first_active[0], trial.first_placebo[0]
    pages = {}
    for own, other, own_kit, other_kit in ((trial.a, trial.b, kit_a, kit_b), (trial.b, trial.a, kit_b, kit_a)):
        page = mette.get(f"/unblinding/{STUDY}/{own}")
        api = mette.get(f"/api/v1/unblindings?study={STUDY}&participant={own}")
        assert page.status_code == 200 and api.status_code == 200
        for text in (page.text, api.text):
            assert ACTIVE_NAME not in text and PLACEBO_NAME not in text and "arm revealed" not in text
        names = {own: "<P1>", other: "<P2>", own_kit: "<K1>", other_kit: "<K2>", "S-001": "<S>", "S-002": "<S>"}
        pages[own] = (_normalised(page.text, names), _normalised(api.text, names))
    assert pages[trial.a] == pages[trial.b], "the blinded record reads the same for both arms"
    assert mette.get("/outbox").status_code == 403
    assert mette.get("/api/v1/outbox").status_code == 403
    with db.read() as s:
        seen = audit.trail(s, actor_of(db, "mette"), audit.TrailFilter(), limit=None)
    assert not [e for e in seen if e.field == "arm" or e.action == "sealed assignment"]
    assert {e.action for e in seen} >= {"emergency unblinding", "notification queued"}


def test_inferable_lists_the_participants_who_shared_a_blinded_lot_or_a_shipment(db, people, effective_specs, as_):
    world = build_trial(db)
    a, b, d, e = (world.participant("active"), world.participant("placebo"), world.participant("active", 1),
                  world.participant("placebo", 1))
    for n, number in enumerate((a, b, d, e)):
        enrol(db, number, f"S-{n:03d}")
    administer(db, a, world.first_active[0])  # blinded lot 1, shipment 1
    administer(db, b, world.first_placebo[0])  # blinded lot 1, shipment 2
    administer(db, d, world.second_active[0])  # blinded lot 2, shipment 1
    administer(db, e, world.second_placebo[0])  # blinded lot 2, shipment 2
    ship(db, "SH-2026-0001", [world.first_active[0], world.second_active[0]])
    ship(db, "SH-2026-0002", [world.first_placebo[0], world.second_placebo[0]])
    body = _api(as_("ida"), a).json()
    found = {o["participant"]: o["why"] for o in body["inferable"]}
    assert set(found) == {b, d}, "e shares neither a blinded lot nor a shipment with a"
    assert found[b] == [f"kit {world.first_placebo[0]} is from blinded lot {world.first_lot}, as is a kit of this "
                        "participant"]
    assert found[d] == [f"kit {world.second_active[0]} travelled in shipment SH-2026-0001, with a kit of this "
                        "participant"]
    with db.read() as s:
        assert b in s.scalars(select(Unblinding)).one().inferable
        assert f"- {d} (RH-ENT)" in s.scalars(select(Notification)).one().body


def test_a_second_unblinding_of_the_same_participant_is_recorded_again(db, trial, as_):
    ida = as_("ida")
    assert _api(ida, trial.a, reason="first SAE").status_code == 201
    with db.read() as s:
        first_at = s.scalars(select(Participant).where(Participant.randomisation_number == trial.a)).one().unblinded_at
    again = _api(ida, trial.a, reason_code="other", reason="second treating physician asks")
    assert again.status_code == 201 and again.json()["arm"] == "active"
    with db.read() as s:
        assert len(s.scalars(select(Unblinding)).all()) == 2
        assert len(s.scalars(select(Notification)).all()) == 2
        participant = s.scalars(select(Participant).where(Participant.randomisation_number == trial.a)).one()
        assert participant.unblinded_at == first_at
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "emergency unblinding")).all()
    assert "unblinding 2 of this participant" in events[-1].reason
    records = as_("mette").get(f"/api/v1/unblindings?study={STUDY}&participant={trial.a}").json()
    assert [r["reason"] for r in records] == ["second treating physician asks", "first SAE"]


def test_the_outbox_is_read_in_full_by_unblinded_roles_and_marked_sent_by_the_mail_transport(db, trial, as_):
    _api(as_("ida"), trial.a)
    sara = as_("sara")
    pending = sara.get("/api/v1/outbox").json()
    assert len(pending) == 1 and "Arm: active" in pending[0]["body"] and pending[0]["to_address"] == EMAIL
    page = sara.get("/outbox")
    assert "Arm: active" in page.text and "Mark sent" in page.text

    own = as_("ida").get("/api/v1/outbox").json()
    assert [(n["subject"], n["body"]) for n in own] == [(pending[0]["subject"], None)]
    ida_page = as_("ida").get("/outbox")
    assert trial.a in ida_page.text and "Arm:" not in ida_page.text and "Mark sent" not in ida_page.text
    with db.write() as s:  # another investigator's outbox holds nothing of Ida's
        users.create_user(s, users.cli_actor(), "iris", "Iris Investigator", PASSWORD, ["investigator"])
    from .conftest import sign_in
    assert sign_in(as_("ida").app, "iris").get("/api/v1/outbox").json() == []
    assert as_("frida").get("/api/v1/outbox").status_code == 403
    assert as_("ida").post(f"/api/v1/outbox/{pending[0]['id']}/sent").status_code == 403

    sent = sara.post(f"/api/v1/outbox/{pending[0]['id']}/sent")
    assert sent.status_code == 200 and sent.json()["sent_at"]
    assert sara.get("/api/v1/outbox").json() == []
    assert [n["id"] for n in sara.get("/api/v1/outbox?state=sent").json()] == [pending[0]["id"]]
    twice = sara.post(f"/api/v1/outbox/{pending[0]['id']}/sent")
    assert twice.status_code == 409
    with db.read() as s:
        sent = s.scalars(select(AuditEvent).where(AuditEvent.action == "notification sent")).one()
        assert sent.user_name == "Sara Supply"


def test_the_page_form_marks_a_message_sent(db, trial, as_):
    _api(as_("ida"), trial.a)
    with db.read() as s:
        note_id = s.scalars(select(Notification.id)).one()
    response = as_("anna").submit(f"/outbox/{note_id}/sent")
    assert response.status_code == 303
    with db.read() as s:
        assert s.get(Notification, note_id).sent_at is not None
    assert unblinding.REASON_CODES["pregnancy"] == "Pregnancy"


def test_a_participants_audit_history_is_one_list_under_study_and_screening_number(db, people, effective_specs):
    """From enrolment (no randomisation number yet) to emergency unblinding, every event about a
    participant, the sealed compartment's log of its doors included, is under "<study>/<screening>"."""
    from cellbench import pharmacy, studies

    from .trialworld import SITE, to_site

    world = build_trial(db)
    to_site(db, world.first_active + world.first_placebo)
    with db.write() as s:
        participant_id = pharmacy.enrol(s, actor_of(db, "ida"), studies.by_code(s, STUDY), site_code=SITE,
                                        screening_number="SCR-100").id
    with db.write() as s:
        number = pharmacy.randomise(s, actor_of(db, "ida"), s.get(Participant, participant_id),
                                    **eligible(STUDY)).randomisation_number
    with db.write() as s:
        visit = pharmacy.visits_of(s, s.get(Participant, participant_id))[0]
        assert pharmacy.assign(s, actor_of(db, "frida"), visit) is not None
    with db.write() as s:
        unblinding.unblind(s, users.by_username(s, "ida"), PASSWORD, studies.by_code(s, STUDY), number,
                           "serious_adverse_event", "SAE: hospitalised")
    ref = f"{STUDY}/SCR-100"
    with db.read() as s:
        history = audit.history(s, actor_of(db, "anna"), "participant", ref)
        blinded_history = audit.history(s, actor_of(db, "mette"), "participant", ref)
        doors = s.scalars(select(AuditEvent).where(AuditEvent.action == "sealed assignment")).all()
        under_number = s.scalars(select(AuditEvent).where(AuditEvent.entity_id == number)).all()
    assert [e.action for e in history] == ["participant enrolled", "eligibility confirmed", "participant randomised",
                                           "emergency unblinding", "arm revealed"]
    assert [e.action for e in blinded_history] == ["participant enrolled", "eligibility confirmed",
                                                   "participant randomised", "emergency unblinding"], \
        "the arm stays unblinded"
    assert {(e.field, e.entity_id) for e in doors} == {("randomisation", ref), ("kit assignment", ref),
                                                      ("emergency unblinding", ref)}
    assert under_number == [], "nothing is filed under the randomisation number"
