"""One step, one form, at the tablet: values, scans and the signature in one post; what is typed
kept as a draft through refusals and idle timeouts; the verifier co-signing on the operator's
tablet; the verifier's queue naming only what waits for them."""
from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select

from cellbench import lots, steps, users
from cellbench.models import (
    AuditEvent,
    EquipmentUse,
    Lot,
    MaterialUse,
    Role,
    Signature,
    StepDraft,
    StepEntry,
    StepState,
    StepValue,
    User,
    WebSession,
)
from cellbench.specifications import versions as spec_versions

from ..conftest import PASSWORD, actor_of
from .test_lots import placebo_spec, record_whole_step, sign, start_placebo_lot, stock_for

FILL = {"v:cleanroom": "Grade A in B", "v:vials_filled": "6", "v:fill_volume": "1.0"}


def at_the_fill(db, *, start: bool = True) -> tuple[str, object]:
    """A saline lot whose receipt and certificate check are signed and verified, its fill started."""
    spec = placebo_spec(db)
    stock_for(db, spec)
    number = start_placebo_lot(db)
    for step in spec.steps[:2]:
        index = record_whole_step(db, number, step)
        sign(db, number, step, index)
    fill = spec.steps[2]
    assert fill.code == "fill"
    if not start:
        return number, fill
    with db.write() as s:
        lot = lots.by_number(s, number)
        steps.start_entry(s, actor_of(db, "olivia"), lot, "fill", lot.row_version)
    return number, fill


def fill_form(fill, **extra) -> dict:
    """Everything the fill step needs, as the one form posts it: values, scans, the signature."""
    form = {**FILL, "v:fill_completed_at": "2026-01-01T09:30+01:00", "step": "fill", "entry": 1,
            "materials": [f"{m.code}:{m.code.upper()}-1" for m in fill.materials],
            "equipment_scan": "BSC-1"}
    form.update(extra)
    return form


def page_version(client, number: str) -> int:
    page = client.get(f"/lots/{number}")
    return int(re.search(r'name="lot_version" value="(\d+)"', page.text).group(1))


def fill_entry(db, number: str) -> StepEntry:
    with db.read() as s:
        return steps.entry_of(s, lots.by_number(s, number), "fill", 1)


def count(db, model, *where) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def audit_count(db) -> int:
    return count(db, AuditEvent)


# --- one step, one form -----------------------------------------------------------------------


def test_one_post_records_the_values_materials_equipment_and_signs_the_step(as_, db, effective_specs):
    number, fill = at_the_fill(db)
    olivia = as_("olivia")
    saved = olivia.submit(f"/lots/{number}/entry", {**fill_form(fill), "password": PASSWORD, "save": "sign",
                                                    "lot_version": page_version(olivia, number)})
    assert saved.status_code == 303 and "Signed" in saved.headers["location"]
    entry = fill_entry(db, number)
    assert StepState(entry.state) == StepState.performed
    with db.read() as s:
        values = {v.parameter_code: v.value for v in steps.current_values(s, entry).values()}
        assert values["vials_filled"] == "6" and values["cleanroom"] == "Grade A in B"
        assert count(db, MaterialUse, MaterialUse.entry_id == entry.id) == len(fill.materials) == 2
        assert count(db, EquipmentUse, EquipmentUse.entry_id == entry.id) == 1
        performed = s.get(Signature, entry.performed_signature_id)
        assert performed.signer_name == "Olivia Operator" and performed.meaning == "performed"
        assert "BSC-1" in performed.content and "CRYOVIAL-1" in performed.content, "one signature over it all"
        whats = set(s.scalars(select(AuditEvent.action).where(AuditEvent.entity_id == number)))
        assert {"value recorded", "material recorded", "equipment recorded"} <= whats
    assert count(db, StepDraft) == 0, "the signed entry leaves no draft behind"


def test_a_refused_save_keeps_everything_typed_and_records_nothing(as_, db, effective_specs):
    number, fill = at_the_fill(db)
    olivia = as_("olivia")
    before = audit_count(db)
    refused = olivia.submit(f"/lots/{number}/entry", {
        **fill_form(fill, **{"v:vials_filled": "5000", "c:cleanroom": "door checked"}), "password": PASSWORD,
        "save": "sign", "lot_version": page_version(olivia, number)})
    assert refused.status_code == 422 and "outside its limits" in refused.text
    assert 'value="5000"' in refused.text and 'value="Grade A in B"' in refused.text
    assert 'value="door checked"' in refused.text and 'value="1.0"' in refused.text
    assert 'name="materials" value="cryovial:CRYOVIAL-1"' in refused.text, "the scans are still listed"
    assert 'name="equipment" value="BSC-1"' in refused.text
    entry = fill_entry(db, number)
    assert StepState(entry.state) == StepState.open
    assert count(db, StepValue, StepValue.entry_id == entry.id) == 0
    assert count(db, MaterialUse, MaterialUse.entry_id == entry.id) == 0
    assert audit_count(db) == before, "nothing written to the record or its audit trail"
    assert "Draft, not part of the record until signed" in olivia.get(f"/lots/{number}").text

    stale = olivia.submit(f"/lots/{number}/entry", {**fill_form(fill), "password": PASSWORD, "save": "sign",
                                                    "lot_version": page_version(olivia, number) - 1})
    assert stale.status_code == 409 and 'value="Grade A in B"' in stale.text, "a conflict keeps the typing too"

    wrong = olivia.submit(f"/lots/{number}/entry", {**fill_form(fill), "password": "not it", "save": "sign",
                                                    "lot_version": page_version(olivia, number)})
    assert wrong.status_code == 401 and 'value="Grade A in B"' in wrong.text
    with db.read() as s:
        assert users.by_username(s, "olivia").failed_logins == 1
    assert count(db, StepValue, StepValue.entry_id == entry.id) == 0


def test_a_draft_is_kept_restored_and_is_no_part_of_the_record(as_, db, effective_specs):
    number, _ = at_the_fill(db)
    olivia = as_("olivia")
    before = audit_count(db)
    kept = olivia.submit(f"/lots/{number}/entry", {"step": "fill", "entry": 1, "v:fill_volume": "1.0",
                                                   "material_scan": "cryovial:CRYOVIAL-1", "save": "draft"})
    assert kept.status_code == 303 and "Draft" in kept.headers["location"]
    page = olivia.get(f"/lots/{number}")
    assert "Draft, not part of the record until signed" in page.text
    assert 'name="v:fill_volume" value="1.0"' in page.text
    assert 'name="materials" value="cryovial:CRYOVIAL-1"' in page.text and "lot CRYOVIAL-1" in page.text

    # As typed, by the page's script: JSON, the scans checked at once (an unknown one says why).
    typed = olivia.post(f"/lots/{number}/draft", data={
        "csrf_token": olivia.csrf(), "step": "fill", "entry": "1", "v:fill_volume": "1.0", "v:vials_filled": "6",
        "materials": "cryovial:CRYOVIAL-1", "equipment_scan": "NO-SUCH-1"}, headers={"Accept": "application/json"})
    assert typed.status_code == 200
    assert [m["code"] for m in typed.json()["materials"]] == ["cryovial:CRYOVIAL-1"]
    assert typed.json()["equipment"][0]["problem"], "an unknown asset is named at the scan, not at signing"
    removed = olivia.post(f"/lots/{number}/draft", data={
        "csrf_token": olivia.csrf(), "step": "fill", "entry": "1", "equipment": "NO-SUCH-1",
        "remove": "equipment:NO-SUCH-1"}, headers={"Accept": "application/json"})
    assert removed.json()["equipment"] == []

    entry = fill_entry(db, number)
    assert count(db, StepValue, StepValue.entry_id == entry.id) == 0
    assert audit_count(db) == before, "typing is not audited: it is not GMP data until signed"
    record = olivia.get(f"/lots/{number}/record").text
    assert "CRYOVIAL-1" not in record and "Draft" not in record, "the batch record knows nothing of the draft"
    assert "Draft, not part of the record" not in as_("oscar").get(f"/lots/{number}").text, "a draft is its author's"


# --- never lose work to a timeout ----------------------------------------------------------------


def idle(db, username: str, minutes: int) -> None:
    with db.write() as s:
        for ws in s.scalars(select(WebSession).join(User, User.id == WebSession.user_id)
                            .where(User.username == username, WebSession.ended_at.is_(None))):
            ws.last_seen_at = ws.last_seen_at - timedelta(minutes=minutes)


def test_after_an_idle_timeout_the_draft_survives_and_the_password_renews_the_session_and_the_save(
        as_, db, effective_specs):
    number, fill = at_the_fill(db)
    olivia = as_("olivia")
    version = page_version(olivia, number)
    olivia.submit(f"/lots/{number}/entry", {**fill_form(fill), "save": "draft"})
    old_token = olivia.csrf()
    idle(db, "olivia", 61)

    expired = olivia.post(f"/lots/{number}/entry", data={**fill_form(fill), "password": PASSWORD, "save": "sign",
                                                          "lot_version": version, "csrf_token": old_token},
                          follow_redirects=False)
    assert expired.status_code == 401 and expired.headers["X-Cellbench-Signin"] == "required"
    assert "draft is kept" in expired.text
    entry = fill_entry(db, number)
    assert StepState(entry.state) == StepState.open and count(db, StepDraft, StepDraft.entry_id == entry.id) == 1

    wrong = olivia.post("/session/renew", data={"password": "not it", "csrf_token": old_token})
    assert wrong.status_code == 401 and wrong.json()["error"] == "Wrong password."
    forged = olivia.post("/session/renew", data={"password": PASSWORD, "csrf_token": "another page's"})
    assert forged.status_code == 403
    renewed = olivia.post("/session/renew", data={"password": PASSWORD, "csrf_token": old_token})
    assert renewed.status_code == 200
    new_token = renewed.json()["csrf_token"]
    assert new_token == olivia.csrf() != old_token, "the new session's token, for the page's forms"

    saved = olivia.post(f"/lots/{number}/entry", data={**fill_form(fill), "password": PASSWORD, "save": "sign",
                                                        "lot_version": version, "csrf_token": new_token},
                        follow_redirects=False)
    assert saved.status_code == 303
    assert StepState(fill_entry(db, number).state) == StepState.performed
    with db.read() as s:
        actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.entity_id == "olivia")))
        assert "session ended (idle timeout)" in actions and "session renewed" in actions
        assert users.by_username(s, "olivia").failed_logins == 0, "the right password clears the failed one"


def test_a_signed_out_session_is_not_renewed(as_, db, people):
    anna = as_("anna")
    token = anna.csrf()
    anna.submit("/logout")
    refused = anna.post("/session/renew", data={"password": PASSWORD, "csrf_token": token})
    assert refused.status_code == 401 and "sign in" in refused.json()["error"]


def test_an_operators_page_outlasts_a_45_minute_digestion_and_qas_does_not(as_, db, people):
    olivia, anna = as_("olivia"), as_("anna")
    idle(db, "olivia", 46)
    idle(db, "anna", 46)
    assert olivia.get("/").status_code == 200
    assert anna.get("/", follow_redirects=False).headers["location"].startswith("/login")
    assert users.idle_limit(frozenset({Role.qa, Role.operator}), 15, {"operator": 60}) == timedelta(
        minutes=60), "with several roles, the longest"


# --- co-signature on the same tablet -----------------------------------------------------------------


def performed_receipt(db, as_) -> tuple[str, object]:
    spec = placebo_spec(db)
    number = start_placebo_lot(db)
    receipt = spec.steps[0]
    record_whole_step(db, number, receipt)
    with db.write() as s:
        lot = lots.by_number(s, number)
        steps.perform(s, users.by_username(s, "olivia"), PASSWORD, lot, receipt.code, 1, lot.row_version)
    return number, receipt


def test_the_verifier_co_signs_on_the_operators_tablet_without_ending_her_session(as_, db, effective_specs):
    number, receipt = performed_receipt(db, as_)
    olivia = as_("olivia")
    page = olivia.get(f"/lots/{number}")
    assert "Verifier&#39;s username" in page.text or "Verifier's username" in page.text

    def cosign(username: str, password: str):
        return olivia.submit(f"/lots/{number}/verify", {"step": receipt.code, "entry": 1, "username": username,
                                                        "password": password,
                                                        "lot_version": page_version(olivia, number)})

    wrong = cosign("victor", "not it")
    unknown = cosign("nobody", "not it")
    assert wrong.status_code == unknown.status_code == 401
    assert "Unknown username or wrong password." in wrong.text and "Unknown username or wrong password." in unknown.text
    with db.read() as s:
        assert users.by_username(s, "victor").failed_logins == 1, "counted as a failed sign-in would be"
        # an unknown name is kept only as its keyed hash: it may be a password typed in the wrong box
        assert s.scalars(select(AuditEvent).where(AuditEvent.action == "signature failed",
                                                  AuditEvent.entity_id == "(unknown user)")).first() is not None
    own = cosign("olivia", PASSWORD)
    assert own.status_code == 403 and "Nobody verifies their own step" in own.text

    done = cosign("victor", PASSWORD)
    assert done.status_code == 303
    with db.read() as s:
        entry = steps.entry_of(s, lots.by_number(s, number), receipt.code, 1)
        assert StepState(entry.state) == StepState.verified
        verified = s.get(Signature, entry.verified_signature_id)
        assert verified.signer_name == "Victor Verifier" and verified.signer_id == users.by_username(s, "victor").id
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "signed",
                                                   AuditEvent.field == "signature:verified")).one()
        assert event.user_name == "Victor Verifier" and "Olivia Operator" in event.reason
        assert users.by_username(s, "victor").failed_logins == 0
        live = s.scalars(select(WebSession).join(User, User.id == WebSession.user_id)
                         .where(User.username == "olivia", WebSession.ended_at.is_(None))).all()
        assert len(live) == 1
    home = olivia.get("/")
    assert home.status_code == 200 and "Good to see you, Olivia" in home.text, "Olivia is still signed in"


# --- the verifier's queue ----------------------------------------------------------------------------


def test_the_verifiers_queue_counts_what_waits_for_them_and_opens_the_step(as_, db, effective_specs):
    number, receipt = performed_receipt(db, as_)
    home = as_("victor").get("/")
    assert "1</strong> step awaits your verification" in home.text
    assert f'href="/lots/{number}#step-{receipt.code}"' in home.text
    assert "await" not in as_("olivia").get("/").text.split("<h2>")[0], "not her own step"
    assert f'id="step-{receipt.code}"' in as_("victor").get(f"/lots/{number}").text


def test_steps_that_need_no_second_person_are_not_in_the_verifiers_queue(db, demo_world):
    """The demo's lot in process has performed steps that need no verification (the isolation,
    the harvest...): they were the "34 step entries await verification" the verifier saw."""
    with db.write() as s:
        victor = users.create_user(s, users.cli_actor(), "vera", "Vera Verifier", PASSWORD, ["verifier"])
        waiting = steps.awaiting_verification(s, victor)
        performed = s.scalars(select(StepEntry).join(Lot, Lot.id == StepEntry.lot_id)
                              .where(StepEntry.state == "performed", Lot.state == "in_process")).all()
        needs = {(e.lot_id, e.step_code): steps.step_of(spec_versions.parsed(lots.spec_of(s, s.get(Lot, e.lot_id))),
                                                         e.step_code).verify for e in performed}
    assert any(not verify for verify in needs.values()), "the demo has performed steps that need no verifier"
    assert {(entry.lot_id, entry.step_code) for _, entry in waiting} == {k for k, v in needs.items() if v}


def test_with_steps_waiting_on_several_lots_the_queue_opens_the_list_of_those_lots(as_, db, effective_specs):
    first, _ = performed_receipt(db, as_)
    second, _ = performed_receipt(db, as_)
    with db.write() as s:
        third = lots.start_lot(s, actor_of(db, "olivia"), "saline-placebo").number  # nothing performed yet
    victor = as_("victor")
    home = victor.get("/")
    assert "2</strong> steps await your verification" in home.text
    assert 'href="/lots?awaiting=verification"' in home.text
    listed = victor.get("/lots?awaiting=verification").text
    assert first in listed and second in listed and third not in listed
    operator = as_("oscar").get("/").text
    assert "3</strong> lots in process" in operator and "2</strong> steps await your verification" in operator
