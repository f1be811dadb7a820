"""The batch record: specification versions, lots and guided steps, driven through the services."""
from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
from sqlalchemy import select

from cellbench import integrity, lots, steps, users
from cellbench.clock import utcnow
from cellbench.errors import AuthenticationFailed, Conflict, Forbidden, InvalidInput
from cellbench.models import AuditEvent, LotState, Signature, SpecStatus, StepState, StepValue
from cellbench.specifications import Parameter, specs_root
from cellbench.specifications import versions as spec_versions

from ..conftest import PASSWORD, actor_of


def good_value(p: Parameter) -> str:
    """A value within the master batch record's limits, as an operator would type it."""
    if p.type == "number":
        low, high = p.min, p.max
        if low is not None and high is not None:
            return f"{(low + high) / 2:g}"
        return f"{low if low is not None else high if high is not None else 1:g}"
    if p.type == "choice":
        return p.choices[0]
    if p.type == "boolean":
        return "yes" if p.expected in (True, None) else "no"
    if p.type == "date":
        return (utcnow() + timedelta(days=400)).date().isoformat()
    if p.type == "datetime":
        return (utcnow() - timedelta(hours=1)).isoformat(timespec="minutes")
    return "A" if p.pattern else f"{p.label[:20]} ok"


def record_whole_step(db, lot_number, step, *, by="olivia"):
    with db.write() as s:
        lot = lots.by_number(s, lot_number)
        entry = steps.start_entry(s, actor_of(db, by), lot, step.code, lot.row_version)
        index = entry.repeat_index
    with db.write() as s:
        lot = lots.by_number(s, lot_number)
        inputs = {p.code: steps.ValueInput(good_value(p)) for p in step.parameters if not p.computed}
        if "vial_id" in inputs:  # a storage entry names a vial the fill created that has no fate yet
            inputs["vial_id"] = steps.ValueInput(lots.without_fate(s, lot)[0])
        if "vials_filled" in inputs:  # a small fill: the storage step closes only when each vial has its fate
            inputs["vials_filled"] = steps.ValueInput(str(SMALL_FILL))
        steps.record_values(s, actor_of(db, by), lot, step.code, index, inputs, lot.row_version)
    return index


SMALL_FILL = 9  # vials: 5 pulled for QC and 3 retained (good_value of the saline counts), 1 placed


def sample_vials(db, lot_number, *, by="olivia") -> None:
    """The QC vials and retained samples scanned out before the rest are placed, as many as the
    samples step will then count (good_value of its counts)."""
    with db.write() as s:
        lot = lots.by_number(s, lot_number)
        counts = {p.code: int(float(good_value(p))) for step in spec_versions.parsed(lots.spec_of(s, lot)).steps
                  for p in step.parameters if p.code in ("qc_vials", "retained_vials")}
        filled = lots.without_fate(s, lot)
        qc, retained = counts["qc_vials"], counts["retained_vials"]
        for code in filled[:qc]:
            lots.record_fate(s, actor_of(db, by), lot, code, "qc")
        for code in filled[qc:qc + retained]:
            lots.record_fate(s, actor_of(db, by), lot, code, "retained", "LN2-A/R9")


def stock_for(db, spec) -> None:
    """A released lot of every material and a calibrated instrument of every kind the steps name."""
    from cellbench import materials

    with db.write() as s:
        for code, name in {m.code: m.name for step in spec.steps for m in step.materials}.items():
            lot = materials.receive_material(s, actor_of(db, "olivia"), material_code=code, name=name, supplier="S",
                                             supplier_lot=f"{code.upper()}-1", expiry=utcnow().date() + timedelta(300))
            materials.release_material(s, actor_of(db, "anna"), lot, "certificate reviewed")
        for code, name in {e.code: e.name for step in spec.steps for e in step.equipment}.items():
            materials.register_equipment(s, actor_of(db, "olivia"), asset_id=f"{code.upper()}-1", equipment_code=code,
                                         name=name, calibration_due=utcnow().date() + timedelta(100))


def record_uses(db, lot_number, step, index, *, by="olivia"):
    with db.write() as s:
        lot = lots.by_number(s, lot_number)
        for m in step.materials:
            steps.record_material(s, actor_of(db, by), lot, step.code, index, f"{m.code}:{m.code.upper()}-1", None)
        for e in step.equipment:
            steps.record_equipment(s, actor_of(db, by), lot, step.code, index, f"{e.code.upper()}-1", None)


def sign(db, lot_number, step, index, *, performer="olivia", verifier="victor"):
    with db.write() as s:
        lot = lots.by_number(s, lot_number)
        steps.perform(s, users.by_username(s, performer), PASSWORD, lot, step.code, index, lot.row_version)
    if step.verify:
        with db.write() as s:
            lot = lots.by_number(s, lot_number)
            steps.verify(s, users.by_username(s, verifier), PASSWORD, lot, step.code, index, lot.row_version)


def start_placebo_lot(db) -> str:
    with db.write() as s:
        return lots.start_lot(s, actor_of(db, "olivia"), "saline-placebo").number


def placebo_spec(db):
    with db.read() as s:
        return spec_versions.parsed(spec_versions.effective(s, "saline-placebo"))


# --- specification versions -------------------------------------------------------------------


def test_qa_approval_makes_a_version_effective_with_a_signature(db, effective_specs):
    with db.read() as s:
        rows = spec_versions.all_versions(s)
        assert {r.product_code for r in rows} == {"asc-cs10", "saline-placebo"}
        assert all(r.signature_id for r in rows), "every version approved, in version order"
        assert {(r.product_code, r.version) for r in rows if SpecStatus(r.status) == SpecStatus.effective} == {
            ("asc-cs10", 2), ("saline-placebo", 2)}, "the latest of each effective, the earlier superseded"
        sig = s.get(Signature, rows[0].signature_id)
        assert sig.signer_name == "Anna QA" and sig.meaning == "approved"
    assert integrity.verify(db).ok


def test_editing_an_effective_specification_is_refused(db, effective_specs, tmp_path):
    edited = tmp_path / "specs"
    shutil.copytree(specs_root(), edited)
    path = edited / "saline-placebo" / "v1.toml"
    path.write_text(path.read_text().replace("max = 2000", "max = 3000", 1))
    with pytest.raises(Conflict) as refused, db.write() as s:
        spec_versions.sync_from_files(s, actor_of(db, "anna"), edited)
    assert "cannot change" in refused.value.message and "v2.toml" in refused.value.message


def test_a_lot_needs_an_effective_specification(db, people):
    with pytest.raises(InvalidInput) as refused, db.write() as s:
        lots.start_lot(s, actor_of(db, "olivia"), "saline-placebo")
    assert refused.value.field == "product" and "QA must approve" in refused.value.message


# --- driving a lot ----------------------------------------------------------------------------


def test_a_placebo_lot_goes_through_every_step_to_a_complete_batch_record(db, effective_specs):
    number = start_placebo_lot(db)
    assert number.startswith("PLB-")
    stock_for(db, placebo_spec(db))  # the mirror fill uses the ASC product's cryovials and instruments
    for step in placebo_spec(db).steps:
        if step.code == "storage_transfer":
            sample_vials(db, number)
        index = record_whole_step(db, number, step)
        record_uses(db, number, step, index)
        sign(db, number, step, index)
    with db.read() as s:
        lot = lots.by_number(s, number)
        assert LotState(lot.state) == LotState.qc_pending
        assert lots.reconcile(s, lot).reconciled
        assert lot.expiry is not None  # frozen shelf life, never beyond the supplier's expiry
        actions = [e.action for e in s.scalars(select(AuditEvent).where(AuditEvent.entity_id == number))]
        assert actions[0] == "lot started" and "batch record complete" in actions
    assert integrity.verify(db).ok


def test_completion_is_the_lot_tables_own_move_made_only_by_the_finished_batch_record(db, effective_specs):
    number = start_placebo_lot(db)
    first = placebo_spec(db).steps[0]
    assert lots.MOVES["complete"].target is LotState.qc_pending
    with db.read() as s:
        lot = lots.by_number(s, number)
        assert "complete" not in lots.allowed_moves(lot, actor_of(db, "olivia"))  # never a button
        with pytest.raises(InvalidInput) as unfinished:
            lots.complete(s, actor_of(db, "olivia"), lot, None)  # the steps' guard on the table
        assert f"Step '{first.title}'" in unfinished.value.message
    with pytest.raises(InvalidInput) as by_hand, db.write() as s:
        lots.move(s, users.by_username(s, "olivia"), lots.by_number(s, number), "complete", None)
    assert "follows from its batch record" in by_hand.value.message
    with db.read() as s:
        assert LotState(lots.by_number(s, number).state) == LotState.in_process


def test_a_lot_does_not_complete_when_nothing_would_check_its_batch_record(db, effective_specs, monkeypatch):
    """The completeness rule is the steps' guard on the lot table; without it, completion is refused."""
    number = start_placebo_lot(db)
    monkeypatch.setattr(lots.MACHINE, "_extra", {})
    with pytest.raises(InvalidInput) as refused, db.read() as s:
        lots.complete(s, actor_of(db, "olivia"), lots.by_number(s, number), None)
    assert "completeness rule is not loaded" in refused.value.message


def test_a_step_out_of_order_is_refused(db, effective_specs):
    number = start_placebo_lot(db)
    later = placebo_spec(db).steps[1]
    with pytest.raises(InvalidInput) as refused, db.write() as s:
        steps.start_entry(s, actor_of(db, "olivia"), lots.by_number(s, number), later.code, None)
    assert refused.value.field == "step" and "must be completed first" in refused.value.message


def test_nobody_verifies_their_own_step(db, effective_specs):
    number = start_placebo_lot(db)
    step = placebo_spec(db).steps[0]
    index = record_whole_step(db, number, step)
    with db.write() as s:
        steps.perform(s, users.by_username(s, "olivia"), PASSWORD, lots.by_number(s, number), step.code, index, None)
    with db.write() as s:
        users.set_roles(s, actor_of(db, "adam"), users.by_username(s, "olivia"), ["operator", "verifier"], "trained")
    with pytest.raises(Forbidden) as refused, db.write() as s:
        steps.verify(s, users.by_username(s, "olivia"), PASSWORD, lots.by_number(s, number), step.code, index, None)
    assert "verifies their own step" in refused.value.message


def test_an_out_of_limit_value_without_a_comment_is_refused_and_nothing_is_saved(db, effective_specs):
    number = start_placebo_lot(db)
    step = placebo_spec(db).steps[0]
    with db.write() as s:
        lot = lots.by_number(s, number)
        steps.start_entry(s, actor_of(db, "olivia"), lot, step.code, None)
    with pytest.raises(InvalidInput) as refused, db.write() as s:
        steps.record_values(s, actor_of(db, "olivia"), lots.by_number(s, number), step.code, 1,
                            {"supplier": steps.ValueInput("B. Braun"), "units_received": steps.ValueInput("5000")},
                            None)
    assert refused.value.field == "units_received" and "outside its limits" in refused.value.message
    with db.read() as s:
        assert s.scalars(select(StepValue)).first() is None


def test_signing_needs_every_required_value(db, effective_specs):
    number = start_placebo_lot(db)
    step = placebo_spec(db).steps[0]
    with db.write() as s:
        steps.start_entry(s, actor_of(db, "olivia"), lots.by_number(s, number), step.code, None)
    with pytest.raises(InvalidInput) as refused, db.write() as s:
        steps.perform(s, users.by_username(s, "olivia"), PASSWORD, lots.by_number(s, number), step.code, 1, None)
    assert refused.value.message.startswith("Still to record:")


def test_two_people_recording_the_same_step_at_once_one_wins_one_gets_a_conflict(db, effective_specs):
    number = start_placebo_lot(db)
    step = placebo_spec(db).steps[0]
    with db.read() as s:
        seen = lots.by_number(s, number).row_version  # both opened the page at this version
    with db.write() as s:
        steps.start_entry(s, actor_of(db, "olivia"), lots.by_number(s, number), step.code, seen)
    with pytest.raises(Conflict) as refused, db.write() as s:
        steps.start_entry(s, actor_of(db, "oscar"), lots.by_number(s, number), step.code, seen)
    assert "Someone else recorded" in refused.value.message
    with db.read() as s:
        assert len(steps.entries_of(s, lots.by_number(s, number))[step.code]) == 1


def test_a_correction_keeps_the_original_needs_a_reason_and_voids_the_signature(db, effective_specs):
    number = start_placebo_lot(db)
    step = placebo_spec(db).steps[0]
    index = record_whole_step(db, number, step)
    with db.write() as s:
        steps.perform(s, users.by_username(s, "olivia"), PASSWORD, lots.by_number(s, number), step.code, index, None)
    with db.read() as s:
        original = s.scalars(select(StepValue).where(StepValue.parameter_code == "supplier_batch")).one()
    with pytest.raises(InvalidInput), db.write() as s:
        steps.correct_value(s, actor_of(db, "olivia"), lots.by_number(s, number), original.id, "NACL-2", "  ")
    with db.write() as s:
        steps.correct_value(s, actor_of(db, "olivia"), lots.by_number(s, number), original.id, "NACL-2",
                            "transcription error: batch on the carton is NACL-2")
    with db.read() as s:
        rows = s.scalars(select(StepValue).where(StepValue.parameter_code == "supplier_batch")
                         .order_by(StepValue.id)).all()
        assert [r.value for r in rows] == [original.value, "NACL-2"]
        assert rows[0].superseded_by == rows[1].id and rows[1].correction_reason.startswith("transcription")
        entry = steps.entries_of(s, lots.by_number(s, number))[step.code][0]
        assert StepState(entry.state) == StepState.open
        assert s.scalars(select(Signature).where(Signature.invalidated_at.is_not(None))).first() is not None
    assert integrity.verify(db).ok


def test_a_lot_on_hold_takes_no_entries_until_qa_resumes_it(db, effective_specs):
    number = start_placebo_lot(db)
    step = placebo_spec(db).steps[0]
    with pytest.raises(InvalidInput), db.write() as s:
        lots.move(s, users.by_username(s, "olivia"), lots.by_number(s, number), "hold", "")
    with db.write() as s:
        lots.move(s, users.by_username(s, "olivia"), lots.by_number(s, number), "hold", "supplier recall query")
    with pytest.raises(InvalidInput) as refused, db.write() as s:
        steps.start_entry(s, actor_of(db, "olivia"), lots.by_number(s, number), step.code, None)
    assert "on hold" in refused.value.message
    with pytest.raises(Forbidden), db.write() as s:
        lots.move(s, users.by_username(s, "olivia"), lots.by_number(s, number), "resume", "ok")
    with db.write() as s:
        lots.move(s, users.by_username(s, "anna"), lots.by_number(s, number), "resume", "query answered")
    with db.read() as s:
        assert LotState(lots.by_number(s, number).state) == LotState.in_process


def test_aborting_a_lot_needs_qas_signature(db, effective_specs):
    number = start_placebo_lot(db)
    with pytest.raises(AuthenticationFailed), db.write() as s:
        lots.move(s, users.by_username(s, "anna"), lots.by_number(s, number), "abort", "contaminated",
                  password="wrong!!")
    with db.write() as s:
        lots.move(s, users.by_username(s, "anna"), lots.by_number(s, number), "abort", "contaminated",
                  password=PASSWORD)
    with db.read() as s:
        assert LotState(lots.by_number(s, number).state) == LotState.aborted
        assert s.scalars(select(Signature).where(Signature.entity_type == "lot_decision")).one().meaning == "rejected"


# --- pages ------------------------------------------------------------------------------------


def test_the_guided_page_shows_the_current_step_and_keeps_typed_values_on_error(as_, db, effective_specs):
    olivia = as_("olivia")
    started = olivia.submit("/lots", {"product": "saline-placebo"})
    assert started.status_code == 303
    number = started.headers["location"].split("/lots/")[1].split("?")[0]
    page = olivia.get(f"/lots/{number}")
    assert "Start this step" in page.text and 'id="current"' in page.text
    version = int(page.text.split('name="lot_version" value="')[1].split('"')[0])
    started = olivia.submit(f"/lots/{number}/start", {"step": "supplier_receipt", "lot_version": version})
    assert started.status_code == 303
    page = olivia.get(f"/lots/{number}")
    version = int(page.text.split('name="lot_version" value="')[1].split('"')[0])
    refused = olivia.submit(f"/lots/{number}/values", {"step": "supplier_receipt", "entry": 1, "lot_version": version,
                                                       "v:supplier": "B. Braun", "v:units_received": "5000"})
    assert refused.status_code == 422 and "outside its limits" in refused.text
    assert 'value="B. Braun"' in refused.text and 'value="5000"' in refused.text
    stale = olivia.submit(f"/lots/{number}/values", {"step": "supplier_receipt", "entry": 1, "lot_version": version - 1,
                                                     "v:supplier": "B. Braun"})
    assert stale.status_code == 409


def test_two_operators_racing_on_one_lot_get_one_success_and_one_conflict(db, effective_specs):
    """Real concurrency: two threads, two connections, the same page version. On PostgreSQL the
    second blocks on the lot row until the first commits, then finds the version gone."""
    import threading

    number = start_placebo_lot(db)
    step = placebo_spec(db).steps[0]
    with db.read() as s:
        seen = lots.by_number(s, number).row_version
    barrier, outcomes = threading.Barrier(2), []

    def race(username: str) -> None:
        barrier.wait()
        try:
            with db.write() as s:
                steps.start_entry(s, actor_of(db, username), lots.by_number(s, number), step.code, seen)
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=race, args=(u,)) for u in ("olivia", "oscar")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "ok"]
    with db.read() as s:
        assert len(steps.entries_of(s, lots.by_number(s, number))[step.code]) == 1
