"""One success per race, everywhere: every signed move of every state machine, and every signing
use case outside the machines, fired N times at once, each call in its own transaction, gives one
success; the others are refused cleanly (a conflict, or the state refusal), and there is one
signature and one "signed" event.

The races are read from the code, not listed by hand: the machines register themselves
(statemachine.machines()) and the signable entity types are those signatures knows how to read
(signatures.signable_types()). A signed move or a signable type without a driver here fails
test_every_signed_move_and_every_signable_type_has_a_race, so a new one cannot be forgotten.

On SQLite the writers are serialised by the database layer, and the test shows that the late
callers get clean refusals. On PostgreSQL (CELLBENCH_TEST_DATABASE_URL, as CI runs it) the
transactions really overlap, and the test shows the services claim their rows before they check.
"""
from __future__ import annotations

import importlib
import pkgutil
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session, col

import cellbench
from cellbench import (
    accountability,
    audit_review,
    clock,
    custody,
    deviations,
    donors,
    integrity,
    kits,
    lots,
    qc,
    release,
    sealed,
    signatures,
    steps,
    studies,
    study_data,
    unblinding,
    users,
)
from cellbench.accountability import destruction as destructions
from cellbench.accountability import verification
from cellbench.demo import manufacturing
from cellbench.errors import Conflict, InvalidInput
from cellbench.identifiers import isbt128_check_character
from cellbench.models import (
    AuditEvent,
    BlindedLot,
    Deviation,
    Equipment,
    Kit,
    KitQuarantine,
    Lot,
    MaterialLot,
    Meaning,
    Participant,
    QcResult,
    SealedList,
    Shipment,
    Signature,
    Site,
    SpecVersion,
)
from cellbench.specifications import specs_root
from cellbench.specifications import versions as spec_versions
from cellbench.statemachine import machines
from cellbench.supply import lists as supply_lists
from cellbench.supply import quarantine

from .release.test_release import PW, enter, enter_all, review

N = 8  # callers at once
STUDY, OTHER_STUDY = "NCT07290946", "NCT06805448"
SITE = "RH-ENT"


def _import_everything() -> None:
    """Every module of cellbench, so that every machine and every signable type is registered."""
    for name in integrity.SIGNING_MODULES:
        importlib.import_module(f"cellbench.{name}")
    for module in pkgutil.walk_packages(cellbench.__path__, "cellbench."):
        if ".migrations" not in module.name:
            importlib.import_module(module.name)


_import_everything()


def signed_moves() -> set[str]:
    """Every signed move of every machine, as "subject/action"."""
    return {f"{subject}/{action}" for subject, machine in machines().items()
            for action, move in machine.table.items() if move.signature is not None}


# --- the drivers ----------------------------------------------------------------------------------


@dataclass
class Race:
    """One request, as each caller makes it, inside its own db.write() session."""

    attempt: Callable[[Session], object]
    each_its_own: bool = False  # an act every caller may make (a count, an emergency unblinding)
    then: Callable[[Session], None] | None = None  # what else must hold afterwards


Driver = Callable[..., Race]
DRIVERS: dict[str, Driver] = {}  # by driver name
COVERS: dict[str, set[str]] = {}  # driver name -> the signed moves and signable types it races


def race(*covers: str) -> Callable[[Driver], Driver]:
    def register(fn: Driver) -> Driver:
        DRIVERS[fn.__name__] = fn
        COVERS[fn.__name__] = set(covers)
        return fn
    return register


def user(s: Session, name: str):
    return users.by_username(s, name)


def actor(s: Session, name: str):
    return users.actor(s, user(s, name))


def lot_in(db, state: str, kind: str | None = None) -> str:
    with db.read() as s:
        query = select(col(Lot.number)).where(col(Lot.state) == state).order_by(col(Lot.number))
        if kind:
            query = query.where(col(Lot.number).startswith(kind))
        number = s.scalars(query).first()
    assert number is not None, f"the demo has a lot {state}"
    return number


def move(db, number: str, name: str, who: str, reason: str | None = None) -> None:
    with db.write() as s:
        release.move_lot(s, user(s, who), lots.by_number(s, number), name, reason, password=PW)


def pending_row(db, number: str, skip: str = "sterility"):
    return [(skip, "qc", (clock.today() + timedelta(days=14)).isoformat())]


def certified_initially(db) -> str:
    """A placebo lot in QC, every result in but sterility, both reviews signed: certified initially."""
    number = lot_in(db, "qc_pending", "PLB")
    enter_all(db, number, skip=("sterility",))
    review(db, number)
    with db.write() as s:
        release.certify(s, user(s, "qp"), PW, lots.by_number(s, number), final=False, pending=pending_row(db, number))
    return number


def lot_move(name: str, who: str, reason: str | None = None) -> Callable[[str], Race]:
    def attempt_on(number: str) -> Race:
        return Race(lambda s: release.move_lot(s, user(s, who), lots.by_number(s, number), name, reason, password=PW))
    return attempt_on


@race("lot/abort", "lot_decision")
def abort_a_lot(db) -> Race:
    return lot_move("abort", "qa", "contaminated in the isolator")(lot_in(db, "in_process"))


@race("lot/reject")
def reject_a_lot(db) -> Race:
    return lot_move("reject", "qp", "container closure failure")(lot_in(db, "qc_pending", "PLB"))


@race("lot/certify_initial")
def certify_a_lot_initially(db) -> Race:
    number = lot_in(db, "qc_pending", "PLB")
    enter_all(db, number, skip=("sterility",))
    review(db, number)
    return Race(lambda s: release.certify(s, user(s, "qp"), PW, lots.by_number(s, number), final=False,
                                          pending=pending_row(db, number)))


@race("lot/certify_final")
def certify_a_lot_finally(db) -> Race:
    number = lot_in(db, "qc_pending", "PLB")
    enter_all(db, number)
    review(db, number)
    return Race(lambda s: release.certify(s, user(s, "qp"), PW, lots.by_number(s, number), final=True))


@race("lot/release")
def release_a_lot(db) -> Race:
    number = lot_in(db, "qc_pending", "PLB")
    enter_all(db, number)
    review(db, number)
    with db.write() as s:
        release.certify(s, user(s, "qp"), PW, lots.by_number(s, number), final=True)
    return Race(lambda s: release.sponsor_release(s, user(s, "supply"), PW, lots.by_number(s, number)))


@race("lot/release_for_shipment")
def release_a_lot_for_shipment(db) -> Race:
    number = certified_initially(db)
    return Race(lambda s: release.release_for_shipment(s, user(s, "supply"), PW, lots.by_number(s, number)))


@race("lot/certify_final_shipped")
def certify_a_shipped_lot_finally(db) -> Race:
    number = certified_initially(db)
    with db.write() as s:
        release.release_for_shipment(s, user(s, "supply"), PW, lots.by_number(s, number))
    enter_all(db, number)
    review(db, number)
    return Race(lambda s: release.certify(s, user(s, "qp"), PW, lots.by_number(s, number), final=True))


@race("lot/release_from_quarantine")
def release_a_lot_from_quarantine(db) -> Race:
    number = lot_in(db, "released", "ASC")
    move(db, number, "quarantine", "qa", "temperature excursion in storage")
    return lot_move("release_from_quarantine", "qa", "excursion assessed: no impact")(number)


@race("lot/recall")
def recall_a_lot(db) -> Race:
    return lot_move("recall", "qa", "post-release sterility failure")(lot_in(db, "released", "ASC"))


@race("lot_review")
def review_a_batch_record(db) -> Race:
    number = lot_in(db, "qc_pending", "PLB")
    return Race(lambda s: release.sign_review(s, user(s, "qa"), PW, lots.by_number(s, number), "batch_record"))


@race("lot_review")
def review_a_lots_audit_trail(db) -> Race:
    number = lot_in(db, "qc_pending", "PLB")
    return Race(lambda s: release.sign_review(s, user(s, "qa"), PW, lots.by_number(s, number), "audit_trail"))


@race("deviation/close", "deviation")
def close_a_deviation(db) -> Race:
    with db.write() as s:
        deviation = s.scalars(select(Deviation).where(col(Deviation.state) == "open")
                              .order_by(col(Deviation.number))).first()
        assert deviation is not None, "the demo has an open deviation"
        deviations.assess_deviation(s, actor(s, "qa"), deviation, impact_assessment="No impact on the product.")
        number = deviation.number
    return Race(lambda s: deviations.close_deviation(s, user(s, "qa"), PW, deviations.by_number(s, number)))


def placebo_lot_at(db, verified_step: bool) -> tuple[str, str, int]:
    """A new placebo lot with its first step (or first step that needs a second person) recorded,
    not yet signed, the steps before it signed as the demo does."""
    with db.write() as s:
        lot = lots.start_lot(s, actor(s, "operator"), "saline-placebo")
        spec = spec_versions.parsed(lots.spec_of(s, lot))
        now = clock.utcnow()
        for step in spec.steps:
            values = manufacturing.placebo_values(step.code, now, "NACL-RACE", lot)
            if step.verify or not verified_step:
                break
            manufacturing.run_step(s, lot, step, values)
        operator = actor(s, "operator")
        entry = steps.start_entry(s, operator, lot, step.code, None)
        steps.record_values(s, operator, lot, step.code, entry.repeat_index,
                            {k: steps.ValueInput(v) for k, v in values.items()}, None)
        for material in step.materials:
            supplier_lot = s.scalars(select(col(MaterialLot.supplier_lot))
                                     .where(col(MaterialLot.material_code) == material.code)).first()
            steps.record_material(s, operator, lot, step.code, entry.repeat_index, f"{material.code}:{supplier_lot}",
                                  None)
        for kind in step.equipment:
            asset = s.scalars(select(col(Equipment.asset_id))
                              .where(col(Equipment.equipment_code) == kind.code)).first()
            steps.record_equipment(s, operator, lot, step.code, entry.repeat_index, asset, None)
        return lot.number, step.code, entry.repeat_index


@race("step entry/perform", "step_entry")
def perform_a_step(db) -> Race:
    number, code, index = placebo_lot_at(db, verified_step=False)
    return Race(lambda s: steps.perform(s, user(s, "operator"), PW, lots.by_number(s, number), code, index, None))


@race("step entry/verify")
def verify_a_step(db) -> Race:
    number, code, index = placebo_lot_at(db, verified_step=True)
    with db.write() as s:
        steps.perform(s, user(s, "operator"), PW, lots.by_number(s, number), code, index, None)
    return Race(lambda s: steps.verify(s, user(s, "verifier"), PW, lots.by_number(s, number), code, index, None))


def new_results(db, count: int = 1) -> tuple[str, list[int]]:
    """Results the QC analyst enters on a lot in QC, for tests that have none yet; not reviewed."""
    number = lot_in(db, "qc_pending", "PLB")
    with db.read() as s:
        codes = [t.test.code for t in qc.test_status(s, lots.by_number(s, number))
                 if t.state == "missing" and release.counts_for_release(t.test)][:count]
    return number, [enter(db, number, code, review=False) for code in codes]


@race("qc_result")
def review_a_qc_result(db) -> Race:
    _, (result_id,) = new_results(db)
    return Race(lambda s: qc.review_result(s, user(s, "qa"), PW, s.get(QcResult, result_id)))


@race("qc_result_invalidation")
def invalidate_a_qc_result(db) -> Race:
    _, (result_id,) = new_results(db)
    return Race(lambda s: qc.invalidate_result(s, user(s, "qa"), PW, s.get(QcResult, result_id),
                                               "sample mislabelled"))


@race("qc_result_set")
def review_a_set_of_qc_results(db) -> Race:
    number, ids = new_results(db, 2)
    return Race(lambda s: qc.review_results(s, user(s, "qa"), PW, lots.by_number(s, number), ids))


@race("spec_version")
def approve_a_specification(db) -> Race:
    with tempfile.TemporaryDirectory() as folder, db.write() as s:
        root = Path(folder) / "specs"
        shutil.copytree(specs_root(), root)
        text = (root / "saline-placebo" / "v2.toml").read_text()
        (root / "saline-placebo" / "v3.toml").write_text(text.replace("version = 2", "version = 3", 1))
        spec_versions.sync_from_files(s, actor(s, "qa"), root)
        draft = s.scalars(select(SpecVersion).where(col(SpecVersion.product_code) == "saline-placebo",
                                                    col(SpecVersion.version) == 3)).one()
        spec_id = draft.id
    return Race(lambda s: spec_versions.approve(s, user(s, "qa"), PW, spec_id))


@race("audit_review")
def review_the_audit_trail(db) -> Race:
    with db.read() as s:
        _, end = audit_review.pending_range(s)
    return Race(lambda s: audit_review.sign_review(s, user(s, "qa"), PW, end, None))


@race("donation")
def decide_a_donors_eligibility(db) -> Race:
    with db.write() as s:
        by = actor(s, "operator")
        donated = clock.utcnow().date() - timedelta(days=3)
        donor = donors.register_donor(s, by, "D-7001", donated - timedelta(days=14), "CONSENT-7001")
        din = f"D1234{donated:%y}{700001:06d}"
        donation = donors.register_donation(s, by, donor, din, isbt128_check_character(din), donated)
        donors.record_tests(s, by, donation, [donors.TestEntry(t, "negative", donated.isoformat(), "virology")
                                              for t in donors.REQUIRED_PANEL])
        identifier = donation.identifier
    return Race(lambda s: donors.decide_eligibility(s, user(s, "qa"), PW, donors.donation_by_identifier(s, identifier),
                                                    "eligible"))


@race("list/seal", "sealed_list")
def seal_a_list(db) -> Race:
    with db.write() as s:
        list_id = supply_lists.generate(s, actor(s, "supply"), studies.by_code(s, STUDY), "randomisation", 8,
                                        seed="race", block_sizes="2").id
    return Race(lambda s: sealed.seal_list(s, user(s, "supply"), actor(s, "supply"), s.get(SealedList, list_id), PW))


@race("study database/lock", "study_lock")
def lock_a_studys_database(db) -> Race:
    return Race(lambda s: study_data.lock(s, user(s, "supply"), studies.by_code(s, OTHER_STUDY), PW))


@race("study database/unblind", "study_unblinding")
def unblind_a_study(db) -> Race:
    with db.write() as s:
        study_data.lock(s, user(s, "supply"), studies.by_code(s, OTHER_STUDY), PW)
    return Race(lambda s: study_data.unblind(s, user(s, "supply"), studies.by_code(s, OTHER_STUDY), PW,
                                             "statistical analysis plan, final analysis"))


def held_shipment(db) -> str:
    with db.read() as s:
        number = s.scalars(select(col(Shipment.number)).where(col(Shipment.state) == "quarantined")).first()
    assert number is not None, "the demo has a shipment held on receipt"
    return number


def assess_held_shipment(db, decision: str) -> Race:
    number = held_shipment(db)
    return Race(lambda s: custody.assess(s, user(s, "qa"), custody.by_number(s, number), decision,
                                         "logger read and assessed", PW))


@race("shipment/accept", "shipment")
def accept_a_held_shipment(db) -> Race:
    return assess_held_shipment(db, "accept")


@race("shipment/reject")
def reject_a_held_shipment(db) -> Race:
    return assess_held_shipment(db, "reject")


def kit_quarantine(db) -> int:
    number = lot_in(db, "released", "ASC")
    with db.write() as s:
        opened = quarantine.open_manual(s, actor(s, "qa"), lots.by_number(s, number), None, "visual check of the lot")
        return opened[0].id


@race("kit quarantine/lift", "kit_quarantine")
def lift_a_kit_quarantine(db) -> Race:
    q_id = kit_quarantine(db)
    return Race(lambda s: quarantine.lift(s, user(s, "qa"), s.get(KitQuarantine, q_id), "nothing found", PW))


@race("kit quarantine/withdraw")
def withdraw_a_kit_quarantine(db) -> Race:
    q_id = kit_quarantine(db)
    return Race(lambda s: quarantine.withdraw(s, user(s, "qa"), s.get(KitQuarantine, q_id), "vials cracked", PW))


def bench_lot_counted(db) -> tuple[str, list[str]]:
    """Two released kits at the cell bench damaged, and their blinded lot counted there, balanced."""
    with db.write() as s:
        found = s.scalars(select(Kit).where(col(Kit.site_id).is_(None), col(Kit.state) == "released",
                                            col(Kit.study_id) == studies.by_code(s, STUDY).id)
                          .order_by(col(Kit.blinded_lot_id), col(Kit.number))).all()
        blinded_id = found[0].blinded_lot_id
        damaged = [k for k in found if k.blinded_lot_id == blinded_id][:2]
        for kit in damaged:
            kits.move(s, actor(s, "supply"), kit, "damage", reason="dropped at the bench")
        numbers = [k.number for k in damaged]
        code = s.get(BlindedLot, blinded_id).code
    with db.write() as s:
        study, blinded = studies.by_code(s, STUDY), s.scalars(select(BlindedLot).where(BlindedLot.code == code)).one()
        on_hand = accountability.row_of(s, study, None, blinded).counts["on_hand"]
        accountability.reconcile(s, user(s, "supply"), PW, study, None, blinded, on_hand, None)
    return code, numbers


@race("destruction_authorisation")
def authorise_a_destruction(db) -> Race:
    _, numbers = bench_lot_counted(db)
    return Race(lambda s: destructions.authorise(s, user(s, "supply"), PW, studies.by_code(s, STUDY), None, numbers))


@race("destruction/record", "destruction")
def record_a_destruction(db) -> Race:
    _, numbers = bench_lot_counted(db)
    with db.write() as s:
        number = destructions.authorise(s, user(s, "supply"), PW, studies.by_code(s, STUDY), None, numbers).number
    return Race(lambda s: destructions.record_destruction(
        s, user(s, "supply"), PW, destructions.by_number(s, number), method="Incineration",
        destroyed_on=clock.today(), witness="Wilma Witness"))


@race("reconciliation")
def count_a_blinded_lot(db) -> Race:
    with db.read() as s:
        code = s.scalars(select(col(BlindedLot.code)).join(Kit, col(Kit.blinded_lot_id) == col(BlindedLot.id))
                         .where(col(Kit.site_id).is_(None), col(Kit.state) == "released",
                                col(Kit.study_id) == studies.by_code(s, STUDY).id)).first()

    def attempt(s: Session) -> object:
        study, blinded = studies.by_code(s, STUDY), s.scalars(select(BlindedLot).where(BlindedLot.code == code)).one()
        on_hand = accountability.row_of(s, study, None, blinded).counts["on_hand"]
        return accountability.reconcile(s, user(s, "supply"), PW, study, None, blinded, on_hand, None)
    return Race(attempt, each_its_own=True)  # a count is an observation: each one is recorded


@race("accountability_verification")
def verify_a_sites_accountability(db) -> Race:
    with db.read() as s:
        study, site = studies.by_code(s, STUDY), s.scalars(select(Site).where(Site.code == SITE)).one()
        now = verification.standing(s, study, site)
        seen, sequence = now.figures_hash, now.next_sequence
    return Race(lambda s: verification.verify_by_code(s, user(s, "monitor"), PW, STUDY, SITE, seen_hash=seen,
                                                      sequence=sequence))


@race("unblinding")
def unblind_a_participant(db) -> Race:
    with db.read() as s:
        number = s.scalars(select(col(Participant.screening_number))
                           .join(Site, col(Site.id) == col(Participant.site_id))
                           .where(col(Participant.randomisation_number).is_not(None), col(Site.code) == SITE,
                                  col(Participant.study_id) == studies.by_code(s, STUDY).id)
                           .order_by(col(Participant.screening_number))).first()

    def numbered_one_after_another(s: Session) -> None:
        study = studies.by_code(s, STUDY)
        trail = unblinding.participant_key(study, unblinding.participant_by_number(s, study, number))
        reasons = s.scalars(select(col(AuditEvent.reason)).where(col(AuditEvent.action) == "emergency unblinding",
                                                                 col(AuditEvent.entity_id) == trail)).all()
        counts = sorted(int(r.rsplit("(unblinding ", 1)[1].split()[0]) if "(unblinding " in r else 1
                        for r in reasons)
        assert counts == list(range(1, len(reasons) + 1)), "unblindings at once are numbered one after another"

    return Race(lambda s: unblinding.unblind(s, user(s, "investigator"), PW, studies.by_code(s, STUDY), number,
                                             "serious_adverse_event", "anaphylaxis after the second injection"),
                each_its_own=True, then=numbered_one_after_another)  # every emergency unblinding is its own record


# --- the tests --------------------------------------------------------------------------------------


def test_every_signed_move_and_every_signable_type_has_a_race():
    covered = set().union(*COVERS.values())
    assert signed_moves() - covered == set(), "a signed move nobody races: add a driver"
    assert signatures.signable_types() - covered == set(), "a signable type nobody races: add a driver"
    assert covered <= signed_moves() | signatures.signable_types(), "a driver names a move or type that is gone"


def _fire(db, attempt: Callable[[Session], object]) -> list[object]:
    start, outcomes = threading.Barrier(N), [None] * N

    def caller(i: int) -> None:
        try:
            start.wait()
            with db.write() as s:
                attempt(s)
            outcomes[i] = "signed"
        except BaseException as exc:  # every outcome is looked at below
            outcomes[i] = exc

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return outcomes


@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_callers_at_once_give_one_success_and_clean_refusals(demo_trial_world, name):
    db = demo_trial_world
    driver = DRIVERS[name]
    subject = driver(db)
    with db.read() as s:
        last_signature = s.scalar(select(func.max(col(Signature.id)))) or 0
        last_event = s.scalar(select(func.max(col(AuditEvent.seq)))) or 0
    outcomes = _fire(db, subject.attempt)
    unexpected = [o for o in outcomes if o != "signed" and not isinstance(o, (Conflict, InvalidInput))]
    assert unexpected == [], f"{name}: callers failed otherwise than with a conflict or the state refusal"
    successes = outcomes.count("signed")
    assert successes == (N if subject.each_its_own else 1), f"{name}: {outcomes}"
    with db.read() as s:
        new = list(s.scalars(select(Signature).where(col(Signature.id) > last_signature)))
        signed = list(s.scalars(select(AuditEvent).where(col(AuditEvent.seq) > last_event,
                                                         col(AuditEvent.action) == "signed")))
    assert len(new) == successes, f"{name}: {len(new)} signatures for {successes} successes"
    assert len(signed) == successes, f"{name}: {len(signed)} 'signed' events for {successes} successes"
    assert {e.seq for e in signed} == {sig.audit_seq for sig in new}, "each signature with its own event"
    if subject.then is not None:
        with db.read() as s:
            subject.then(s)
    if not subject.each_its_own:
        refused = [o for o in outcomes if o != "signed"]
        assert all(getattr(o, "status", None) in (400, 409, 422) for o in refused)
    assert integrity.verify(db).ok


def test_the_database_keeps_one_standing_signature_per_record_and_meaning_and_a_voided_one_may_be_signed_again(
        demo_trial_world):
    """The backstop behind the claims (uq_signature_standing): even a path that forgot its claim
    cannot leave two standing signatures of one meaning on one record; the clash is a conflict
    that says what happened, and a signature voided by a correction makes room for the next."""
    db = demo_trial_world
    with db.read() as s:
        first = s.scalars(select(Signature).where(col(Signature.entity_type) == "step_entry",
                                                  col(Signature.meaning) == "performed")).first()
        entity_id = first.entity_id
    with pytest.raises(Conflict) as clash, db.write() as s:
        signatures.sign(s, user(s, "operator"), PW, Meaning.performed, "step_entry", entity_id)
    assert "signed 'performed' by someone else a moment ago" in clash.value.message and clash.value.status == 409
    with db.write() as s:
        signatures.invalidate(s, actor(s, "qa"), s.get(Signature, first.id), "value corrected: typing error")
        again = signatures.sign(s, user(s, "operator"), PW, Meaning.performed, "step_entry", entity_id)
    with db.read() as s:
        standing = s.scalars(select(Signature).where(col(Signature.entity_type) == "step_entry",
                                                     col(Signature.entity_id) == entity_id,
                                                     col(Signature.meaning) == "performed",
                                                     col(Signature.invalidated_at).is_(None))).all()
    assert [sig.id for sig in standing] == [again.id]
