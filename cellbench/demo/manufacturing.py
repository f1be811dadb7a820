"""Demo data for `cellbench serve --demo` and `cellbench demo`.

One named user per role, the shipped specifications approved by QA, released materials,
calibrated equipment, eligible donors, and lots to click through: a complete ASC lot awaiting QC,
one in process, one on hold, a complete saline placebo lot, and (demo.release)
released ASC and saline lots, a lot blocked by an OOS result and one initially certified; kits of
both studies (seed_kits), and both trials at the site over five months (demo.trial). Idempotent:
a second run adds nothing that is already there. Every record is made through the service
functions, so the demo's audit trail and signatures are real and `cellbench verify` passes on it.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlmodel import Session, col

from .. import clock, donors, lots, materials, steps, studies, users
from ..audit import Actor
from ..clock import utcnow
from ..identifiers import isbt128_check_character
from ..models import Equipment, Lot, MaterialLot, Role, Study, User, saved_id
from ..specifications import versions as spec_versions
from ..supply import lists, packaging

DEMO_PASSWORD = "cellbench-demo"  # noqa: S105 - the demo's published password, printed by `cellbench demo`

# username, printed name, roles
def demo_email(username: str) -> str:
    """Where the demo's notifications to this person go (written as files: README, Notifications)."""
    return f"{username}@cellbench-demo.example"


DEMO_USERS = [
    ("operator", "Ole Jensen", [Role.operator]),
    ("operator2", "Maja Skov", [Role.operator]),
    ("verifier", "Vera Holm", [Role.verifier, Role.operator]),
    ("qc", "Kim Larsen", [Role.qc_analyst]),
    ("qa", "Anna Berg", [Role.qa]),
    ("qp", "Peter Qvist", [Role.qp]),
    ("supply", "Sara Munk", [Role.supply_manager]),
    ("pharmacist", "Frida Lund", [Role.pharmacist]),
    ("preparer", "Jonas Bak", [Role.preparer]),
    ("investigator", "Ida Krogh", [Role.investigator]),
    ("monitor", "Mette Dahl", [Role.monitor]),
    ("admin", "Adam Nord", [Role.admin]),
    ("statistician", "Stine Holt", [Role.statistician]),  # receives the lists after the study unblinding
]

# material code, name, supplier — every material the shipped ASC specification asks for
MATERIALS = [
    ("dpbs", "DPBS without Ca/Mg", "Gibco"), ("collagenase_nb6", "Collagenase NB6 GMP grade", "Nordmark"),
    ("cell_strainer", "Cell strainer 100 µm", "Corning"), ("quantum_set", "Quantum expansion set", "Terumo BCT"),
    ("fibronectin", "Human fibronectin", "Corning"), ("alpha_mem", "α-MEM", "Gibco"),
    ("hpl", "Human platelet lysate", "Sexton Biotechnologies"), ("heparin", "Heparin 5,000 IU/mL", "LEO Pharma"),
    ("tryple", "TrypLE Select", "Gibco"), ("pen_strep", "Penicillin-streptomycin", "Gibco"),
    ("transfer_bag", "Transfer bag 600 mL", "Fresenius Kabi"), ("cs10", "CryoStor CS10", "BioLife Solutions"),
    ("cryovial", "Closed-system cryovial, 2 mL", "Aseptic Technologies"),
    ("vial_label", "Cryo-resistant vial label", "Brady"),
]

# asset id, kind, name
EQUIPMENT = [
    ("BAL-01", "balance", "Sartorius balance"), ("BSC-02", "bsc", "Biosafety cabinet, class II"),
    ("INC-01", "shaking_incubator", "Shaking incubator 37 °C"), ("CEN-03", "centrifuge", "Centrifuge Rotanta 460R"),
    ("NC-200", "nucleocounter", "NucleoCounter NC-200"), ("QTM-01", "quantum", "Quantum cell expansion system"),
    ("TW-01", "tube_welder", "Sterile tube welder"), ("CRF-01", "crf", "Controlled-rate freezer"),
    ("LN2-A", "ln2_tank", "Vapour-phase LN2 tank A"), ("CAR-01", "cryo_carrier", "Pre-cooled transfer carrier"),
]


# Vials filled per demo lot, and those pulled for QC and kept as retained samples (as the lot's
# "QC samples and retained samples" step records them); the rest are placed in storage, one signed
# entry each, enough for the demo's kits: 10 per ASC lot, 41 per saline lot that fills kits (a saline
# lot no kit draws from fills fewer: each placed vial is an entry). Both arms are sampled alike.
ASC_VIALS, PLACEBO_VIALS, FEW_VIALS = 14, 46, 14
SAMPLES = {"asc": (2, 2), "placebo": (3, 2)}  # (pulled for QC, retained)


def _ago(now: datetime, hours: float) -> str:
    return (now - timedelta(hours=hours)).isoformat(timespec="minutes")


def asc_values(step_code: str, index: int, now: datetime, lot: Lot, donation_identifier: str) -> dict[str, str]:
    """Plausible values for each step of asc-cs10 v1, recorded over the last hours (times before
    then would be late entries: this demo records them as it goes)."""
    table = {
        "tissue_receipt": {"donation_id_system": "ISBT 128 DIN", "donation_id": donation_identifier,
                           "din_check_character": isbt128_check_character(donation_identifier[:13]),
                           "donor_code": "see donation", "procured_at": _ago(now, 20), "received_at": _ago(now, 18),
                           "transport_temperature": "4.6", "container_intact": "yes", "documents_complete": "yes",
                           "tissue_volume": "180", "tissue_mass": "165"},
        "enzymatic_isolation": {"cleanroom": "B-2.14", "tissue_volume_processed": "180",
                                "collagenase_concentration": "0.2", "digestion_minutes": "45",
                                "digestion_temperature": "37.0", "svf_nucleated_cells": "95", "svf_viability": "88"},
        "expansion_passage": {"passage_number": str(index - 1), "seeded_at": _ago(now, 16 - index),
                              "cells_seeded": "20" if index == 1 else "60", "harvested_at": _ago(now, 15.5 - index),
                              "cells_harvested": "60" if index == 1 else "280", "viability": "93", "confluence": "85"},
        "harvest": {"harvested_at": _ago(now, 12), "harvest_volume": "100", "sterility_sample_taken": "yes",
                    "mycoplasma_sample_taken": "yes"},
        "wash": {"wash_cycles": "2", "centrifugation_force": "400", "centrifugation_minutes": "7"},
        "count": {"viable_concentration": "5.2", "suspension_volume": "50", "viability": "94"},
        "formulation": {"residual_volume": "0.2", "cs10_volume_added": "10.2", "cs10_temperature": "4",
                        "cs10_added_at": _ago(now, 9)},
        "fill": {"vials_filled": str(ASC_VIALS), "fill_volume": "1.0", "fill_completed_at": _ago(now, 8.9)},
        "controlled_rate_freezing": {"profile": "ASC-CS10-01: −1 °C/min to −40 °C, then −10 °C/min to −100 °C",
                                     "freeze_started_at": _ago(now, 8.6), "end_temperature": "-100",
                                     "curve_conforms": "yes"},
        "storage_transfer": {"vial_id": f"{lot.number}-V{index:03d}", "tank": "LN2-A", "rack": "R3",
                             "box": f"B{lot.id:02d}", "position": str(index), "tank_temperature": "-182",
                             "placed_at": _ago(now, 7)},
        "qc_and_retained_samples": {"sterility_sample_registered": "yes", "endotoxin_sample_registered": "yes",
                                    "qc_vials": str(SAMPLES["asc"][0]), "retained_vials": str(SAMPLES["asc"][1]),
                                    "retained_location": "LN2-A/R9/B01"},
    }
    return table[step_code]


def placebo_values(step_code: str, now: datetime, batch: str, lot: Lot | None = None,
                   index: int = 1, vials: int = PLACEBO_VIALS) -> dict[str, str]:
    """Plausible values for each step of saline-placebo v2, the mirror fill: the sodium chloride
    received, then filled, frozen and stored as asc_values does the ASC lot (storage needs the lot)."""
    if step_code == "storage_transfer" and lot is None:
        return {}
    number, box = (lot.number, f"B{lot.id:02d}") if lot is not None else ("", "")
    table = {
        "supplier_receipt": {"supplier": "B. Braun", "product_name": "Sodium chloride 9 mg/mL",
                             "marketing_authorisation": "DK R 10937", "supplier_batch": batch,
                             "supplier_expiry": (now + timedelta(days=900)).date().isoformat(),
                             "received_at": _ago(now, 6), "units_received": "20", "packaging_intact": "yes"},
        "certificate_check": {"certificate_reference": f"CoA {batch}", "batch_matches": "yes", "expiry_matches": "yes",
                              "results_conform": "yes"},
        "fill": {"cleanroom": "B-2.14", "vials_filled": str(vials), "fill_volume": "1.0",
                 "fill_completed_at": _ago(now, 5)},
        "controlled_rate_freezing": {"profile": "ASC-CS10-01: −1 °C/min to −40 °C, then −10 °C/min to −100 °C",
                                     "freeze_started_at": _ago(now, 4.8), "end_temperature": "-100",
                                     "curve_conforms": "yes"},
        "storage_transfer": {"vial_id": f"{number}-V{index:03d}", "tank": "LN2-A", "rack": "R3", "box": box,
                             "position": str(index), "tank_temperature": "-182", "container_intact": "yes",
                             "placed_at": _ago(now, 4)},
        "qc_and_retained_samples": {"qc_vials": str(SAMPLES["placebo"][0]),
                                    "retained_vials": str(SAMPLES["placebo"][1]), "retained_location": "LN2-A/R9/B02"},
    }
    return table.get(step_code, {})


def create_users(session: Session, by: Actor) -> None:
    existing = set(session.scalars(select(col(User.username))))
    for username, name, roles in DEMO_USERS:
        if username not in existing:
            users.create_user(session, by, username, name, DEMO_PASSWORD, [r.value for r in roles],
                              email=demo_email(username))
    session.flush()


def wall_today() -> date:
    """The wall clock's today, not utcnow()'s: the trial story seeds months in the past on a held
    clock, and calibration and material expiry must hold on the real today."""
    return clock.wall_now().date()


def _user(session: Session, username: str) -> User:
    return users.by_username(session, username)


def seed_records(session: Session) -> None:
    seed_basics(session)
    seed_lots(session)


def seed_basics(session: Session) -> None:
    """The shipped specifications approved, released materials and calibrated instruments."""
    qa, operator = _user(session, "qa"), _user(session, "operator")
    qa_actor, op_actor = users.actor(session, qa), users.actor(session, operator)
    for row in spec_versions.sync_from_files(session, qa_actor):
        if row.status == "draft":
            spec_versions.approve(session, qa, DEMO_PASSWORD, saved_id(row))
    today = wall_today()
    for code, name, supplier in MATERIALS:
        if session.scalars(select(col(MaterialLot.id)).where(col(MaterialLot.material_code) == code)).first() is None:
            lot = materials.receive_material(session, op_actor, material_code=code, name=name, supplier=supplier,
                                             supplier_lot=f"{code[:3].upper()}-2611",
                                             expiry=today + timedelta(days=300))
            materials.release_material(session, qa_actor, lot, "certificate of analysis reviewed")
    for asset, kind, name in EQUIPMENT:
        if session.scalars(select(col(Equipment.id)).where(col(Equipment.asset_id) == asset)).first() is None:
            materials.register_equipment(session, op_actor, asset_id=asset, equipment_code=kind, name=name,
                                         calibration_due=today + timedelta(days=120))


def seed_lots(session: Session) -> None:
    """The lots to click through: complete awaiting QC, in process, on hold, and a saline lot."""
    qa, operator = _user(session, "qa"), _user(session, "operator")
    donations = [eligible_donation(session, users.actor(session, operator), qa, n) for n in (1, 2, 3)]
    asc_lot(session, donations[0], until=None)
    asc_lot(session, donations[1], until="harvest")
    held = asc_lot(session, donations[2], until="wash")
    lots.move(session, operator, held, "hold", "centrifuge CEN-03 alarm during wash; QA to assess")
    placebo_lot(session, "NACL-26A01", FEW_VIALS)  # no kit draws from it
    session.flush()


def eligible_donation(session: Session, actor: Actor, qa: User, n: int):
    donated = utcnow().date() - timedelta(days=3)
    donor = donors.register_donor(session, actor, f"D-{1000 + n}", donated - timedelta(days=14), f"CONSENT-{1000 + n}")
    din = f"D1234{donated:%y}{100 + n:06d}"
    donation = donors.register_donation(session, actor, donor, din, isbt128_check_character(din), donated)
    donors.record_tests(session, actor, donation, [
        donors.TestEntry(test, "negative", donated.isoformat(), "Rigshospitalet Blood Bank virology")
        for test in donors.REQUIRED_PANEL])
    donors.decide_eligibility(session, qa, DEMO_PASSWORD, donation, "eligible")
    return donation


def _bench(session: Session) -> dict:
    """What every step entry of the demo looks up again and again, looked up once per session:
    the demo operator and verifier (their roles never change in the demo) and the material lot and
    instrument recorded for each kind (the first of each, which later ones do not change). They were
    2,000 of the build's 35,500 statements (issue 18: the demo build)."""
    return session.info.setdefault("cellbench.demo.bench", {})


def _bench_user(session: Session, username: str) -> tuple[User, Actor]:
    known = _bench(session)
    if ("user", username) not in known:
        user = _user(session, username)
        known["user", username] = (user, users.actor(session, user))
    return known["user", username]


def _first_supplier_lot(session: Session, material_code: str) -> str | None:
    known = _bench(session)
    if ("material", material_code) not in known:
        known["material", material_code] = session.scalars(
            select(col(MaterialLot.supplier_lot)).where(col(MaterialLot.material_code) == material_code)).first()
    return known["material", material_code]


def _first_asset(session: Session, equipment_code: str) -> str:
    known = _bench(session)
    if ("asset", equipment_code) not in known:
        asset = session.scalars(select(col(Equipment.asset_id))
                                .where(col(Equipment.equipment_code) == equipment_code)).first()
        if asset is None:  # seed_basics registers one of each kind; this would be a broken demo
            raise RuntimeError(f"demo: no instrument of kind {equipment_code}")
        known["asset", equipment_code] = asset
    return known["asset", equipment_code]


def run_step(session: Session, lot: Lot, step, values: dict[str, str],
             comments: dict[str, str] | None = None) -> None:
    """One step entry as the demo operator records it: values, every material and instrument the
    step names (the first released lot / registered asset of each), performed, and verified."""
    operator, actor = _bench_user(session, "operator")
    entry = steps.start_entry(session, actor, lot, step.code, None)
    steps.record_values(session, actor, lot, step.code, entry.repeat_index,
                        {k: steps.ValueInput(v, (comments or {}).get(k, "")) for k, v in values.items()}, None)
    for material in step.materials:
        steps.record_material(session, actor, lot, step.code, entry.repeat_index,
                              f"{material.code}:{_first_supplier_lot(session, material.code)}", None)
    for kind in step.equipment:
        steps.record_equipment(session, actor, lot, step.code, entry.repeat_index, _first_asset(session, kind.code),
                               None)
    steps.perform(session, operator, DEMO_PASSWORD, lot, step.code, entry.repeat_index, None)
    if step.verify:
        steps.verify(session, _bench_user(session, "verifier")[0], DEMO_PASSWORD, lot, step.code,
                     entry.repeat_index, None)


def asc_lot(session: Session, donation, until: str | None) -> Lot:
    """An ASC lot recorded step by step, stopping before the step named `until` (None: complete)."""
    lot = lots.start_lot(session, users.actor(session, _user(session, "operator")), "asc-cs10", donation.identifier)
    spec = spec_versions.parsed(lots.spec_of(session, lot))
    now = utcnow()
    for step in spec.steps:
        if step.code == until:
            break
        if step.code == "storage_transfer":
            store_every_vial(session, lot, step, "asc",
                             lambda index: asc_values("storage_transfer", index, now, lot, donation.identifier))
            continue
        for index in range(1, {"expansion_passage": 2}.get(step.code, 1) + 1):
            run_step(session, lot, step, asc_values(step.code, index, now, lot, donation.identifier))
    return lot


def store_every_vial(session: Session, lot: Lot, step, kind: str, values: Callable[[int], dict[str, str]]) -> None:
    """The storage step as the bench does it: the QC vials and retained samples scanned out first
    (the first vials filled), then one signed entry per vial left, each at its position, until every
    vial of the lot has its fate."""
    actor = _bench_user(session, "operator")[1]
    qc_count, retained = SAMPLES[kind]
    filled = lots.without_fate(session, lot)
    for code in filled[:qc_count]:
        lots.record_fate(session, actor, lot, code, "qc")
    for code in filled[qc_count:qc_count + retained]:
        lots.record_fate(session, actor, lot, code, "retained", "LN2-A/R9, retained samples box")
    for index, code in enumerate(filled[qc_count + retained:], start=1):
        run_step(session, lot, step, values(index) | {"vial_id": code})


def placebo_lot(session: Session, batch: str, vials: int = PLACEBO_VIALS) -> Lot:
    """A placebo lot under the effective saline specification (v2: the mirror fill), every step
    recorded, performed and verified as for an ASC lot."""
    lot = lots.start_lot(session, users.actor(session, _user(session, "operator")), "saline-placebo")
    spec = spec_versions.parsed(lots.spec_of(session, lot))
    now = utcnow()
    for step in spec.steps:
        if step.code == "storage_transfer":
            store_every_vial(session, lot, step, "placebo",
                             lambda index: placebo_values("storage_transfer", now, batch, lot, index))
            continue
        run_step(session, lot, step, placebo_values(step.code, now, batch, lot, vials=vials))
    return lot


def default_values(step) -> dict[str, str]:
    """Inspection steps of the placebo: every check passes, counts at the low end of their limits."""
    out = {}
    for p in step.parameters:
        if p.computed:
            continue
        if p.type == "boolean":
            out[p.code] = "yes" if p.expected is not False else "no"
        elif p.type == "number":
            out[p.code] = f"{p.min if p.min is not None else 0:g}"
        elif p.type == "choice":
            out[p.code] = p.choices[0]
        elif p.type == "datetime":
            out[p.code] = _ago(utcnow(), 5)
        elif p.type == "date":
            out[p.code] = (utcnow() + timedelta(days=540)).date().isoformat()
        else:
            out[p.code] = "conforms"
    return out


def credentials_text(people: list[tuple[str, str, list[Role]]] | None = None) -> str:
    people = DEMO_USERS if people is None else people
    width, name_width = max(len(u) for u, _, _ in people), max(len(n) for _, n, _ in people)
    lines = [f"Demo users (password for all: {DEMO_PASSWORD})"]
    for username, name, roles in people:
        lines.append(f"  {username.ljust(width)}  {name.ljust(name_width)}  {', '.join(r.value for r in roles)}")
    return "\n".join(lines)


def seed_studies(session: Session) -> dict[str, Study]:
    """Both studies loaded, a sealed randomisation list and kit list each."""
    supply = _user(session, "supply")
    actor = users.actor(session, supply)
    loaded = {study.code: study for study in studies.sync_from_files(session, actor)}
    for study, participants, kit_count in ((loaded["NCT07290946"], 100, 48), (loaded["NCT06805448"], 60, 24)):
        for kind, size in (("randomisation", participants), ("kit", kit_count)):
            row = lists.generate(session, actor, study, kind, size, seed=f"demo-{study.code}-{kind}")
            lists.seal(session, supply, actor, row, DEMO_PASSWORD)
    return loaded


def seed_kits(session: Session, loaded: dict[str, Study] | None = None) -> dict[str, list[str]]:
    """Blinded supply demo (issue 5), through the service functions after the release demo: the
    studies (`seed_studies`, unless `loaded` already), kits of NCT07290946 packaged from the
    released lots and released, kits of NCT06805448 packaged from the initially certified lot and
    waiting for its release. Returns the packaging run numbers by study."""
    loaded = loaded or seed_studies(session)
    actor = users.actor(session, _user(session, "supply"))
    by_kind: dict[str, list[str]] = {"asc": [], "placebo": []}
    for lot, _free in packaging.fillable_lots(session, "asc") + packaging.fillable_lots(session, "placebo"):
        by_kind["asc" if lot.number.startswith("ASC") else "placebo"].append(lot.number)
    state = dict(session.execute(select(col(Lot.number), col(Lot.state))
                                 .where(col(Lot.number).in_(by_kind["asc"]))).all())
    released = [n for n in by_kind["asc"] if state[n] == "released"]
    waiting = [n for n in by_kind["asc"] if state[n] == "initial_certified"]
    placebo = by_kind["placebo"]
    runs = {"NCT07290946": [packaging.package(session, actor, loaded["NCT07290946"], kit_count=16, asc_lots=released,
                                              placebo_lots=placebo[-1:]).number]}
    runs["NCT06805448"] = [packaging.package(session, actor, loaded["NCT06805448"], kit_count=8, asc_lots=waiting,
                                             placebo_lots=placebo[-1:]).number]
    return runs
