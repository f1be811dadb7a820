"""Emergency unblinding: one participant's arm, to the investigator, once, after her password and a
reason; signed, audited, and told to the sponsor. Everyone else reads who, when and why."""
from __future__ import annotations

import re
from fractions import Fraction

import pytest
from sqlalchemy import select

from cellbench import audit, signatures, unblinding, unblinding_impact, users
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
        note, notice = s.scalars(select(Notification).order_by(Notification.audience.desc())).all()
        events = {e.action: e for e in s.scalars(select(AuditEvent))}
    assert p.unblinded_at is not None and other.unblinded_at is None, "only that participant is unblinded"
    assert (row.reason_code, row.by_user) == ("serious_adverse_event", people_id(db, "ida"))
    assert "Anaphylactic" in row.reason
    assert (sig.meaning, sig.signer_name, sig.entity_type) == ("unblinded", "Ida Investigator", "unblinding")
    assert "active" not in sig.content, "the signed content is readable where the arm is not"
    assert events["signed"].visibility == "unblinded"
    assert note.to_address == EMAIL and note.sent_at is None
    assert trial.a in note.subject and "Ida Investigator" in note.body and "Anaphylactic" in note.body
    assert "Arm: active" in note.body and note.audience == "unblinded"
    assert notice.audience == "blinded" and notice.subject == note.subject and "Arm" not in notice.body, \
        "the site's investigators and monitors are told that, not what"
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
    notices = mette.get("/notifications")
    assert notices.status_code == 200
    assert "Arm:" not in notices.text and ACTIVE_NAME not in notices.text and PLACEBO_NAME not in notices.text
    assert mette.get("/api/v1/outbox").status_code == 403
    with db.read() as s:
        seen = audit.trail(s, actor_of(db, "mette"), audit.TrailFilter(), limit=None)
    assert not [e for e in seen if e.field == "arm" or e.action == "sealed assignment"]
    assert {e.action for e in seen} >= {"emergency unblinding", "notification queued"}


def test_a_shared_blinded_lot_of_both_arms_reveals_nothing_certain_and_a_one_arm_shipment_gives_its_kits_away(
        db, people, effective_specs, as_):
    world = build_trial(db)
    a, b, d, e = (world.participant("active"), world.participant("placebo"), world.participant("active", 1),
                  world.participant("placebo", 1))
    for n, number in enumerate((a, b, d, e)):
        enrol(db, number, f"S-{n:03d}")
    administer(db, a, world.first_active[0])  # blinded lot 1, shipment 1
    administer(db, b, world.first_placebo[0])  # blinded lot 1, shipment 2
    administer(db, d, world.second_active[0])  # blinded lot 2, shipment 1
    administer(db, e, world.second_placebo[0])  # blinded lot 2, shipment 2
    ship(db, "SH-2026-0001", [world.first_active[0], world.second_active[0]])  # one arm only
    ship(db, "SH-2026-0002", [world.first_placebo[0], world.second_placebo[0]])
    assert _api(as_("ida"), a).status_code == 201
    impact = as_("anna").get(f"/api/v1/unblindings/{STUDY}/{a}/impact").json()
    why = {f["participant"]: (f["strength"], " ".join(f["why"])) for f in impact["findings"]}
    assert why[d][0] == "certain" and (f"kit {world.second_active[0]} is from shipment SH-2026-0001, which holds kits "
                                       "of one arm only") in why[d][1]
    assert not [p for p, (_s, text) in why.items() if "blinded lot" in text], "a lot of both arms gives nobody away"
    assert not [p for p, (_s, text) in why.items() if "SH-2026-0002" in text]
    assert any(note.startswith(f"Blinded lot {world.first_lot} holds kits of both arms: nothing certain follows")
               for note in impact["notes"])
    assert impact["kits"] == [{"kit": world.first_active[0], "strength": "certain",
                               "why": "this participant's own kit (treatment 1)"}]


def test_a_second_unblinding_of_the_same_participant_is_recorded_again(db, trial, as_):
    ida = as_("ida")
    assert _api(ida, trial.a, reason="first SAE").status_code == 201
    with db.read() as s:
        first_at = s.scalars(select(Participant).where(Participant.randomisation_number == trial.a)).one().unblinded_at
    again = _api(ida, trial.a, reason_code="other", reason="second treating physician asks")
    assert again.status_code == 201 and again.json()["arm"] == "active"
    with db.read() as s:
        assert len(s.scalars(select(Unblinding)).all()) == 2
        assert len(s.scalars(select(Notification).where(Notification.audience == "unblinded")).all()) == 2
        participant = s.scalars(select(Participant).where(Participant.randomisation_number == trial.a)).one()
        assert participant.unblinded_at == first_at
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "emergency unblinding")).all()
    assert "unblinding 2 of this participant" in events[-1].reason
    records = as_("mette").get(f"/api/v1/unblindings?study={STUDY}&participant={trial.a}").json()["unblindings"]
    assert [r["reason"] for r in records] == ["second treating physician asks", "first SAE"]


def test_the_outbox_is_read_in_full_by_unblinded_roles_and_marked_sent_by_the_mail_transport(db, trial, as_):
    _api(as_("ida"), trial.a)
    sara = as_("sara")
    pending = sara.get("/api/v1/outbox").json()["messages"]
    assert len(pending) == 1 and "Arm: active" in pending[0]["body"] and pending[0]["to_address"] == EMAIL
    page = sara.get("/outbox")
    assert "Arm: active" in page.text and "Mark sent" in page.text

    own = as_("ida").get("/api/v1/outbox").json()["messages"]
    assert [(n["subject"], n["body"]) for n in own] == [(pending[0]["subject"], None)]
    ida_page = as_("ida").get("/outbox")
    assert trial.a in ida_page.text and "Arm:" not in ida_page.text and "Mark sent" not in ida_page.text
    with db.write() as s:  # another investigator's outbox holds nothing of Ida's
        users.create_user(s, users.cli_actor(), "iris", "Iris Investigator", PASSWORD, ["investigator"])
    from .conftest import sign_in
    assert sign_in(as_("ida").app, "iris").get("/api/v1/outbox").json() == {"messages": [], "next": None}
    assert as_("frida").get("/api/v1/outbox").status_code == 403
    assert as_("ida").post(f"/api/v1/outbox/{pending[0]['id']}/sent").status_code == 403

    sent = sara.post(f"/api/v1/outbox/{pending[0]['id']}/sent")
    assert sent.status_code == 200 and sent.json()["sent_at"]
    assert sara.get("/api/v1/outbox").json() == {"messages": [], "next": None}
    assert [n["id"] for n in sara.get("/api/v1/outbox?state=sent").json()["messages"]] == [pending[0]["id"]]
    twice = sara.post(f"/api/v1/outbox/{pending[0]['id']}/sent")
    assert twice.status_code == 409
    with db.read() as s:
        sent = s.scalars(select(AuditEvent).where(AuditEvent.action == "notification sent")).one()
        assert sent.user_name == "Sara Supply"


def test_the_page_form_marks_a_message_sent(db, trial, as_):
    _api(as_("ida"), trial.a)
    with db.read() as s:
        note_id = s.scalars(select(Notification.id).where(Notification.audience == "unblinded")).one()
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


# --- what an unblinding reveals: for unblinded roles and the sponsor only ---------------------------------


def sealed_blocks(db, size: int, blocks: int = 3) -> list[list[tuple[str, str]]]:
    """A further sealed randomisation list in permuted blocks of `size`: its blocks, each a list of
    (participant number, arm), read as the supply manager."""
    from cellbench import sealed, studies
    from cellbench.models import SealedList
    from cellbench.supply import lists

    with db.write() as s:
        list_id = lists.generate(s, actor_of(db, "sara"), studies.by_code(s, STUDY), "randomisation", size * blocks,
                                 seed=f"blocks-of-{size}", block_sizes=str(size)).id
    with db.write() as s:
        sara = users.by_username(s, "sara")
        sealed.seal_list(s, sara, users.actor(s, sara), s.get(SealedList, list_id), PASSWORD)
    with db.write() as s:
        lines = sealed.list_lines(s, actor_of(db, "sara"), s.get(SealedList, list_id), limit=size * blocks)
    numbers = sorted({line.block for line in lines})
    return [[(line.key, line.arm) for line in lines if line.block == block] for block in numbers]


def _impact(client, number: str) -> dict:
    response = client.get(f"/api/v1/unblindings/{STUDY}/{number}/impact")
    assert response.status_code == 200, response.text
    return {f["participant"]: f for f in response.json()["findings"]}


def test_a_block_of_two_makes_the_mate_certain(db, trial_world, as_):
    block, other_block = sealed_blocks(db, 2)[:2]
    (x, x_arm), (mate, mate_arm) = block
    assert x_arm != mate_arm
    enrol(db, x, "S-101")
    enrol(db, mate, "S-102")
    assert _api(as_("ida"), x).status_code == 201
    found = _impact(as_("anna"), x)
    assert found[mate] == {"participant": mate, "site": "RH-ENT", "strength": "certain",
                           "why": [f"the other arm than {x}, certainly (block of 2 in the randomisation list)"]}
    assert not set(found) & {number for number, _arm in other_block}, "another block says nothing"


def test_a_block_of_four_makes_its_mates_more_probable_and_a_second_unblinding_there_more_certain(db, trial_world, as_):
    block = sealed_blocks(db, 4)[0]
    x, x_arm = block[0]
    y = next(number for number, arm in block[1:] if arm == x_arm)  # the other line of x's arm
    rest = [number for number, arm in block if arm != x_arm]
    for n, (number, _arm) in enumerate(block[:3]):
        enrol(db, number, f"S-2{n:02d}")  # the block's last line is not yet given to anyone
    ida, anna = as_("ida"), as_("anna")
    assert _api(ida, x).status_code == 201
    first = _impact(anna, x)
    assert set(first) == {y, *rest}
    assert {f["strength"] for f in first.values()} == {"more probable"}
    assert first[y]["why"] == [f"the other arm than {x}: 2 in 3 now, 1 in 2 before (block of 4 in the randomisation "
                               "list)"], "y is in fact of x's arm: 'more probable' is odds, not truth"
    assert block[3][0] in first and first[block[3][0]]["site"] == "not yet randomised"

    assert _api(ida, y).status_code == 201
    second = _impact(anna, y)
    assert set(second) == set(rest)
    for number in rest:
        assert second[number]["strength"] == "certain"
        assert second[number]["why"] == [f"the other arm than {y}, certainly (block of 4 in the randomisation list; "
                                         f"also known in the block: {x})"]
    assert {f["strength"] for f in _impact(anna, x).values()} == {"certain"}, "x's impact counts y's unblinding"


def test_a_second_unblinding_that_evens_a_block_out_reveals_nothing_more_and_says_so(db, trial_world, as_):
    block = sealed_blocks(db, 4)[0]
    (x, x_arm), others = block[0], block[1:]
    z = next(number for number, arm in others if arm != x_arm)
    for n, (number, _arm) in enumerate(block):
        enrol(db, number, f"S-3{n:02d}")
    assert _api(as_("ida"), x).status_code == 201
    assert _api(as_("ida"), z).status_code == 201
    response = as_("sara").get(f"/api/v1/unblindings/{STUDY}/{z}/impact").json()
    assert response["findings"] == []
    left = ", ".join(number for number, _arm in block if number not in (x, z))
    assert (f"Block-mates {left}: the arms known in their block are in its allocation ratio, so nothing follows "
            "for them.") in \
        response["notes"]


def test_a_blocks_counts_equal_a_recount_of_its_lines_and_the_unblinded_participants(db, trial_world, as_):
    """The block is counted from its own lines and its known lines from the study's unblinded
    participants (two indexed reads): the same figures as a plain recount over every line of the
    list, with an unblinding in another block and an own line not yet unblinded counted right."""
    from cellbench import sealed, studies

    blocks = sealed_blocks(db, 6, blocks=2)
    block, other = blocks
    for n, (number, _arm) in enumerate(block + other):
        enrol(db, number, f"S-6{n:02d}")
    x = block[0][0]
    unblinded = [block[0][0], block[2][0], block[3][0], other[0][0]]
    for number in unblinded:
        assert _api(as_("ida"), number).status_code == 201
    with db.write() as s:
        study = studies.by_code(s, STUDY)
        sara = actor_of(db, "sara")
        for own, own_arm in (block[0], block[1]):  # block[1]: its own line is not unblinded
            mates = sealed.block_mates(s, sara, study, own)
            assert mates is not None
            line_is_known = {number: number == own or number in unblinded for number, _arm in block}
            known = [number for number, _arm in block if line_is_known[number]]
            same = [number for number, arm in block if arm == own_arm]
            assert mates.block_size == len(block) == 6
            assert mates.known_count == len(known) - 1
            assert mates.open_count == len(block) - len(known)
            assert mates.same_before == Fraction(len(same), len(block))
            open_same = [n for n in same if not line_is_known[n]]
            assert mates.same_now == Fraction(len(open_same), mates.open_count)
            assert mates.known == sorted(n for n in known if n != own)
            assert mates.lines == sorted(n for n, _arm in block if not line_is_known[n])
    for who in ("ida", "mette", "frida", "adam"):  # blinded: the impact of the block is not theirs to read
        assert as_(who).get(f"/api/v1/unblindings/{STUDY}/{x}/impact").status_code == 403


def test_the_blinded_investigator_never_sees_the_impact_list(db, trial_world, as_):
    (x, _), (mate, _) = sealed_blocks(db, 2)[0]
    enrol(db, x, "S-401")
    enrol(db, mate, "S-402")
    ida = as_("ida")
    page = _form(ida, x)
    assert page.status_code == 200 and x in page.text
    response = _api(ida, x)
    assert response.status_code == 201 and set(response.json()) == {
        "study", "participant", "arm", "arm_name", "reason_code", "reason", "at", "signature", "notified"}
    assert as_("anna").post(f"/api/v1/unblindings/{STUDY}/{x}/impact").status_code == 201
    for who in ("ida", "mette", "frida", "adam"):
        client = as_(who)
        for text in (page.text, response.text, client.get(f"/unblinding/{STUDY}/{x}").text,
                     client.get(f"/api/v1/unblindings?study={STUDY}&participant={x}").text,
                     client.get(f"/unblinding?study={STUDY}").text):
            assert mate not in text and "certain" not in text and "/impact" not in text, who
        assert client.get(f"/unblinding/{STUDY}/{x}/impact").status_code == 403
        assert client.get(f"/api/v1/unblindings/{STUDY}/{x}/impact").status_code == 403
        assert client.post(f"/api/v1/unblindings/{STUDY}/{x}/impact").status_code == 403
        assert client.submit(f"/unblinding/{STUDY}/{x}/impact").status_code == 403
        with db.read() as s:
            seen = audit.trail(s, actor_of(db, who), audit.TrailFilter(), limit=None)
        assert not [e for e in seen if e.action in (unblinding_impact.SENT, "sealed read")
                    or mate in " ".join(filter(None, (e.entity_id, e.new_value, e.reason)))], who
    own = ida.get("/api/v1/outbox?state=all").json()["messages"]
    assert {n["subject"] for n in own} == {f"Emergency unblinding: {STUDY} participant {x}"}, \
        "the impact message is not among the investigator's own"
    assert "/impact" in as_("anna").get(f"/unblinding/{STUDY}/{x}").text, "QA is led to it"


def test_the_sponsor_notification_carries_the_impact_and_the_sealed_reads_are_logged(db, trial_world, as_):
    (x, _), (mate, _) = sealed_blocks(db, 2)[0]
    enrol(db, x, "S-501")
    enrol(db, mate, "S-502")
    assert _api(as_("ida"), x).status_code == 201
    anna = as_("anna")
    assert "emergency unblinding: its impact is not yet sent to the sponsor" in anna.get("/").text
    page = anna.get(f"/unblinding/{STUDY}/{x}/impact")
    assert page.status_code == 200 and mate in page.text and "Not sent yet." in page.text
    sent = anna.submit(f"/unblinding/{STUDY}/{x}/impact")
    assert sent.status_code == 303 and "Sent%20to%20the%20sponsor" in sent.headers["location"]
    with db.read() as s:
        first, impact = s.scalars(select(Notification).where(Notification.audience == "unblinded")
                                  .order_by(Notification.id)).all()
        anna_id = users.by_username(s, "anna").id
        reads = s.scalars(select(AuditEvent).where(AuditEvent.action == "sealed read",
                                                   AuditEvent.user_id == anna_id)).all()
        record = s.scalars(select(AuditEvent).where(AuditEvent.action == unblinding_impact.SENT)).one()
    assert "follows in a separate message" in first.body and mate not in first.body
    assert (impact.kind, impact.to_address) == ("unblinding_impact", EMAIL)
    assert f"- {mate} (RH-ENT): certain: the other arm than {x}, certainly (block of 2" in impact.body
    assert "Anna" in impact.body and "CONFIDENTIAL" in impact.body
    assert [(e.field, e.entity_id, e.visibility) for e in reads] == [
        ("randomisation block mates", f"{STUDY}/S-501", "unblinded")] * 2, "the page and the send each read once"
    assert (record.visibility, record.user_id) == ("unblinded", anna_id) and mate in record.new_value
    assert "Sent by" in anna.get(f"/unblinding/{STUDY}/{x}/impact").text
    assert "impact is not yet sent" not in anna.get("/").text
    assert as_("sara").get("/api/v1/outbox").json()["messages"][0]["body"] == impact.body


def test_the_impact_readers_are_named_once_for_the_blinded_facing_page():
    from cellbench.web import unblinding as page

    assert set(page.IMPACT_READERS) == set(unblinding_impact.READERS)
    assert unblinding_impact.CHANNELS[-1].__name__ == "assignment_order"


def test_the_impacts_waiting_to_be_sent_are_the_latest_unblindings_a_recount_of_sent_ones_leaves(db, trial_world, as_):
    """The queue asks after the sent impacts of the unblindings it lists only: the same as a plain
    recount over every unblinding and every sent impact. A second unblinding of a participant
    whose first impact was sent waits again; the blinded never see the queue."""
    from cellbench.models import Unblinding

    (x, _), (y, _) = sealed_blocks(db, 2)[0]
    enrol(db, x, "S-701")
    enrol(db, y, "S-702")
    ida, anna = as_("ida"), as_("anna")
    assert _api(ida, x).status_code == 201 and _api(ida, y).status_code == 201
    assert anna.post(f"/api/v1/unblindings/{STUDY}/{x}/impact").status_code == 201
    assert _api(ida, x, reason="SAE: again").status_code == 201

    with db.read() as s:
        waiting = unblinding_impact.awaiting(s)
        queued = [p.randomisation_number for p in s.scalars(unblinding_impact.awaiting_query())]
        sent = {int(e) for e in s.scalars(select(AuditEvent.entity_id).where(
            AuditEvent.action == unblinding_impact.SENT, AuditEvent.entity_type == "unblinding"))}
        latest: dict[int, int] = {}
        for row in s.scalars(select(Unblinding).order_by(Unblinding.at, Unblinding.id)):
            latest[row.participant_id] = row.id
        recount = sorted(i for i in latest.values() if i not in sent)
    assert sorted(r.id for r in waiting) == recount and len(recount) == 2
    with db.read() as s:  # the mark the queue reads is the first sending's own time, as verify replays it
        first_sent = s.scalars(select(AuditEvent).where(AuditEvent.action == unblinding_impact.SENT)).one()
        marks = {row.id: row.impact_sent_at for row in s.scalars(select(Unblinding))}
    assert marks[int(first_sent.entity_id)] == first_sent.at
    assert sorted(i for i, mark in marks.items() if mark is None) == sorted(set(marks) - {int(first_sent.entity_id)})
    assert {r.participant for r in waiting} == {x, y}
    assert queued == [r.participant for r in waiting]  # the home line's query: the same, newest first
    assert "emergency unblindings: their impact is not yet sent to the sponsor" in anna.get("/").text
    for who in ("ida", "mette", "frida", "adam"):
        assert "impact is not yet sent" not in as_(who).get("/").text, who
