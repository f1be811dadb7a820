"""Free text has a documented maximum (cellbench.limits). Above it, a page form and the API alike
refuse it naming the field, without echoing it, and nothing is written; exactly at it, it is kept."""
from __future__ import annotations

import ast
import pathlib
import re

import pytest
from sqlalchemy import func, select

from cellbench import audit, limits, lots, steps, users
from cellbench.errors import InvalidInput
from cellbench.models import AuditEvent, Deviation, KitQuarantine, Participant, Signature, StepValue, Unblinding, User
from cellbench.supply import quarantine

from .conftest import PASSWORD, actor_of
from .lots.test_lots import placebo_spec, record_whole_step, start_placebo_lot
from .trialworld import STUDY, administer, enrol

MEGABYTE = "x" * 1_000_000


def _count(db, table) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(table))


def _written(db) -> tuple[int, ...]:
    """How many rows the refused requests could have added to: the trail and the records."""
    return tuple(_count(db, t) for t in (AuditEvent, StepValue, Deviation, Unblinding, KitQuarantine, User,
                                         Signature))


def _refused_by_api(response, field: str) -> None:
    assert response.status_code == 422, response.text[:300]
    assert response.json()["field"] == field
    assert len(response.content) < 1_000, "the refusal does not send the text back"


def _refused_on_page(response, what: str) -> None:
    assert response.status_code == 422, response.text[:300]
    assert re.search(f"{what}.{{0,40}}at most", response.text, re.I | re.S), "the page names the field"


# --- one function, one message --------------------------------------------------------------------


def test_the_message_names_the_field_and_the_counts_but_not_the_text():
    with pytest.raises(InvalidInput) as refused:
        limits.text("é" * (limits.REASON + 1), "reason", "reason", "reason")
    assert refused.value.field == "reason"
    assert refused.value.message == "The reason is at most 2,000 characters (this one has 2,001)."
    assert limits.text("  " + "é" * limits.REASON + "\n", "reason", "reason", "reason") == "é" * limits.REASON
    assert limits.text("   ", "reason", "reason", "reason") is None


def test_a_required_reason_is_bounded_wherever_it_is_asked_for():
    with pytest.raises(InvalidInput) as refused:
        audit.require_reason(MEGABYTE, field="missing_reason")
    assert refused.value.field == "missing_reason" and "x" * 50 not in refused.value.message


# --- through the pages and the API ----------------------------------------------------------------


def test_a_megabyte_correction_reason_is_refused_on_the_page_and_by_the_api_and_one_at_the_limit_is_kept(
        db, effective_specs, as_):
    number = start_placebo_lot(db)
    step = placebo_spec(db).steps[0]
    index = record_whole_step(db, number, step)
    with db.write() as s:
        steps.perform(s, users.by_username(s, "olivia"), PASSWORD, lots.by_number(s, number), step.code, index, None)
        original = s.scalars(select(StepValue).where(StepValue.parameter_code == "supplier_batch")).one()
    olivia = as_("olivia")
    before = _written(db)
    page = olivia.submit(f"/lots/{number}/correct", {"value_id": original.id, "new_value": "NACL-2",
                                                      "reason": MEGABYTE})
    _refused_on_page(page, "reason")
    api = olivia.post(f"/api/v1/lots/{number}/values/{original.id}/correction",
                      json={"value": "NACL-2", "reason": MEGABYTE})
    _refused_by_api(api, "reason")
    comment = olivia.post(f"/api/v1/lots/{number}/values/{original.id}/correction",
                          json={"value": "NACL-2", "reason": "typo", "comment": MEGABYTE})
    assert comment.status_code == 422 and comment.json()["field"] == "supplier_batch"
    assert _written(db) == before, "no value, no voided signature, no audit event"

    at_limit = "r" * limits.REASON
    kept = olivia.post(f"/api/v1/lots/{number}/values/{original.id}/correction",
                       json={"value": "NACL-2", "reason": at_limit})
    assert kept.status_code == 200, kept.text[:300]
    with db.read() as s:
        newest = s.scalars(select(StepValue).order_by(StepValue.id.desc())).first()
        assert newest.correction_reason == at_limit
        assert s.scalars(select(AuditEvent).where(AuditEvent.action == "value corrected")).one().reason == at_limit


def test_a_megabyte_deviation_description_is_refused_on_the_page_and_by_the_api(db, people, as_):
    olivia = as_("olivia")
    before = _written(db)
    page = olivia.submit("/deviations", {"severity": "minor", "description": MEGABYTE})
    _refused_on_page(page, "description")
    api = olivia.post("/api/v1/deviations", json={"severity": "minor", "description": MEGABYTE})
    _refused_by_api(api, "description")
    summary = olivia.post("/api/v1/deviations", json={"description": "Door left open", "blinded_summary": MEGABYTE})
    _refused_by_api(summary, "blinded_summary")
    assert _written(db) == before

    kept = olivia.post("/api/v1/deviations", json={"description": "d" * limits.DESCRIPTION})
    assert kept.status_code == 201, kept.text[:300]
    with db.read() as s:
        assert s.scalars(select(Deviation)).one().description == "d" * limits.DESCRIPTION


def test_a_megabyte_unblinding_reason_is_refused_on_the_page_and_by_the_api_and_the_arm_stays_sealed(
        db, trial_world, as_):
    a = trial_world.participant("active")
    enrol(db, a, "S-001")
    administer(db, a, trial_world.first_active[0])
    ida = as_("ida")
    before = _written(db)
    page = ida.submit("/unblinding", {"study": STUDY, "participant": a, "reason_code": "serious_adverse_event",
                                      "reason": MEGABYTE, "password": PASSWORD})
    _refused_on_page(page, "reason")
    api = ida.post("/api/v1/unblindings", json={"study": STUDY, "participant": a,
                                                "reason_code": "serious_adverse_event",
                                                "reason": MEGABYTE, "password": PASSWORD})
    _refused_by_api(api, "reason")
    assert _written(db) == before, "no unblinding, no signature, no audit event"
    with db.read() as s:
        assert s.scalars(select(Participant).where(Participant.randomisation_number == a)).one().unblinded_at is None

    kept = ida.post("/api/v1/unblindings", json={"study": STUDY, "participant": a,
                                                 "reason_code": "serious_adverse_event",
                                                 "reason": "u" * limits.REASON, "password": PASSWORD})
    assert kept.status_code in (200, 201), kept.text[:300]
    with db.read() as s:
        assert s.scalars(select(Unblinding)).one().reason == "u" * limits.REASON


def test_a_megabyte_quarantine_reason_is_refused_on_the_page_and_by_the_api_and_no_kit_moves(db, kit_world, as_):
    sara = as_("sara")
    before = _written(db)
    page = sara.submit("/supply/quarantines", {"lot": kit_world.asc_lot, "policy": "", "reason": MEGABYTE})
    _refused_on_page(page, "reason")
    api = sara.post("/api/v1/supply/quarantines", json={"lot": kit_world.asc_lot, "reason": MEGABYTE})
    _refused_by_api(api, "reason")
    assert _written(db) == before

    with db.write() as s:
        opened = quarantine.open_manual(s, actor_of(db, "sara"), lots.by_number(s, kit_world.asc_lot), None,
                                        "q" * limits.REASON)
        assert opened and opened[0].reason == "q" * limits.REASON


def test_a_megabyte_full_name_is_refused_on_the_page_and_by_the_api_and_no_user_is_made(db, people, as_):
    adam = as_("adam")
    before = _written(db)
    form = {"username": "nina", "full_name": MEGABYTE, "password": PASSWORD, "roles": "operator"}
    page = adam.submit("/admin/users", form)
    _refused_on_page(page, "name")
    api = adam.post("/api/v1/users", json={**form, "roles": ["operator"]})
    _refused_by_api(api, "full_name")
    assert _written(db) == before

    with db.write() as s:
        made = users.create_user(s, actor_of(db, "adam"), "nina", "N" * limits.NAME, PASSWORD, ["operator"])
        assert made.full_name == "N" * limits.NAME


# --- every service function's free text is bounded ------------------------------------------------

FREE_TEXT = re.compile(r"(reason|comment|note|description|summary|assessment|condition|station|witness|full_name)$")
BOUNDING = re.compile(r"(?:limits\.text|limits\.bounded|require_reason|inputs\.text|inputs\.optional_text|"
                      r"_required|_summary)\(\s*(?:given\.)?([a-z_]+)")
# Parameters that are not checked where they arrive, each with why that is safe: the function hands
# the text to one that bounds it, or the text is composed by cellbench itself, never typed.
PASSED_ON = {
    "custody/receipt.py receipt_scan(reason)": "handed to kits.read_code, which bounds it",
    "custody/receipt.py receipt_step(reason)": "handed to kits.read_code, which bounds it",
    "custody/receipt.py receive_into_box(reason)": "handed to kits.read_code, which bounds it",
    "custody/scanning.py scan(reason)": "handed to kits.read_code, which bounds it",
    "custody/scanning.py scan(station)": "handed to _sighting, which bounds it (scan_group's scans too)",
    "kits/reading.py scan(reason)": "handed to kits.read_code, which bounds it",
    "kits/reading.py scan_code(reason)": "handed to kits.read_code, which bounds it",
    "kits/reading.py scanned(reason)": "handed to kits.read_code, which bounds it",
    "pharmacy/administration.py start_preparation(reason)": "handed to kits.read_code, which bounds it",
    "pharmacy/dispensing.py dispense(reason)": "handed to kits.read_code, which bounds it",
    "pharmacy/records.py scan_kit(reason)": "handed to kits.read_code, which bounds it",
    "pharmacy/returns.py return_kit(reason)": "handed to kits.read_code, which bounds it",
    "accountability/verification.py verify_by_code(comment)": "verify bounds it",
    "audit.py record(reason)": "every caller bounds what a person typed before it records",
    "custody/events.py record(condition)": "composed by callers (returns bound it as a condition)",
    "custody/events.py move_kits(reason)": "composed by cellbench from bounded parts",
    "custody/events.py move_kits(condition)": "composed by cellbench, cut to the column",
    "kits/lifecycle.py move(reason)": "composed by cellbench or bounded by the caller",
    "kits/lifecycle.py move_many(reason)": "composed by cellbench or bounded by the caller",
    "kits/lifecycle.py issue(reason)": "composed by cellbench",
    "kits/lifecycle.py release_finally(reason)": "composed by cellbench",
    "lots/vials.py reason_given(reason)": "a rule over the note record_fate bounded",
    "lots/vials.py correct_placement(reason)": "steps.correct_value bounds it",
    "materials.py release_material(reason)": "decide_material bounds it",
    "materials.py reject_material(reason)": "decide_material bounds it",
    "notifications/messages.py emergency_unblinding(reason)": "unblinding.unblind bounded it",
    "notifications/messages.py kits_quarantined(reason)": "quarantine bounded it",
    "notifications/queue.py trail_visibility(note)": "a stored notification, not typed",
    "notifications/queue.py may_read_text(note)": "a stored notification, not typed",
    "pharmacy/lifecycle.py set_state(reason)": "composed by cellbench or bounded by the caller",
    "qc/review.py mark_reviewed(note)": "composed by cellbench",
    "signatures.py sign(reason)": "every caller bounds what a person typed before it signs",
    "steps/signing.py correct_value(comment)": "write_value bounds it",
    "steps/uses.py record_material(override_reason)": "_authorise_use bounds it",
    "steps/values.py write_value(correction_reason)": "correct_value bounds it",
    "steps/values.py open_deviation(description)": "composed by cellbench from bounded parts",
    "study_data.py move(reason)": "unblind bounds it",
    "supply/quarantine.py quarantine_lot(reason)": "open_manual bounds a typed one; the others are composed",
    "supply/quarantine.py lift(reason)": "_close bounds it",
    "supply/quarantine.py withdraw(reason)": "_close bounds it",
    "supply/shortages.py acknowledge(reason)": "sealed.acknowledge_shortage bounds it",
    "users/links.py unlink(reason)": "_change bounds it",
    "users/signin.py end_session(reason)": "a fixed code chosen by cellbench",
    "users/signin.py end_sessions(reason)": "a fixed code chosen by cellbench",
}
OUTSIDE = ("web", "api", "cli", "demo", "models", "migrations")  # entry points: they pass text to services


def _unbounded() -> set[str]:
    root = pathlib.Path(limits.__file__).parent
    found = set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] in OUTSIDE:
            continue
        source = path.read_text()
        for node in ast.parse(source).body:
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            body = ast.get_source_segment(source, node) or ""
            checked = set(BOUNDING.findall(body))
            for arg in node.args.args + node.args.kwonlyargs:
                if FREE_TEXT.search(arg.arg) and arg.arg not in checked:
                    found.add(f"{rel} {node.name}({arg.arg})")
    return found


def test_every_service_functions_free_text_is_bounded_where_it_arrives_or_is_passed_to_one_that_bounds_it():
    unbounded = _unbounded()
    assert unbounded - PASSED_ON.keys() == set(), "bound these with limits.text (or say in PASSED_ON why not)"
    assert PASSED_ON.keys() - unbounded == set(), "these are bounded now: take them out of PASSED_ON"
