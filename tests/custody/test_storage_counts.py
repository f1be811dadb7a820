"""The running counts of kits per storage location and state (storage_counts.py), which the storage
page reads, equal a recount from the kit rows after every kind of move: put away into a tank, into a
box at receipt and by a move between positions, receipt, dispatch, dispensing, return, quarantine
and its release, damage, loss and destruction. They hold no arm."""
from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from sqlalchemy import func, select, update

from cellbench import custody, integrity, kit_counts, kits, release, storage_counts, users
from cellbench.models import Kit, KitState, Site, StorageCount, StorageLocation

from ..accountability.test_accountability import _authorise, _count, _destroy, _rows
from ..conftest import PASSWORD, actor_of
from ..pharmacy.test_pharmacy import randomised, sealed_randomisation_list, visit_url
from ..supply.test_quarantine import _lot
from ..supply.test_quarantine import world as quarantine_world  # noqa: F401 - a fixture
from ..test_running_counts import RandomMoves
from ..trialworld import to_site
from .test_custody import SITE, arrives, both_arms, dispatched, kit_row, payload
from .test_positions import BOX, tank_and_box

HELD = custody.STORABLE_AT_BENCH | custody.STORABLE_AT_SITE


def _held_from_rows(s) -> dict[int, int]:
    """What the storage page counted before the running counts: the kits in each location now."""
    query = (select(Kit.storage_location_id, func.count())
             .where(Kit.storage_location_id.is_not(None), Kit.state.in_(sorted(st.value for st in HELD)))
             .group_by(Kit.storage_location_id))
    return dict(s.execute(query).all())


def agree(db) -> dict[str, int]:
    """The counts agree with the kit rows; returns the kits in each location, by location code."""
    with db.read() as s:
        assert storage_counts.recount(s) == [], "the running storage counts are the kit rows' counts"
        assert custody.stored_counts(s) == _held_from_rows(s), "and the storage page reads the rows' figures"
        codes = dict(s.execute(select(StorageLocation.id, StorageLocation.code)).all())
        return {codes[location]: n for location, n in custody.stored_counts(s).items()}


def add_location(db, username: str, site: str, code: str) -> None:
    with db.write() as s:
        custody.add_location(s, actor_of(db, username), site_code=site, code=code, name=f"Tank {code}", kind="tank")


def store(db, username: str, numbers: list[str], code: str) -> None:
    with db.write() as s:
        for number in numbers:
            custody.store(s, actor_of(db, username), kits.by_number(s, number), code)


def test_kits_put_away_shipped_received_into_a_box_stored_moved_damaged_and_lost_keep_the_counts(
        db, kit_world, as_, monkeypatch):
    tank_and_box(as_)  # the site's tank RH-ENT-T1 with a box
    add_location(db, "sara", "", "CB-T1")
    add_location(db, "frida", SITE, "RH-ENT-F1")
    kits_ = both_arms(kit_world)
    store(db, "sara", kits_, "CB-T1")
    assert agree(db) == {"CB-T1": 4}, "put away at the cell bench"
    number = dispatched(as_, kits_)
    assert agree(db) == {}, "out of the tank, into the dry shipper"
    arrives(monkeypatch, db, number)
    frida = as_("frida")
    for kit in kits_[:2]:  # two scanned into the box as they are received, two onto the pharmacy's bench
        scanned = frida.post(f"/api/v1/shipments/{number}/receipt-scans", json={"code": payload(kit), "box": BOX})
        assert scanned.status_code == 200, scanned.text
    for kit in kits_[2:]:
        assert frida.post(f"/api/v1/shipments/{number}/receipt-scans", json={"code": payload(kit)}).status_code == 200
    agree(db)
    done = frida.post(f"/api/v1/shipments/{number}/receipt",
                      json={"seal_intact": True, "logger_source": "manual", "logger_min": -190, "logger_max": -170})
    assert done.status_code == 200, done.text
    assert agree(db) == {"RH-ENT-T1": 2}, "the boxed kits are in the tank once received"
    assert frida.submit("/storage/store", {"code": payload(kits_[2]), "location": "RH-ENT-F1"}).status_code == 303
    assert agree(db) == {"RH-ENT-T1": 2, "RH-ENT-F1": 1}
    moved = frida.submit("/storage/moves", {"code": payload(kits_[2]), "target": BOX, "position": ""})
    assert moved.status_code == 303, moved.text
    assert agree(db) == {"RH-ENT-T1": 3}, "moved from the freezer into a box of the tank"
    assert frida.post(f"/api/v1/kits/{kits_[0]}/damage", json={"reason": "outer box crushed"}).status_code == 200
    assert agree(db) == {"RH-ENT-T1": 3}, "a damaged kit stays where it is until destroyed"
    with db.read() as s:
        tank = s.scalars(select(StorageLocation.id).where(StorageLocation.code == "RH-ENT-T1")).one()
        damaged = s.scalars(select(StorageCount.kits).where(StorageCount.storage_location_id == tank,
                                                            StorageCount.state == KitState.damaged.value)).one()
    assert damaged == 1
    with db.write() as s:
        kits.move(s, actor_of(db, "frida"), kits.by_number(s, kits_[1]), "lose", reason="not found in the tank")
    assert agree(db) == {"RH-ENT-T1": 2}


def test_dispensing_a_stored_kit_its_return_and_its_destruction_keep_the_counts(db, kit_world, as_):
    with db.read() as s:
        released = list(s.scalars(select(Kit.number).where(Kit.state == KitState.released)))
    to_site(db, released)
    add_location(db, "frida", SITE, "RH-ENT-F1")
    store(db, "frida", released, "RH-ENT-F1")
    assert agree(db) == {"RH-ENT-F1": len(released)}
    sealed_randomisation_list(db)
    randomised(as_, "SCR-002")
    frida = as_("frida")
    number = frida.post(f"{visit_url('SCR-002')}/assign").json()["kit_number"]
    assert agree(db) == {"RH-ENT-F1": len(released)}, "an allocated kit is still in the freezer"
    assert frida.post(f"{visit_url('SCR-002')}/dispense", json={"code": payload(number)}).status_code == 200
    assert agree(db) == {"RH-ENT-F1": len(released) - 1}, "a dispensed kit has left the freezer"
    returned = frida.post("/api/v1/returns", json={"code": payload(number), "condition": "intact"})
    assert returned.status_code == 200, returned.text
    assert kit_row(db, number).storage_location_id is None, "a returned kit is on the pharmacy's bench"
    store(db, "frida", [number], "RH-ENT-F1")
    assert agree(db) == {"RH-ENT-F1": len(released)}
    row = _rows(as_("mette"))[SITE]
    assert _count(frida, row["counts"]["on_hand"], lot=row["blinded_lot"]).json()["balanced"]
    authorised = _authorise(as_("sara"), [number])
    assert authorised.status_code == 201, authorised.text
    assert _destroy(frida, authorised.json()["number"]).status_code == 200
    assert kit_row(db, number).state == KitState.destroyed
    assert agree(db) == {"RH-ENT-F1": len(released) - 1}, "a destroyed kit has left the freezer"


def test_a_stored_lot_quarantined_and_released_keeps_the_counts(db, quarantine_world):  # noqa: F811
    w = quarantine_world
    add_location(db, "sara", "", "CB-T1")
    with db.read() as s:
        at_bench = list(s.scalars(select(Kit.number).where(Kit.state == KitState.released, Kit.site_id.is_(None))))
    store(db, "sara", at_bench, "CB-T1")
    assert agree(db) == {"CB-T1": len(at_bench)}
    with db.write() as s:
        release.move_lot(s, users.by_username(s, "anna"), _lot(s, w.asc_lot), "quarantine", "temperature alarm")
    assert agree(db) == {"CB-T1": len(at_bench)}, "held kits stay in their tank"
    with db.read() as s:
        held = s.scalar(select(func.sum(StorageCount.kits)).where(StorageCount.state == KitState.quarantined.value))
    assert held, "and are counted there as quarantined"
    with db.write() as s:
        release.move_lot(s, users.by_username(s, "anna"), _lot(s, w.asc_lot), "release_from_quarantine",
                         "alarm was a sensor fault", password=PASSWORD)
    agree(db)
    with db.read() as s:
        assert not s.scalar(select(func.sum(StorageCount.kits))
                            .where(StorageCount.state == KitState.quarantined.value))


def test_any_sequence_of_moves_of_stored_kits_keeps_the_counts(db, kit_world):
    add_location(db, "sara", "", "CB-T1")
    store(db, "sara", kit_world.active + kit_world.placebo, "CB-T1")
    with db.read() as s:
        RandomMoves.numbers = sorted(kit_world.active + kit_world.placebo)
        RandomMoves.site_id = s.scalars(select(Site.id).where(Site.code == SITE)).one()
    RandomMoves.db = db  # its invariant checks kit_counts.recount, which checks the storage counts too
    run_state_machine_as_test(RandomMoves, settings=settings(
        max_examples=5, stateful_step_count=20, deadline=None, suppress_health_check=list(HealthCheck)))
    agree(db)


def test_the_counts_name_no_arm_and_verify_names_one_edited_behind_cellbenchs_back(db, kit_world):
    assert set(StorageCount.model_fields) == {"id", "storage_location_id", "state", "kits"}
    add_location(db, "sara", "", "CB-T1")
    store(db, "sara", kit_world.active[:1] + kit_world.placebo[:1], "CB-T1")
    assert integrity.verify(db, workers=1).ok
    with db.write() as s:
        s.execute(update(StorageCount).values(kits=StorageCount.kits + 1))
    with db.read() as s:
        assert kit_counts.recount(s) == ["storage count of CB-T1, released: kept 3, the kit rows say 2"]
    assert "storage count of CB-T1, released: kept 3, the kit rows say 2" in integrity.verify(db, workers=1).problems
    with db.write() as s:
        kit_counts.refill(s)  # the builders' refill rebuilds the storage counts too
    agree(db)


def migrated_from_0031(db) -> None:
    """The database taken back to what it was before migration 0032, then brought to the head again."""
    from alembic import command

    from cellbench.db import alembic_config, migrate

    cfg = alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0031_release")
    migrate(db)


def test_the_migration_counts_the_stored_kits_of_an_existing_database(db, kit_world):
    add_location(db, "sara", "", "CB-T1")
    store(db, "sara", kit_world.active[:2], "CB-T1")
    with db.read() as s:
        before = storage_counts.stored(s)
    assert sum(before.values()) == 2
    migrated_from_0031(db)
    with db.read() as s:
        assert storage_counts.stored(s) == before
    agree(db)
