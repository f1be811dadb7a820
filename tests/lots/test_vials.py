"""Every vial accounted for: each vial filled gets one fate (placed, pulled for QC, retained,
destroyed), the storage step stays open until every one has it, only placed vials go into kits, and
the QP cannot certify a lot whose vials do not add up."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select, update

from cellbench import demo, integrity, lots, release, reports, steps, users
from cellbench.clock import utcnow
from cellbench.errors import Conflict, InvalidInput, NotFound
from cellbench.lots import vials as vial_rules
from cellbench.models import AuditEvent, Donation, Vial
from cellbench.specifications import versions as spec_versions
from cellbench.supply import packaging

from ..conftest import actor_of
from ..donors.test_donors import at_once
from ..reports.test_batch_record import pdf_text, words

YEAR = f"{utcnow():%Y}"
ASC = f"ASC-{YEAR}-0001"  # the demo's complete cell lot: 14 filled, 2 pulled for QC, 2 retained, 10 placed
PLB = f"PLB-{YEAR}-0001"


def lot_at_storage(db, n: int) -> str:
    """A new cell lot recorded up to its storage step: 14 vials filled, none with a fate yet."""
    with db.write() as s:
        operator = users.actor(s, users.by_username(s, "operator"))
        donation = demo.eligible_donation(s, operator, users.by_username(s, "qa"), n)
        return demo.asc_lot(s, donation, until="storage_transfer").number


def place(db, number: str, code: str, index: int) -> None:
    """One storage entry, performed and verified: the vial placed at its position."""
    with db.write() as s:
        lot = lots.by_number(s, number)
        step = steps.step_of(demo_spec(s, lot), "storage_transfer")
        values = demo.asc_values("storage_transfer", index, utcnow(), lot, "") | {"vial_id": code}
        demo.run_step(s, lot, step, values)


def demo_spec(s, lot):
    return spec_versions.parsed(lots.spec_of(s, lot))


def fate(db, number: str, code: str, what: str, reason: str | None = None, by: str = "operator") -> Vial:
    with db.write() as s:
        return lots.record_fate(s, users.actor(s, users.by_username(s, by)), lots.by_number(s, number), code, what,
                                reason)


def current_step(db, number: str) -> str | None:
    with db.read() as s:
        lot = lots.by_number(s, number)
        step = steps.current_step(demo_spec(s, lot), steps.entries_of(s, lot))
        return step.code if step else None


def state_of(db, code: str) -> str:
    with db.read() as s:
        return s.scalars(select(Vial.state).where(Vial.code == code)).one()


def events(db, number: str) -> list[AuditEvent]:
    with db.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.entity_id == number).order_by(AuditEvent.seq)))


# --- the storage step -------------------------------------------------------------------------------


def test_the_storage_step_stays_open_until_every_filled_vial_has_a_fate(demo_world):
    db = demo_world
    number = lot_at_storage(db, 21)
    codes = [f"{number}-V{n:03d}" for n in range(1, 15)]
    assert all(state_of(db, code) == "filled" for code in codes), "filled at fill, no fate yet"

    place(db, number, codes[0], 1)
    assert current_step(db, number) == "storage_transfer", "one entry signed, thirteen vials still waiting"
    with pytest.raises(InvalidInput) as closed, db.write() as s:  # the next step cannot start
        steps.start_entry(s, actor_of(db, "operator"), lots.by_number(s, number), "qc_and_retained_samples", None)
    assert "Transfer to vapour-phase nitrogen storage" in closed.value.message

    for code in codes[1:3]:
        fate(db, number, code, "qc")
    fate(db, number, codes[3], "retained", "LN2-A/R9, retained samples box")
    for code in codes[4:13]:
        fate(db, number, code, "destroyed", "label unreadable after freezing")
    assert current_step(db, number) == "storage_transfer", "the last vial has no fate yet"

    place(db, number, codes[13], 2)
    assert current_step(db, number) == "qc_and_retained_samples"
    with pytest.raises(InvalidInput) as nothing_left, db.write() as s:
        steps.start_entry(s, actor_of(db, "operator"), lots.by_number(s, number), "storage_transfer", None)
    assert nothing_left.value.field == "step" and "nothing left to place" in nothing_left.value.message
    with db.read() as s:
        counted = lots.reconcile(s, lots.by_number(s, number))
    assert (counted.filled, counted.placed, counted.qc, counted.retained, counted.destroyed) == (14, 2, 2, 1, 9)
    assert counted.reconciled and counted.free == 2


# --- one fate per vial --------------------------------------------------------------------------------


def test_a_vial_cannot_get_a_second_fate_and_nothing_changes(demo_world):
    db = demo_world
    number = lot_at_storage(db, 22)
    first = f"{number}-V001"
    fate(db, number, first, "qc")
    before = len(events(db, number))
    with pytest.raises(Conflict) as second:
        fate(db, number, first, "destroyed", "dropped")
    assert second.value.field == "vial" and f"Vial {first} is already pulled for QC" in second.value.message
    with pytest.raises(Conflict) as placed:  # the storage step cannot place it either
        place(db, number, first, 1)
    assert placed.value.field == "vial_id" and "already pulled for QC" in placed.value.message
    assert state_of(db, first) == "qc" and len(events(db, number)) == before


def test_a_placed_vial_is_not_pulled_for_qc_afterwards(demo_world):
    with demo_world.read() as s:
        placed = s.scalars(select(Vial).where(Vial.code.like(f"{ASC}-%"), Vial.state == "stored")).first()
    with pytest.raises(Conflict) as refused:
        fate(demo_world, ASC, placed.code, "qc")
    assert refused.value.field == "vial" and f"already placed in storage at {placed.storage_position}" in \
        refused.value.message


def test_two_people_scanning_one_vial_at_the_same_moment_give_one_fate(demo_world):
    db = demo_world
    number = lot_at_storage(db, 23)
    code = f"{number}-V002"
    outcomes = at_once(lambda: fate(db, number, code, "qc"),
                       lambda: fate(db, number, code, "retained", "LN2-A/R9", by="verifier"))
    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "Vial"]
    assert sum(1 for e in events(db, number) if e.field == f"vial {code}") == 1


def test_a_fate_set_by_someone_else_since_the_vial_was_read_is_a_conflict(demo_world, monkeypatch):
    """The fate is written only where the vial still has none: a stale read cannot overwrite it."""
    db = demo_world
    number = lot_at_storage(db, 24)
    code = f"{number}-V003"
    fate(db, number, code, "qc")
    monkeypatch.setattr(vial_rules, "vial_has_no_fate", lambda vial: None)  # as if read before the other's save
    with pytest.raises(Conflict) as refused:
        fate(db, number, code, "destroyed", "dropped")
    assert refused.value.field == "vial" and "at the same moment" in refused.value.message
    assert state_of(db, code) == "qc"


# --- bad scans and audit events ---------------------------------------------------------------------


@pytest.mark.parametrize(("scanned", "what", "reason", "error", "field", "says"), [
    ("", "qc", None, InvalidInput, "vial", "Scan or type the vial's code"),
    ("ASC-1999-0001-V001", "qc", None, NotFound, "vial", "No vial 'ASC-1999-0001-V001'"),
    (f"{PLB}-V001", "qc", None, InvalidInput, "vial", f"is not a vial of lot {ASC}"),
    (f"{ASC}-V001", "lost", None, InvalidInput, "fate", "Choose what happened to the vial"),
    (f"{ASC}-V001", "destroyed", "  ", InvalidInput, "reason", "Say why the vial was destroyed"),
])
def test_a_bad_scan_names_the_field_and_changes_nothing(demo_world, scanned, what, reason, error, field, says):
    before = len(events(demo_world, ASC))
    with pytest.raises(error) as refused:
        fate(demo_world, ASC, scanned, what, reason)
    assert refused.value.field == field and says in refused.value.message
    assert len(events(demo_world, ASC)) == before


def test_each_fate_writes_its_audit_event_on_the_lot(demo_world):
    db = demo_world
    number = lot_at_storage(db, 25)
    fate(db, number, f"{number}-V001", "qc")
    fate(db, number, f"{number}-V002", "destroyed", "cap cracked at thaw check")
    place(db, number, f"{number}-V003", 1)
    found = {e.field: e for e in events(db, number) if (e.field or "").startswith("vial ")}
    qc_pull, destroyed, placed = (found[f"vial {number}-V00{n}"] for n in (1, 2, 3))
    assert (qc_pull.action, qc_pull.old_value, qc_pull.new_value) == ("vial pulled for QC", "no fate yet",
                                                                      "pulled for QC")
    assert qc_pull.user_name == "Ole Jensen"
    assert (destroyed.action, destroyed.reason) == ("vial destroyed", "cap cracked at thaw check")
    assert placed.action == "vial placed" and placed.new_value.startswith("placed in storage LN2-A/R3/")
    with db.read() as s:
        vial = s.scalars(select(Vial).where(Vial.code == f"{number}-V002")).one()
        assert (vial.state, vial.fate_note) == ("destroyed", "cap cracked at thaw check") and vial.fate_at
    assert integrity.verify(db).ok


# --- free units ---------------------------------------------------------------------------------------


def test_free_units_are_placed_vials_not_pulled_retained_destroyed_or_unplaced(demo_world):
    db = demo_world
    number = lot_at_storage(db, 26)
    fate(db, number, f"{number}-V001", "qc")
    place(db, number, f"{number}-V002", 1)
    with db.read() as s:
        for lot in (lots.by_number(s, ASC), lots.by_number(s, PLB), lots.by_number(s, number)):
            free = s.scalars(select(Vial.code).where(Vial.lot_id == lot.id, lots.free_units())).all()
            assert len(free) == lots.reconcile(s, lot).free
        fillable = packaging.fillable_lots(s, "asc") + packaging.fillable_lots(s, "placebo")
        offered = {lot.number: n for lot, n in fillable}
        free_new = s.scalars(select(Vial.code).where(Vial.code.like(f"{number}-%"), lots.free_units())).all()
    # 14 filled − 2 pulled for QC − 2 retained = 10 placed and free; the saline lot 14 − 3 − 2 = 9
    assert offered == {ASC: 10, PLB: 9}, "packaging offers only placed vials (the new lot is not complete)"
    assert free_new == [f"{number}-V002"], "one placed; the QC vial and the twelve unplaced are not free"


# --- the release gate ---------------------------------------------------------------------------------


def unfate(db, number: str, *codes: str) -> None:
    """Vials without a fate on a complete lot: a record made before fates were kept (the 0014 migration)."""
    with db.write() as s:
        s.execute(update(Vial).where(Vial.code.in_(codes)).values(state="filled", storage_position=None))


def test_the_release_gate_names_the_vials_without_a_fate_and_the_qp_cannot_certify(demo_world):
    db = demo_world
    missing = [f"{ASC}-V{n:03d}" for n in (12, 13, 14)]
    with db.read() as s:
        assert release.vials_reconciled(s, lots.by_number(s, ASC)) is None
    unfate(db, ASC, *missing)
    with db.read() as s:
        why = release.vials_reconciled(s, lots.by_number(s, ASC))
    assert why == f"Vials of lot {ASC}: 3 of 14 vials have no recorded fate: {', '.join(missing)}."
    for guard in ("initial_certification", "final_certification"):
        assert release.vials_reconciled in release.GUARDS[guard]

    with db.write() as s:
        lot = lots.by_number(s, ASC)
        demo.demo_results(s, lot)
        for kind in release.REVIEW_KINDS:
            release.sign_review(s, users.by_username(s, "qa"), demo.DEMO_PASSWORD, lot, kind)
    with pytest.raises(InvalidInput) as refused, db.write() as s:
        release.certify(s, users.by_username(s, "qp"), demo.DEMO_PASSWORD, lots.by_number(s, ASC), final=True)
    assert refused.value.field == "gates" and "3 of 14 vials have no recorded fate" in refused.value.message
    with db.read() as s:
        assert lots.by_number(s, ASC).state == "qc_pending"
        gates = {g.name: g for g in release.readiness(s, lots.by_number(s, ASC))}
    # the storage step is open again too: it closes only when every vial has its fate
    assert {g.name for g in gates.values() if not g.passed} == {"batch_record_complete", "vials_reconciled"}
    assert "Transfer to vapour-phase nitrogen storage" in gates["batch_record_complete"].blocking_reason

    for code in missing:
        fate(db, ASC, code, "destroyed", "found thawed on the carrier")
    with db.read() as s:
        assert release.vials_reconciled(s, lots.by_number(s, ASC)) is None


def test_a_long_list_of_vials_without_a_fate_names_ten_and_counts_the_rest():
    counted = lots.Reconciliation(filled=60, placed=40, qc=3, retained=2, destroyed=0,
                                  without_fate=[f"V{n:03d}" for n in range(1, 16)])
    assert lots.unreconciled(counted) == ("15 of 60 vials have no recorded fate: V001, V002, V003, V004, V005, V006, "
                                          "V007, V008, V009, V010 and 5 more.")


def test_the_donor_gate_reads_as_a_reviewer_writes_it(demo_world):
    with demo_world.read() as s:
        cell = {g.name: g.label for g in release.readiness(s, lots.by_number(s, ASC))}
        saline = {g.name: g.label for g in release.readiness(s, lots.by_number(s, PLB))}
        identifier = s.get(Donation, lots.by_number(s, ASC).donation_id).identifier
    assert cell["donor_eligible"] == f"Donor eligible (donation {identifier}, decided by QA)"
    assert saline["donor_eligible"] == "No donor to assess: saline placebo (0.9 % sodium chloride)"
    assert "placebo" not in cell["donor_eligible"]


# --- the lot page, the API and the batch record -------------------------------------------------------


def text_of(html_text: str) -> str:
    return words(re.sub(r"<[^>]+>", " ", html_text))


def test_the_lot_page_shows_the_reconciliation_and_records_a_fate_by_scan(db, as_, people, demo_world):
    number = lot_at_storage(db, 27)
    olivia = as_("olivia")
    page = text_of(olivia.get(f"/lots/{number}").text)
    assert "Filled Placed Pulled for QC Retained Destroyed No fate yet 14 0 0 0 0 14" in page
    assert f"No fate yet: {number}-V001" in page and "Record the vial's fate" in page

    refused = olivia.submit(f"/lots/{number}/vial", {"vial_fate_form": "1", "vial": f"{number}-V099", "fate": "qc"})
    assert refused.status_code == 404 and f"No vial '{number}-V099'" in words(refused.text)
    assert 'aria-invalid="true"' in refused.text and f'value="{number}-V099"' in refused.text, "the scan is kept"

    saved = olivia.submit(f"/lots/{number}/vial", {"vial_fate_form": "1", "vial": f" {number.lower()}-v001 ",
                                                   "fate": "qc"})
    assert saved.status_code == 303
    assert state_of(db, f"{number}-V001") == "qc"
    page = text_of(olivia.get(f"/lots/{number}").text)
    assert "14 0 1 0 0 13" in page and f"No fate yet: {number}-V002" in page
    assert as_("sara").get(f"/lots/{number}").status_code == 403


def test_the_vial_api_gives_the_reconciliation_and_refuses_a_second_fate(db, as_, people, demo_world):
    number = lot_at_storage(db, 28)
    quinn = as_("quinn")  # QC takes its samples
    body = quinn.post(f"/api/v1/lots/{number}/vials/{number}-V001/fate", json={"fate": "qc"}).json()
    assert (body["filled"], body["pulled_for_qc"], body["reconciled"]) == (14, 1, False)
    assert body["vials"][0] == {"code": f"{number}-V001", "fate": "pulled for QC", "storage_position": None,
                                "note": None, "recorded_at": body["vials"][0]["recorded_at"]}
    again = quinn.post(f"/api/v1/lots/{number}/vials/{number}-V001/fate", json={"fate": "retained"})
    assert again.status_code == 409 and "already pulled for QC" in again.text
    assert as_("peter").get(f"/api/v1/lots/{ASC}/vials").json()["reconciled"] is True
    assert as_("sara").post(f"/api/v1/lots/{number}/vials/{number}-V002/fate", json={"fate": "qc"}).status_code == 403


def test_the_batch_record_lists_each_vial_once_with_its_one_fate(db, as_, people, demo_world):
    unfate(db, ASC, f"{ASC}-V014")
    with db.read() as s:
        record = reports.batch_record(s, ASC)
    assert [v.code for v in record.vials] == [f"{ASC}-V{n:03d}" for n in range(1, 15)], "each vial once"
    assert record.vial_counts == {"filled": 14, "placed": 9, "pulled for QC": 2, "retained": 2, "destroyed": 0,
                                  "no fate yet": 1}
    assert not record.complete, "a vial without a fate keeps the storage step, and the record, open"
    page = text_of(as_("peter").get(f"/lots/{ASC}/record").text)
    text, _pages = pdf_text(as_("peter").get(f"/lots/{ASC}/record.pdf").content)
    placed = next(v for v in record.vials if v.storage_position)
    for shown in (page, text):
        assert f"{ASC}-V001 pulled for QC" in shown and f"{ASC}-V003 retained sample" in shown
        assert f"{placed.code} {placed.storage_position} placed in storage" in shown
        assert f"{ASC}-V014 no fate yet" in shown
        assert "not placed" not in shown and " stored " not in f" {shown} "


def test_correcting_a_storage_entry_moves_the_placement_with_it(demo_world):
    """A position typed wrong, corrected with a reason: the vial is where the entry now says, and a
    vial named wrong goes back to no fate while the right one is placed."""
    db = demo_world
    number = lot_at_storage(db, 29)
    place(db, number, f"{number}-V001", 1)
    with db.write() as s:
        lot = lots.by_number(s, number)
        entry = steps.entries_of(s, lot)["storage_transfer"][0]
        values = steps.current_values(s, entry)
        steps.correct_value(s, actor_of(db, "operator"), lot, values["position"].id, "40",
                            "box position misread: the vial sits in 40")
    with db.read() as s:
        vial = s.scalars(select(Vial).where(Vial.code == f"{number}-V001")).one()
        assert vial.state == "stored" and vial.storage_position.endswith("/40")
    with db.write() as s:
        lot = lots.by_number(s, number)
        values = steps.current_values(s, steps.entries_of(s, lot)["storage_transfer"][0])
        steps.correct_value(s, actor_of(db, "operator"), lot, values["vial_id"].id, f"{number}-V002",
                            "the carrier held V002 in that slot")
    assert (state_of(db, f"{number}-V001"), state_of(db, f"{number}-V002")) == ("filled", "stored")
    actions = [e.action for e in events(db, number) if e.field in (f"vial {number}-V001", f"vial {number}-V002")]
    assert actions[-2:] == ["vial placement withdrawn", "vial placed"]
    assert integrity.verify(db).ok
