"""The placebo as a mirror fill (saline-placebo v2), in the whole demo: its batch record runs end to
end through fill, freezing and storage like an ASC lot's; its kits are stored, shipped and received as
the active kits are; and every certificate and batch record names the manufacturer."""
from __future__ import annotations

import io
from collections import defaultdict
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from cellbench import lots, sealed, steps, users
from cellbench.clock import utcnow
from cellbench.models import CustodyEvent, Kit, Lot, LotState, SpecVersion, StepState, Vial
from cellbench.release import certificates
from cellbench.reports import batch_record, batch_record_pdf
from cellbench.specifications import load_spec_file, specs_root
from cellbench.specifications import versions as spec_versions
from cellbench.steps import months_later

MANUFACTURER = "OUH Cell Bench, Odense, Denmark"
ZONE = ZoneInfo("Europe/Copenhagen")


def pdf_text(pdf: bytes) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).split())


@pytest.fixture(scope="module")
def placebo_v2():
    return load_spec_file(specs_root() / "saline-placebo" / "v2.toml")


def test_saline_v2_fills_the_asc_cryovials_at_the_asc_volume_and_keeps_its_own_release_tests(placebo_v2):
    asc = load_spec_file(specs_root() / "asc-cs10" / "v2.toml")
    assert placebo_v2.presented() == asc.presented(), "the same presentation, word for word"
    fill = {step.code: step for step in placebo_v2.steps}["fill"]
    asc_fill = {step.code: step for step in asc.steps}["fill"]
    assert [m.name for m in fill.materials] == [m.name for m in asc_fill.materials]
    assert {step.code for step in placebo_v2.steps} >= {"fill", "controlled_rate_freezing", "storage_transfer"}
    assert {t.code for t in placebo_v2.tests} >= {"sterility", "endotoxin", "appearance", "fill_volume",
                                                  "container_integrity"}
    v1 = load_spec_file(specs_root() / "saline-placebo" / "v1.toml")
    assert v1.presentation is None and v1.product.dose.unit == "ampoule", "v1 stays readable as it was"


def test_every_demo_placebo_lot_is_a_mirror_fill_run_end_to_end(demo_trial_world):
    with demo_trial_world.read() as s:
        placebo = list(s.scalars(select(Lot).join(SpecVersion, SpecVersion.id == Lot.spec_version_id)
                                 .where(SpecVersion.kind == "placebo")))
        assert placebo and {lots.spec_of(s, lot).version for lot in placebo} == {2}
        for lot in placebo:
            spec = spec_versions.parsed(lots.spec_of(s, lot))
            entries = steps.entries_of(s, lot)
            assert list(entries) == [step.code for step in spec.steps], lot.number
            assert all(e.state == StepState.verified for rows in entries.values() for e in rows), lot.number
            assert LotState(lot.state) not in (LotState.in_process,), lot.number
            vials = list(s.scalars(select(Vial).where(Vial.lot_id == lot.id).order_by(Vial.seq)))
            assert vials[0].code == f"{lot.number}-V001", "one unit per vial filled"
            assert lots.reconcile(s, lot).reconciled, "every vial placed, pulled for QC or retained, as ASC vials"
            placed = [v.storage_position for v in vials if v.storage_position]
            assert placed and all(p.startswith("LN2-A/") for p in placed), "stored in the ASC product's tank"
            frozen = steps.current_values(s, entries["controlled_rate_freezing"][0])["freeze_started_at"].value
            supplier = steps.current_values(s, entries["supplier_receipt"][0])["supplier_expiry"].value
            expected = min(months_later(datetime.fromisoformat(frozen).date(), 24), date.fromisoformat(supplier))
            assert lot.expiry == expected, "frozen shelf life, never beyond the saline's own expiry"


def _kind_of_place(place: str | None) -> str:
    where = (place or "").split(" · ")[0]
    return "Shipment" if where.startswith("Shipment ") else where


def test_placebo_kits_are_stored_shipped_and_received_as_active_kits_are(demo_trial_world):
    """For each blinded lot and kit state, the custody chain's moves and places of the placebo kits
    are those of the active kits: no arm-specific store, shipper or receipt."""
    with demo_trial_world.write() as s:
        supply = users.actor(s, users.by_username(s, "supply"))
        kits_ = list(s.scalars(select(Kit).where(Kit.blinded_lot_id.is_not(None))))
        arm = sealed.arms_of_kits(s, supply, [k.id for k in kits_], why="test: mirror handling")
        chains: dict[tuple, dict[str, set]] = defaultdict(lambda: defaultdict(set))
        for kit in kits_:
            # Which of two shipments a kit went into is the random draw's doing; its kind of place is not.
            moves = tuple((e.action, _kind_of_place(e.to_place)) for e in s.scalars(
                select(CustodyEvent).where(CustodyEvent.kit_id == kit.id).order_by(CustodyEvent.id)))
            chains[(kit.blinded_lot_id, kit.state)][arm[kit.id]].add(moves)
    compared = 0
    for (_, state), by_arm in chains.items():
        if {"active", "placebo"} <= set(by_arm) and state in ("at_site", "released", "in_transit"):
            assert by_arm["placebo"] <= by_arm["active"] or by_arm["active"] <= by_arm["placebo"], state
            compared += 1
    assert compared, "the demo has kits of both arms in the same lot and state to compare"
    shipped = {moves for by_arm in chains.values() for moves in by_arm.get("placebo", set())
               if any(action == "received" for action, _ in moves)}
    assert shipped, "placebo kits were shipped and received in the demo"


def test_the_coa_release_certificate_and_batch_record_name_the_manufacturer(demo_trial_world):
    with demo_trial_world.read() as s:
        released = list(s.scalars(select(Lot).where(Lot.state == LotState.released)))
        placebo = next(lot for lot in released if lot.number.startswith("PLB"))
        active = next(lot for lot in released if lot.number.startswith("ASC"))
        data = {lot.number: certificates.gather(s, lot.number) for lot in (placebo, active)}
        record = batch_record(s, placebo.number)
    for number, gathered in data.items():
        assert gathered.manufacturer == MANUFACTURER, number
        coa = pdf_text(certificates.coa_pdf(gathered, zone=ZONE, printed_by="Anna Berg", printed_at=utcnow(),
                                            authorisation="DK-TEST-0001"))
        assert f"Manufactured by {MANUFACTURER}" in coa and "Manufacturing authorisation DK-TEST-0001" in coa
        release = pdf_text(certificates.release_certificate_pdf(gathered, zone=ZONE, printed_by="Anna Berg",
                                                                printed_at=utcnow()))
        assert f"Manufactured by {MANUFACTURER}" in release and "Manufacturing authorisation NOT SET" in release
    printed = pdf_text(batch_record_pdf(record, zone=ZONE, printed_by="Anna Berg", printed_at=utcnow()))
    assert f"Manufacturer {MANUFACTURER}" in printed


def test_the_certificate_page_prints_the_configured_authorisation(demo_trial_world, settings, db):
    from cellbench.app import create_app

    from ..conftest import FAST_HASHER, sign_in

    configured = settings.model_copy(update={"manufacturing_authorisation": "DK-TEST-0002"})
    client = sign_in(create_app(configured, password_hasher=FAST_HASHER, database=db), "qa", "cellbench-demo")
    with db.read() as s:
        number = next(lot.number for lot in s.scalars(select(Lot).where(Lot.state == LotState.released)))
    page = client.get(f"/lots/{number}/coa.pdf")
    assert page.status_code == 200 and "Manufacturing authorisation DK-TEST-0002" in pdf_text(page.content)
