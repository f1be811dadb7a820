"""An ASC lot through every step of the shipped asc-cs10 v1 specification, as the demo records it,
and the refusals that only the cell product's steps can show."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from cellbench import demo, integrity, lots, steps, users
from cellbench.clock import utcnow
from cellbench.errors import Conflict, InvalidInput
from cellbench.models import (
    Deviation,
    Equipment,
    Lot,
    LotState,
    MaterialLot,
    Signature,
    StepEntry,
    StepState,
    StepValue,
    Vial,
)
from cellbench.specifications import versions as spec_versions


@pytest.fixture
def demo_db(demo_world):
    return demo_world


def values(db, number, step_code):
    with db.read() as s:
        lot = lots.by_number(s, number)
        entry = steps.entries_of(s, lot)[step_code][0]
        return {code: v.value for code, v in steps.current_values(s, entry).items()}


def test_a_complete_asc_lot_has_every_step_performed_and_verified(demo_db):
    db = demo_db
    with db.read() as s:
        lot = lots.by_number(s, f"ASC-{utcnow():%Y}-0001")
        spec = spec_versions.parsed(lots.spec_of(s, lot))
        assert LotState(lot.state) == LotState.qc_pending
        by_code = steps.entries_of(s, lot)
        assert [st.code for st in spec.steps] == list(by_code)  # every step, in the master record's order
        for step in spec.steps:
            for entry in by_code[step.code]:
                assert StepState(entry.state) == (StepState.verified if step.verify else StepState.performed)
        assert len(by_code["expansion_passage"]) == 2
        # expiry: freeze date + 24 months shelf life
        frozen = values(db, lot.number, "controlled_rate_freezing")["freeze_started_at"]
        assert lot.expiry.year == int(frozen[:4]) + 2
        vials = s.scalars(select(Vial).where(Vial.lot_id == lot.id)).all()
        # every vial filled has its one fate: 2 pulled for QC, 2 retained, the other 10 placed
        assert len(vials) == 14 and sum(1 for v in vials if v.storage_position) == 10
        assert sorted(v.state for v in vials) == ["qc"] * 2 + ["retained"] * 2 + ["stored"] * 10
        assert s.scalars(select(Deviation).where(Deviation.lot_id == lot.id)).first() is None
    assert integrity.verify(db).ok


def test_cellbench_computes_the_formulation_from_the_count(demo_db):
    number = f"ASC-{utcnow():%Y}-0001"
    assert values(demo_db, number, "count")["total_viable_cells"] == "260"  # 5.2 × 10^6/mL × 50 mL
    formulation = values(demo_db, number, "formulation")
    # 260 × 10^6 cells at 25 × 10^6/mL is 10.4 mL; 0.2 mL of wash buffer stays with the pellet
    assert (formulation["final_volume"], formulation["cs10_volume"]) == ("10.4", "10.2")
    assert formulation["final_dmso"] == "9.808"
    passage = values(demo_db, number, "expansion_passage")
    assert passage["population_doublings"] == "1.585"  # log2(60 / 20)
    assert values(demo_db, number, "controlled_rate_freezing")["minutes_in_cs10_before_freezing"] == "24"


def test_the_demo_has_a_lot_in_process_one_on_hold_and_a_released_placebo_batch_record(demo_db):
    year = f"{utcnow():%Y}"
    with demo_db.read() as s:
        states = {lot.number: LotState(lot.state) for lot in s.scalars(select(Lot))}
    assert states == {f"ASC-{year}-0001": LotState.qc_pending, f"ASC-{year}-0002": LotState.in_process,
                      f"ASC-{year}-0003": LotState.on_hold, f"PLB-{year}-0001": LotState.qc_pending}


def _in_process(db):
    with db.read() as s:
        lot = lots.by_number(s, f"ASC-{utcnow():%Y}-0002")
        return lot.number, spec_versions.parsed(lots.spec_of(s, lot))


def _start_harvest(db, number):
    with db.write() as s:
        lot = lots.by_number(s, number)
        steps.start_entry(s, users.actor(s, users.by_username(s, "operator")), lot, "harvest", None)


def test_an_expired_material_is_refused(demo_db):
    number, _ = _in_process(demo_db)
    _start_harvest(demo_db, number)
    with demo_db.write() as s:
        s.execute(update(MaterialLot).where(MaterialLot.material_code == "tryple")
                  .values(expiry=utcnow().date() - timedelta(days=1)))
    with pytest.raises(InvalidInput) as refused, demo_db.write() as s:
        supplier_lot = s.scalars(select(MaterialLot.supplier_lot).where(MaterialLot.material_code == "tryple")).one()
        steps.record_material(s, users.actor(s, users.by_username(s, "operator")), lots.by_number(s, number),
                              "harvest", 1, f"tryple:{supplier_lot}", None)
    assert refused.value.field == "material" and "expired" in refused.value.message.lower()


def test_a_material_the_step_does_not_use_is_refused(demo_db):
    number, _ = _in_process(demo_db)
    _start_harvest(demo_db, number)
    with pytest.raises(InvalidInput) as refused, demo_db.write() as s:
        supplier_lot = s.scalars(select(MaterialLot.supplier_lot).where(MaterialLot.material_code == "cs10")).one()
        steps.record_material(s, users.actor(s, users.by_username(s, "operator")), lots.by_number(s, number),
                              "harvest", 1, f"cs10:{supplier_lot}", None)
    assert refused.value.field == "material"


def test_equipment_past_its_calibration_date_is_refused(demo_db):
    number, _ = _in_process(demo_db)
    _start_harvest(demo_db, number)
    with demo_db.write() as s:
        s.execute(update(Equipment).where(Equipment.asset_id == "QTM-01")
                  .values(calibration_due=utcnow().date() - timedelta(days=1)))
    with pytest.raises(InvalidInput) as refused, demo_db.write() as s:
        steps.record_equipment(s, users.actor(s, users.by_username(s, "operator")), lots.by_number(s, number),
                               "harvest", 1, "QTM-01", None)
    assert refused.value.field == "equipment" and "calibration" in refused.value.message.lower()


def test_an_out_of_limit_value_with_a_comment_opens_a_deviation(demo_db):
    number, _ = _in_process(demo_db)
    _start_harvest(demo_db, number)
    with demo_db.write() as s:
        steps.record_values(s, users.actor(s, users.by_username(s, "operator")), lots.by_number(s, number), "harvest",
                            1, {"harvest_volume": steps.ValueInput("650", "second bag used; all cells collected")},
                            None)
    with demo_db.read() as s:
        deviation = s.scalars(select(Deviation)).one()
        assert deviation.origin == "out_of_limit" and "harvest.harvest_volume = 650" in deviation.description
        value = s.scalars(select(StepValue).join(StepEntry, StepEntry.id == StepValue.entry_id)
                          .where(StepEntry.lot_id == lots.by_number(s, number).id,
                                 StepValue.parameter_code == "harvest_volume")).one()
        assert value.within_limits is False and value.comment.startswith("second bag")


def test_a_storage_position_never_holds_two_vials(demo_db):
    """A second lot, made up to its storage step, tries to put a vial where the first lot's vial is."""
    with demo_db.read() as s:
        taken = s.scalars(select(Vial.storage_position).where(Vial.storage_position.is_not(None))).first()
    tank, rack, box, position = taken.split("/")
    with demo_db.write() as s:
        operator_actor = users.actor(s, users.by_username(s, "operator"))
        donation = demo.eligible_donation(s, operator_actor, users.by_username(s, "qa"), 9)
        lot = demo.asc_lot(s, donation, until="storage_transfer")
        number = lot.number
        steps.start_entry(s, operator_actor, lot, "storage_transfer", None)
    with pytest.raises(Conflict) as refused, demo_db.write() as s:
        steps.record_values(s, users.actor(s, users.by_username(s, "operator")), lots.by_number(s, number),
                            "storage_transfer", 1, {"vial_id": steps.ValueInput(f"{number}-V001"),
                                                    "tank": steps.ValueInput(tank), "rack": steps.ValueInput(rack),
                                                    "box": steps.ValueInput(box),
                                                    "position": steps.ValueInput(position)}, None)
    assert refused.value.field == "position" and "already holds a vial" in refused.value.message
    with demo_db.read() as s:
        assert s.scalars(select(Vial).where(Vial.code == f"{number}-V001")).one().storage_position is None


def test_the_demo_records_are_signed_and_verify_cleanly(demo_db):
    with demo_db.read() as s:
        assert s.scalars(select(Signature).where(Signature.meaning == "verified")).first() is not None
    assert integrity.verify(demo_db).ok


def test_qa_may_override_a_refused_material_with_a_reason_which_opens_a_deviation(demo_db):
    number, _ = _in_process(demo_db)
    _start_harvest(demo_db, number)
    with demo_db.write() as s:
        s.execute(update(MaterialLot).where(MaterialLot.material_code == "tryple").values(status="quarantine"))
        supplier_lot = s.scalars(select(MaterialLot.supplier_lot).where(MaterialLot.material_code == "tryple")).one()
    scan = f"tryple:{supplier_lot}"
    with pytest.raises(Exception) as operator_refused, demo_db.write() as s:  # an operator cannot override
        steps.record_material(s, users.actor(s, users.by_username(s, "operator")), lots.by_number(s, number),
                              "harvest", 1, scan, None, override_reason="we need it")
    assert "qa" in str(operator_refused.value).lower()
    with demo_db.write() as s:
        steps.record_material(s, users.actor(s, users.by_username(s, "qa")), lots.by_number(s, number), "harvest", 1,
                              scan, None, override_reason="release paperwork delayed; CoA reviewed by QA")
    with demo_db.read() as s:
        deviation = s.scalars(select(Deviation)).one()
        assert deviation.origin == "material_override" and "CoA reviewed by QA" in deviation.description


def test_the_lot_page_lists_its_open_deviations(demo_db, app):
    from ..conftest import sign_in
    number, _ = _in_process(demo_db)
    _start_harvest(demo_db, number)
    with demo_db.write() as s:
        steps.record_values(s, users.actor(s, users.by_username(s, "operator")), lots.by_number(s, number), "harvest",
                            1, {"harvest_volume": steps.ValueInput("650", "second bag")}, None)
    page = sign_in(app, "qa", demo.DEMO_PASSWORD).get(f"/lots/{number}").text
    assert "1</strong> open deviation" in page and "DEV-" in page
