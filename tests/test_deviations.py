"""Deviations: numbering (also under concurrency), the transition table, assessment, QA's signed
closure, blinding of the audit trail, release gates, pages and API."""
from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from cellbench import audit, deviations, integrity, users
from cellbench.clock import utcnow
from cellbench.errors import AuthenticationFailed, Conflict, Forbidden, InvalidInput, NotFound
from cellbench.models import AuditEvent, Deviation, DeviationState, Kit, Lot, Meaning, Signature, SpecVersion

from .conftest import PASSWORD, actor_of
from .demo_pages import visible_text

YEAR = datetime.now(UTC).year


@pytest.fixture
def lot(db, people) -> Lot:
    """An ASC lot in process, bound to a specification version with two steps."""
    content = {"steps": [{"code": "tissue_receipt", "materials": [], "equipment": []},
                         {"code": "enzymatic_isolation", "materials": [], "equipment": []}]}
    with db.write() as s:
        spec = SpecVersion(product_code="asc-cs10", version=1, kind="asc", name="ASC in CS10", file_sha256="0" * 64,
                           content=json.dumps(content), loaded_at=utcnow())
        s.add(spec)
        s.flush()
        row = Lot(number="ASC-26-001", spec_version_id=spec.id, created_by=people["olivia"].id, created_at=utcnow())
        s.add(row)
        s.flush()
        return row


def raise_(db, username="olivia", **kwargs) -> Deviation:
    kwargs.setdefault("origin", "manual")
    kwargs.setdefault("description", "Centrifuge run at 500 g instead of 300 g.")
    with db.write() as s:
        return deviations.raise_deviation(s, actor_of(db, username), **kwargs)


def assess(db, number, username="olivia", **kwargs):
    kwargs.setdefault("impact_assessment", "No impact on viability; cells within specification.")
    with db.write() as s:
        deviations.assess_deviation(s, actor_of(db, username), deviations.by_number(s, number), **kwargs)


def close(db, number, username="anna", password=PASSWORD) -> Signature:
    with db.write() as s:
        return deviations.close_deviation(s, users.by_username(s, username), password, deviations.by_number(s, number))


def get(db, number) -> Deviation:
    with db.read() as s:
        return deviations.by_number(s, number)


def events(db, number, action=None):
    with db.read() as s:
        query = select(AuditEvent).where(AuditEvent.entity_type == "deviation", AuditEvent.entity_id == number)
        if action:
            query = query.where(AuditEvent.action == action)
        return list(s.scalars(query.order_by(AuditEvent.seq)))


# --- raising and numbering --------------------------------------------------------------------


def test_deviations_are_numbered_in_sequence_per_year(db, people):
    numbers = [raise_(db).number for _ in range(3)]
    assert numbers == [f"DEV-{YEAR}-0001", f"DEV-{YEAR}-0002", f"DEV-{YEAR}-0003"]


def test_numbering_starts_again_each_year_and_continues_past_9999(db, people):
    with db.write() as s:
        for number in (f"DEV-{YEAR - 1}-0412", f"DEV-{YEAR + 1}-0007"):
            s.add(Deviation(number=number, origin="manual", description="older", raised_at=utcnow()))
    assert raise_(db).number == f"DEV-{YEAR}-0001"
    with db.write() as s:
        s.add(Deviation(number=f"DEV-{YEAR}-9999", origin="manual", description="busy year", raised_at=utcnow()))
    assert raise_(db).number == f"DEV-{YEAR}-10000"
    assert raise_(db).number == f"DEV-{YEAR}-10001"


def test_ten_deviations_raised_at_the_same_moment_get_ten_distinct_numbers(db, people):
    """On PostgreSQL the ten transactions really overlap (several pooled connections); on SQLite
    the writers are serialised by the database layer, and the test shows nothing breaks."""
    actor = actor_of(db, "olivia")
    start = threading.Barrier(10)
    numbers, errors = [], []

    def worker(i: int) -> None:
        try:
            start.wait()
            with db.write() as s:
                numbers.append(deviations.raise_deviation(s, actor, origin="out_of_limit",
                                                          description=f"value {i} out of limits").number)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(numbers) == [f"DEV-{YEAR}-{i:04d}" for i in range(1, 11)]
    assert integrity.verify(db).ok


def test_a_deviation_starts_open_with_a_generic_blinded_summary_never_taken_from_the_description(db, people, lot):
    deviation = raise_(db, lot_id=lot.id, step_code="enzymatic_isolation", severity="major",
                       description="Collagenase of the ASC lot precipitated; placebo saline unaffected.")
    assert DeviationState(deviation.state) is DeviationState.open
    assert deviation.blinded_summary == deviations.GENERIC_BLINDED_SUMMARY
    assert "ASC" not in deviation.blinded_summary and "placebo" not in deviation.blinded_summary
    own = raise_(db, blinded_summary="  Kit temporarily unavailable.  ")
    assert own.blinded_summary == "Kit temporarily unavailable."
    assert deviations.blinded_view(get(db, own.number)) == {"number": own.number, "state": "open",
                                                            "summary": "Kit temporarily unavailable."}


def test_blinded_readers_of_the_audit_trail_see_the_summary_but_never_the_description(db, kit_world):
    with db.read() as s:
        kit_id = s.scalars(select(Kit.id).where(Kit.number == kit_world.active[0])).one()
    deviation = raise_(db, kit_id=kit_id, description="Thawed ASC vial showed clumps.")
    assess(db, deviation.number, impact_assessment="Clumps dispersed; viability 93 %.", capa_reference="CAPA-7")
    close(db, deviation.number)
    with db.read() as s:
        blinded = audit.history(s, actor_of(db, "mette"), "deviation", deviation.number)
        unblinded = audit.history(s, actor_of(db, "anna"), "deviation", deviation.number)
    shown = json.dumps([[e.action, e.field, e.old_value, e.new_value, e.reason] for e in blinded])
    assert "clumps" not in shown.lower() and "viability" not in shown and "CAPA-7" not in shown
    assert deviations.GENERIC_BLINDED_SUMMARY in shown and '"closed"' in shown
    assert any("clumps" in (e.new_value or "") for e in unblinded)


def test_a_lot_deviation_is_outside_the_monitors_trail(db, people, lot):
    """A manufacturing deviation is not the monitor's: its trail is the trial's records (audit.trail_scope)."""
    deviation = raise_(db, lot_id=lot.id, description="Centrifuge run at 500 g.")
    with db.read() as s:
        assert audit.history(s, actor_of(db, "mette"), "deviation", deviation.number) == []
        assert audit.history(s, actor_of(db, "anna"), "deviation", deviation.number)


@pytest.mark.parametrize("kwargs,field", [({"origin": "gut feeling"}, "origin"), ({"severity": "huge"}, "severity"),
                                          ({"description": "   "}, "description"),
                                          ({"step_code": "enzymatic_isolation"}, "lot_number"),
                                          ({"lot_id": 999}, "lot_number")])
def test_bad_deviation_input_names_its_field_and_saves_nothing(db, people, kwargs, field):
    with pytest.raises((InvalidInput, NotFound)) as refused:
        raise_(db, **kwargs)
    assert refused.value.field == field
    with db.read() as s:
        assert s.scalars(select(Deviation)).first() is None


def test_a_step_must_belong_to_the_lots_specification(db, people, lot):
    with pytest.raises(InvalidInput) as refused:
        raise_(db, lot_id=lot.id, step_code="harvest")
    assert refused.value.field == "step_code" and "ASC-26-001 has no step 'harvest'" in refused.value.message


def test_only_unblinded_gmp_roles_raise_deviations_by_hand(db, people):
    with pytest.raises(Forbidden):
        raise_(db, "frida")
    with pytest.raises(Forbidden):
        raise_(db, "adam")
    assert raise_(db, "quinn", origin="oos").origin == "oos"


# --- the transition table ---------------------------------------------------------------------


def test_closing_without_an_assessment_is_refused(db, people):
    number = raise_(db).number
    with pytest.raises(Conflict) as refused:
        close(db, number)
    assert refused.value.message == f"{number} is open: it cannot be closed now; record its impact assessment first."
    assert DeviationState(get(db, number).state) is DeviationState.open


def test_only_qa_closes_a_deviation(db, people):
    number = raise_(db).number
    assess(db, number)
    for username in ("olivia", "peter", "victor"):
        with pytest.raises(Forbidden) as refused:
            close(db, username=username, number=number)
        assert "Only qa may close" in refused.value.message
    with db.read() as s:
        assert s.scalars(select(Signature)).first() is None


def test_only_operators_and_qa_assess(db, people):
    number = raise_(db).number
    with pytest.raises(Forbidden):
        assess(db, number, "victor")
    assess(db, number, "anna")


def test_a_closed_deviation_cannot_be_changed(db, people):
    number = raise_(db).number
    assess(db, number)
    close(db, number)
    with pytest.raises(Conflict) as refused:
        assess(db, number, impact_assessment="second thoughts", reason="new data")
    assert "a closed deviation cannot be changed" in refused.value.message
    with pytest.raises(Conflict):
        close(db, number)
    assert get(db, number).impact_assessment == "No impact on viability; cells within specification."


def test_a_guard_refuses_closure_of_an_assessment_emptied_behind_the_table(db, people):
    number = raise_(db).number
    assess(db, number)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE deviation SET impact_assessment = '  ' WHERE number = :n"), {"n": number})
    with pytest.raises(InvalidInput) as refused:
        close(db, number)
    assert refused.value.field == "impact_assessment"


def test_pages_offer_only_what_the_table_allows_the_viewer(db, people):
    number = raise_(db).number
    olivia, anna, victor = (actor_of(db, u) for u in ("olivia", "anna", "victor"))
    assert deviations.allowed_actions(get(db, number), olivia) == ["assess"]
    assert deviations.allowed_actions(get(db, number), anna) == ["assess"]
    assess(db, number)
    assert deviations.allowed_actions(get(db, number), olivia) == ["assess"]
    assert deviations.allowed_actions(get(db, number), anna) == ["assess", "close"]
    assert deviations.allowed_actions(get(db, number), victor) == []
    close(db, number)
    assert deviations.allowed_actions(get(db, number), anna) == []


# --- assessment -------------------------------------------------------------------------------


def test_an_assessment_is_audited_field_by_field_and_a_severity_change_needs_a_reason(db, people):
    number = raise_(db).number
    with pytest.raises(InvalidInput) as refused:
        assess(db, number, severity="major")
    assert refused.value.field == "reason"
    with pytest.raises(InvalidInput) as empty:
        assess(db, number, impact_assessment=" ")
    assert empty.value.field == "impact_assessment"
    assess(db, number, severity="major", capa_reference="CAPA-2026-03", reason="affects a critical step")
    deviation = get(db, number)
    assert (deviation.severity, deviation.capa_reference, DeviationState(deviation.state)) == (
        "major", "CAPA-2026-03", DeviationState.assessed)
    changes = {(e.field, e.old_value, e.new_value, e.reason) for e in events(db, number, "deviation assessed")}
    assert ("severity", "minor", "major", "affects a critical step") in changes
    assert ("capa_reference", None, "CAPA-2026-03", None) in changes
    assess(db, number)  # nothing given changes nothing: the CAPA reference stays
    assert get(db, number).capa_reference == "CAPA-2026-03"
    with pytest.raises(InvalidInput):
        assess(db, number, capa_reference="")  # clearing a recorded reference is a correction
    assert [(e.old_value, e.new_value) for e in events(db, number, "deviation state changed")] == [("open", "assessed")]


def test_correcting_an_assessment_needs_a_reason(db, people):
    number = raise_(db).number
    assess(db, number)
    with pytest.raises(InvalidInput) as refused:
        assess(db, number, impact_assessment="Impact on yield only.")
    assert refused.value.field == "reason"
    assess(db, number, impact_assessment="Impact on yield only.", reason="yield data arrived")
    corrected = events(db, number, "deviation assessed")[-1]
    assert (corrected.old_value, corrected.new_value, corrected.reason) == (
        "No impact on viability; cells within specification.", "Impact on yield only.", "yield data arrived")


# --- closure ----------------------------------------------------------------------------------


def test_closure_is_signed_approved_by_qa_and_verify_recomputes_it(db, people, lot):
    number = raise_(db, lot_id=lot.id, step_code="tissue_receipt").number
    assess(db, number, capa_reference="CAPA-1")
    sig = close(db, number)
    deviation = get(db, number)
    assert DeviationState(deviation.state) is DeviationState.closed and deviation.closure_signature_id == sig.id
    assert (sig.signer_name, Meaning(sig.meaning), sig.entity_type, sig.entity_id) == (
        "Anna QA", Meaning.approved, "deviation", number)
    signed = json.loads(sig.content)
    assert signed["state"] == "closed" and signed["lot"] == "ASC-26-001" and signed["capa_reference"] == "CAPA-1"
    changes = [(e.old_value, e.new_value) for e in events(db, number, "deviation state changed")]
    assert changes[-1] == ("assessed", "closed")
    report = integrity.verify(db)
    assert report.ok and report.signatures == 1
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE deviation SET description = 'nothing happened' WHERE number = :n"), {"n": number})
    problem = integrity.verify(db).problems[0]
    assert problem.startswith(f"signature {sig.id} (approved by Anna QA on deviation {number})")
    assert problem.endswith("the signed record has changed since it was signed")


def test_a_wrong_password_is_refused_and_leaves_the_deviation_assessed(db, people):
    number = raise_(db).number
    assess(db, number)
    with pytest.raises(AuthenticationFailed) as refused:
        close(db, number, password="not my password")
    assert refused.value.field == "password"
    deviation = get(db, number)
    assert DeviationState(deviation.state) is DeviationState.assessed and deviation.closure_signature_id is None
    with db.read() as s:
        assert s.scalars(select(Signature)).first() is None
        assert users.by_username(s, "anna").failed_logins == 1
    assert events(db, number, "deviation state changed")[-1].new_value == "assessed"


# --- what other modules read ------------------------------------------------------------------


def test_open_and_blocking_deviations_are_those_qa_has_not_closed(db, people, lot):
    first = raise_(db, lot_id=lot.id).number
    second = raise_(db, lot_id=lot.id, severity="critical").number
    elsewhere = raise_(db).number
    assess(db, first)
    with db.read() as s:
        assert [d.number for d in deviations.blocking_deviations(s, lot.id)] == [second, first]
        assert [d.number for d in deviations.open_deviations(s)] == [second, first, elsewhere]
        assert deviations.deviations_block(s, lot.id) == (
            f"2 deviations not closed by QA: {second} (open), {first} (assessed).")
    assess(db, second, severity="critical")
    close(db, first)
    close(db, second)
    with db.read() as s:
        assert deviations.blocking_deviations(s, lot.id) == []
        assert deviations.deviations_block(s, lot.id) is None
        assert [d.number for d in deviations.open_deviations(s)] == [elsewhere]


# --- pages ------------------------------------------------------------------------------------


def test_raising_on_the_page_keeps_what_was_typed_when_refused(as_, db, lot):
    olivia = as_("olivia")
    assert olivia.get("/deviations/new?lot=ASC-26-001").status_code == 200
    refused = olivia.submit("/deviations", {"lot_number": "ASC-26-999", "step_code": "", "severity": "major",
                                            "description": "Door of the cabinet left open", "blinded_summary": ""})
    assert refused.status_code == 404 and "no lot" in refused.text
    assert "Door of the cabinet left open" in refused.text and 'value="ASC-26-999"' in refused.text
    assert '<option value="major" selected>' in refused.text
    empty = olivia.submit("/deviations", {"lot_number": "ASC-26-001", "description": ""})
    assert empty.status_code == 422 and "description" in empty.text and 'value="ASC-26-001"' in empty.text
    done = olivia.submit("/deviations", {"lot_number": "ASC-26-001", "step_code": "tissue_receipt", "severity": "major",
                                         "description": "Door of the cabinet left open"})
    assert done.status_code == 303 and done.headers["location"].startswith(f"/deviations/DEV-{YEAR}-0001")
    page = olivia.get(done.headers["location"]).text
    assert "Door of the cabinet left open" in page and "ASC-26-001" in page and "deviation raised" in page
    assert "/assess" in page and "/close" not in page  # an operator assesses, never closes


def test_qa_works_the_queue_and_closes_on_the_page_with_the_signature_shown(as_, db, people):
    anna, olivia = as_("anna"), as_("olivia")
    minor = raise_(db).number
    critical = raise_(db, severity="critical", description="Sterility breach suspected").number
    assert "deviations await an impact assessment" in olivia.get("/").text
    queue = anna.get("/deviations").text
    assert queue.index(critical) < queue.index(minor)  # most severe first
    by_age = anna.get("/deviations?order=age").text
    assert by_age.index(minor) < by_age.index(critical)
    no_reason = anna.submit(f"/deviations/{critical}/assess",
                            {"impact_assessment": "Batch at risk", "severity": "minor"})
    assert no_reason.status_code == 422 and "reason is required" in no_reason.text and "Batch at risk" in no_reason.text
    assert anna.submit(f"/deviations/{critical}/assess", {"impact_assessment": "Batch at risk",
                                                          "severity": "critical"}).status_code == 303
    assert "assessed deviation awaits your closure" in anna.get("/").text
    page = anna.get(f"/deviations/{critical}").text
    assert 'name="password"' in page and "Sign and close" in page
    wrong = anna.submit(f"/deviations/{critical}/close", {"password": "nope nope nope"})
    assert wrong.status_code == 401 and "Wrong password" in wrong.text
    assert olivia.submit(f"/deviations/{critical}/close", {"password": PASSWORD}).status_code == 403
    assert anna.submit(f"/deviations/{critical}/close", {"password": PASSWORD}).status_code == 303
    closed = anna.get(f"/deviations/{critical}").text
    assert "Anna QA" in closed and "approved" in closed and "Sign and close" not in closed and "/assess" not in closed
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d [+-]\d\d:\d\d", visible_text(closed))  # the one format
    assert critical not in anna.get("/deviations").text and critical in anna.get("/deviations?state=closed").text
    assert "your closure" not in anna.get("/").text


def test_every_form_on_the_deviation_pages_carries_the_csrf_token(as_, db, people):
    number = raise_(db).number
    assess(db, number)
    anna = as_("anna")
    for path in ("/deviations/new", f"/deviations/{number}"):
        page = anna.get(path).text
        tokens = re.findall(r'name="csrf_token" value="([^"]*)"', page)
        assert page.count('<form method="post"') == len(tokens) >= 1 and set(tokens) == {anna.csrf()}


def test_blinded_roles_never_reach_deviations(as_, db, people):
    number = raise_(db).number
    for username in ("frida", "ida", "mette", "adam"):
        for path in ("/deviations", f"/deviations/{number}", "/api/v1/deviations"):
            assert as_(username).get(path).status_code == 403
    assert as_("anna").get("/deviations/DEV-1999-0001").status_code == 404
    assert as_("anna").get("/deviations?state=lost").status_code == 422


# --- API --------------------------------------------------------------------------------------


def api_as(app, db, username) -> TestClient:
    with db.write() as s:
        token = users.create_token(s, users.cli_actor(), users.by_username(s, username), "test")
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def test_api_round_trip_raise_assess_close(app, db, people, lot):
    olivia, anna = api_as(app, db, "olivia"), api_as(app, db, "anna")
    bad = olivia.post("/api/v1/deviations", json={"description": "x", "severity": "awful"})
    assert bad.status_code == 422 and bad.json()["field"] == "severity"
    made = olivia.post("/api/v1/deviations", json={"lot_number": "ASC-26-001", "step_code": "tissue_receipt",
                                                   "description": "Receipt temperature not recorded"})
    body = made.json()
    assert made.status_code == 201 and body["number"] == f"DEV-{YEAR}-0001" and body["state"] == "open"
    assert body["allowed_actions"] == ["assess"] and body["raised_by"] == "Olivia Operator"
    assert body["blinded_summary"] == deviations.GENERIC_BLINDED_SUMMARY
    number = body["number"]
    premature = anna.post(f"/api/v1/deviations/{number}/close", json={"password": PASSWORD})
    assert premature.status_code == 409 and premature.json()["field"] == "state"
    assessed = olivia.post(f"/api/v1/deviations/{number}/assess", json={"impact_assessment": "Logger data show 4 °C",
                                                                       "capa_reference": "CAPA-9"})
    assert assessed.status_code == 200 and assessed.json()["state"] == "assessed"
    assert olivia.post(f"/api/v1/deviations/{number}/close", json={"password": PASSWORD}).status_code == 403
    closed = anna.post(f"/api/v1/deviations/{number}/close", json={"password": PASSWORD}).json()
    assert closed["state"] == "closed" and closed["closure"]["signer_name"] == "Anna QA"
    assert closed["closure"]["meaning"] == "approved" and closed["allowed_actions"] == []
    listed = anna.get("/api/v1/deviations", params={"lot": "ASC-26-001"}).json()["deviations"]
    assert [d["number"] for d in listed] == [number] and listed[0]["lot_number"] == "ASC-26-001"
    assert anna.get("/api/v1/deviations", params={"state": "open"}).json() == {"deviations": [], "next": None}
    assert anna.get(f"/api/v1/deviations/{number}").json()["capa_reference"] == "CAPA-9"
    assert anna.get("/api/v1/deviations", params={"lot": "nope"}).json()["field"] == "lot"
    assert integrity.verify(db).ok
