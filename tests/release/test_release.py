"""Release: every gate blocking and unblocking, QA's review by exception and of the lot's audit trail,
initial then final certification, the sponsor release, rejection, the QP who worked on the lot being
refused, a saline placebo lot all the way to released, the certificates read back from their PDFs,
the pages and the API."""
from __future__ import annotations

import html
import io
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import select

from cellbench import clock, demo, deviations, integrity, lots, qc, release, signatures, steps, users
from cellbench.clock import utcnow
from cellbench.donors import decision_signature
from cellbench.errors import AuthenticationFailed, Conflict, Forbidden, InvalidInput
from cellbench.models import Deviation, Donation, LotDecision, LotReview, LotState, QcResult, Signature, StepEntry
from cellbench.release import certificates
from cellbench.specifications import QUALITATIVE
from cellbench.specifications import versions as spec_versions

from ..conftest import sign_in

PW = demo.DEMO_PASSWORD
YEAR = f"{utcnow():%Y}"
ASC, ASC_IN_PROCESS, PLB = f"ASC-{YEAR}-0001", f"ASC-{YEAR}-0002", f"PLB-{YEAR}-0001"


@pytest.fixture
def demo_db(demo_world):
    """Complete lots ASC-<year>-0001 and PLB-<year>-0001 in QC pending; ASC-<year>-0002 in process."""
    return demo_world


# --- helpers: the people of the demo and what they do --------------------------------------------


def user(s, name):
    return users.by_username(s, name)


def actor(s, name):
    return users.actor(s, user(s, name))


passing = demo.passing_value  # the demo's rule: a result inside the acceptance criterion


def failing(test) -> str:
    c = test.acceptance
    if c.kind != "range":
        return QUALITATIVE[c.kind][1]
    return f"{c.max * 2:g}" if c.max is not None else f"{c.min / 2:g}"


def release_test(db, number, code):
    with db.read() as s:
        return next(t for t in qc.spec_of(s, lots.by_number(s, number)).tests if t.code == code)


def enter(db, number, code, value=None, *, review=True, retest_of=None) -> int:
    """The QC analyst enters one result; QA reviews it as the second person."""
    value = value if value is not None else passing(release_test(db, number, code))
    with db.write() as s:
        result = qc.enter_result(s, actor(s, "qc"), lots.by_number(s, number), code, value, retest_of=retest_of)
        if review:
            qc.review_result(s, user(s, "qa"), PW, result)
        return result.id


def enter_all(db, number, *, skip=()):
    """A passing, reviewed result for every release test the lot's QC covers (donor-stage tests are
    evidenced by the donation's signed eligibility), but those skipped."""
    with db.write() as s:
        lot = lots.by_number(s, number)
        for status in qc.test_status(s, lot):
            if release.counts_for_release(status.test) and status.test.code not in skip and status.state != "pass":
                result = qc.enter_result(s, actor(s, "qc"), lot, status.test.code, passing(status.test))
                qc.review_result(s, user(s, "qa"), PW, result)


def review(db, number, *kinds):
    for kind in kinds or release.REVIEW_KINDS:
        with db.write() as s:
            release.sign_review(s, user(s, "qa"), PW, lots.by_number(s, number), kind)


def certify(db, number, who="qp", **kwargs) -> int:
    with db.write() as s:
        return release.certify(s, user(s, who), PW, lots.by_number(s, number), **kwargs).id


def sponsor_release(db, number, who="supply") -> int:
    with db.write() as s:
        return release.sponsor_release(s, user(s, who), PW, lots.by_number(s, number)).id


def gate(db, number, name, who=None):
    with db.read() as s:
        return getattr(release, name)(s, lots.by_number(s, number), actor(s, who) if who else None)


def blocking(db, number, guard=None, who="qp") -> dict[str, str]:
    with db.read() as s:
        lot = lots.by_number(s, number)
        return {g.name: g.blocking_reason for g in release.readiness(s, lot, actor(s, who), guard) if not g.passed}


def state_of(db, number) -> LotState:
    with db.read() as s:
        return LotState(lots.by_number(s, number).state)


def due(days=14):
    return clock.today() + timedelta(days=days)


def words(text: str) -> str:
    return " ".join(html.unescape(text).split())


def pdf_text(pdf: bytes) -> str:
    return words(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages))


def released(db, number):
    enter_all(db, number)
    review(db, number)
    certify(db, number, final=True)
    sponsor_release(db, number)


# --- the whole path ---------------------------------------------------------------------------


def test_a_lot_fresh_from_its_batch_record_is_blocked_only_by_its_results_and_reviews(demo_db):
    assert set(blocking(demo_db, ASC)) == {"release_tests_in_specification", "batch_record_reviewed",
                                           "audit_trail_reviewed"}
    assert "Sterility (bacteria and fungi) has no result yet." in blocking(demo_db, ASC)[
        "release_tests_in_specification"]
    assert "Donor" not in blocking(demo_db, ASC)["release_tests_in_specification"]  # the eligibility is their record
    with demo_db.read() as s:
        candidates = {t.code for t in release.pending_candidates(s, lots.by_number(s, ASC))}
        assert "sterility" in candidates and not any(c.startswith("donor_") for c in candidates)
    with pytest.raises(InvalidInput) as refused:
        certify(demo_db, ASC, final=True)
    assert refused.value.field == "gates" and "QA has not signed the audit-trail review" in refused.value.message
    with demo_db.read() as s:
        assert state_of(demo_db, ASC) is LotState.qc_pending
        assert s.scalars(select(LotDecision).where(LotDecision.lot_id == lots.by_number(s, ASC).id)).first() is None


def test_an_asc_lot_is_certified_finally_and_then_released_by_the_sponsor(demo_db):
    enter_all(demo_db, ASC)
    review(demo_db, ASC)
    assert blocking(demo_db, ASC) == {}
    assert "no final QP certification" in gate(demo_db, ASC, "certified")
    with pytest.raises(InvalidInput):  # the sponsor releases only a certified lot
        sponsor_release(demo_db, ASC)
    with pytest.raises(Forbidden):  # and only the supply manager certifies nothing
        certify(demo_db, ASC, who="supply", final=True)
    decision = certify(demo_db, ASC, final=True)
    assert state_of(demo_db, ASC) is LotState.qp_certified
    assert gate(demo_db, ASC, "certified") is None
    assert blocking(demo_db, ASC) == {}  # now the sponsor-release gates
    for name in ("batch_record_reviewed", "audit_trail_reviewed"):  # a decision resting on a review does not stale it
        assert gate(demo_db, ASC, name) is None
    with pytest.raises(Forbidden):
        sponsor_release(demo_db, ASC, who="qp")
    released_id = sponsor_release(demo_db, ASC)
    assert state_of(demo_db, ASC) is LotState.released
    with demo_db.read() as s:
        certification, release_decision = s.get(LotDecision, decision), s.get(LotDecision, released_id)
        sig = s.get(Signature, certification.signature_id)
        assert (certification.decision, sig.meaning, sig.signer_name) == ("certify_final", "certified", "Peter Qvist")
        sig = s.get(Signature, release_decision.signature_id)
        assert (release_decision.decision, sig.meaning, sig.signer_name) == ("release", "released", "Sara Munk")
        assert certification.qc_results_up_to == max(r.id for r in qc.results_of(s, lots.by_number(s, ASC)))
    assert integrity.verify(demo_db).ok


def test_an_initial_certification_lists_pending_sterility_and_the_final_one_resolves_it(demo_db):
    enter_all(demo_db, ASC, skip={"sterility"})
    review(demo_db, ASC)
    assert "Sterility (bacteria and fungi) has no result yet." in blocking(demo_db, ASC)[
        "release_tests_in_specification"]
    assert blocking(demo_db, ASC, "initial_certification") == {}  # sterility may be listed pending
    decision = certify(demo_db, ASC, final=False, pending=[("sterility", "qc", due())])
    assert state_of(demo_db, ASC) is LotState.initial_certified
    with demo_db.read() as s:
        pending = release.pending_tests(s, lots.by_number(s, ASC))[0]
        assert (pending.decision_id, pending.test_code, pending.owner_id, pending.due_date, pending.resolved_at) == (
            decision, "sterility", user(s, "qc").id, due(), None)
        signed = s.get(Signature, s.get(LotDecision, decision).signature_id)
        # the QP's signature covers the pending list
        assert signed.meaning == "certified"
        assert "Sterility (bacteria and fungi) (sterility): owner Kim Larsen" in signed.content
    # the final certification waits for the result and for QA's fresh reviews
    still = blocking(demo_db, ASC)
    assert set(still) == {"release_tests_in_specification", "batch_record_reviewed", "audit_trail_reviewed"}
    enter(demo_db, ASC, "sterility", "no growth")
    review(demo_db, ASC)
    certify(demo_db, ASC, final=True)
    assert state_of(demo_db, ASC) is LotState.qp_certified
    with demo_db.read() as s:
        assert [p.resolved_at is not None for p in release.pending_tests(s, lots.by_number(s, ASC))] == [True]
        assert [d.decision for d in lots.decisions_of(s, lots.by_number(s, ASC))] == ["certify_initial",
                                                                                      "certify_final"]
    sponsor_release(demo_db, ASC)
    assert state_of(demo_db, ASC) is LotState.released
    assert integrity.verify(demo_db).ok


def test_an_initial_certification_needs_a_proper_list_of_pending_tests(demo_db):
    enter_all(demo_db, ASC, skip={"sterility", "mycoplasma"})
    review(demo_db, ASC)
    refusals = {
        "pending": [],
        "pending ": [("no_such_test", "qc", due())],
        "pending  ": [("endotoxin", "qc", due())],  # already in, passing and reviewed
        "owner": [("sterility", "qa", due())],  # the owner is a QC analyst
        "due_date": [("sterility", "qc", due(-1))],
    }
    for field, pending in refusals.items():
        with pytest.raises(InvalidInput) as refused:
            certify(demo_db, ASC, final=False, pending=pending)
        assert refused.value.field == field.strip(), (pending, refused.value.message)
    with pytest.raises(InvalidInput) as refused:  # mycoplasma is missing and not listed
        certify(demo_db, ASC, final=False, pending=[("sterility", "qc", due())])
    assert refused.value.field == "gates"
    assert "Mycoplasma has no passing reviewed result and is not listed as pending" in refused.value.message
    with pytest.raises(InvalidInput) as refused, demo_db.write() as s:  # the bare lot move passes no gates: refused
        lots.move(s, user(s, "qp"), lots.by_number(s, ASC), "certify_initial", None, password=PW)
    assert "made through the release" in refused.value.message
    with pytest.raises(InvalidInput) as refused, demo_db.write() as s:  # the release's lot move lists nothing: refused
        release.move_lot(s, user(s, "qp"), lots.by_number(s, ASC), "certify_initial", None, password=PW)
    assert "lists its pending tests" in refused.value.message
    with pytest.raises(InvalidInput) as refused:
        certify(demo_db, ASC, final=True, pending=[("sterility", "qc", due())])
    assert refused.value.field == "pending"
    certify(demo_db, ASC, final=False, pending=[("sterility", "qc", due()), ("mycoplasma", "qc", due(7).isoformat())])
    with demo_db.read() as s:
        assert sorted(p.test_code for p in release.pending_tests(s, lots.by_number(s, ASC))) == ["mycoplasma",
                                                                                                  "sterility"]


def test_an_oos_result_blocks_initial_and_final_certification(demo_db):
    endotoxin = release_test(demo_db, ASC, "endotoxin")
    enter_all(demo_db, ASC, skip={"endotoxin", "sterility"})
    enter(demo_db, ASC, "endotoxin", failing(endotoxin))
    review(demo_db, ASC)
    why = blocking(demo_db, ASC)
    assert "Bacterial endotoxins is out of specification" in why["release_tests_in_specification"]
    assert "not closed by QA" in why["deviations_closed"]  # QC opened the OOS investigation
    with pytest.raises(InvalidInput) as refused:  # an OOS test cannot be listed as pending
        certify(demo_db, ASC, final=False, pending=[("endotoxin", "qc", due())])
    assert refused.value.field == "pending" and "out of specification" in refused.value.message
    with pytest.raises(InvalidInput) as refused:  # nor does listing others let it through
        certify(demo_db, ASC, final=False, pending=[("sterility", "qc", due())])
    assert "Bacterial endotoxins is out of specification." in refused.value.message
    assert state_of(demo_db, ASC) is LotState.qc_pending


def test_an_oos_after_initial_certification_blocks_the_final_one_until_it_is_resolved(demo_db):
    enter_all(demo_db, ASC, skip={"sterility"})
    review(demo_db, ASC)
    certify(demo_db, ASC, final=False, pending=[("sterility", "qc", due())])
    oos = enter(demo_db, ASC, "sterility", "growth")
    review(demo_db, ASC)
    why = blocking(demo_db, ASC)
    assert set(why) == {"release_tests_in_specification", "deviations_closed"}
    assert "Sterility (bacteria and fungi) is out of specification" in why["release_tests_in_specification"]
    with pytest.raises(InvalidInput):
        certify(demo_db, ASC, final=True)
    # the investigation finds a laboratory error: QA invalidates, the test is repeated, QA closes the deviation
    with demo_db.write() as s:
        result = s.get(QcResult, oos)
        qc.invalidate_result(s, user(s, "qa"), PW, result, "contaminated sample bottle, confirmed by the lab")
        deviation = s.get(Deviation, result.deviation_id)
        deviations.assess_deviation(s, actor(s, "qa"), deviation, impact_assessment="laboratory error; no impact")
        deviations.close_deviation(s, user(s, "qa"), PW, deviation)
    enter(demo_db, ASC, "sterility", "no growth")
    review(demo_db, ASC)
    certify(demo_db, ASC, final=True)
    assert state_of(demo_db, ASC) is LotState.qp_certified
    assert integrity.verify(demo_db).ok


# --- each gate, blocking and unblocking -------------------------------------------------------


def test_the_batch_record_gate_blocks_until_every_step_and_verification_is_signed(demo_db):
    assert "is not complete" in gate(demo_db, ASC_IN_PROCESS, "batch_record_complete")
    with demo_db.write() as s:
        lot = lots.by_number(s, ASC_IN_PROCESS)
        donation = s.get(Donation, lot.donation_id)
        spec = spec_versions.parsed(lots.spec_of(s, lot))
        now = utcnow()
        codes = [st.code for st in spec.steps]
        for step in spec.steps[codes.index("harvest"):]:
            if step.code == "storage_transfer":  # every vial placed or sampled: the step closes only then
                demo.store_every_vial(s, lot, step, "asc", lambda index: demo.asc_values(
                    "storage_transfer", index, now, lot, donation.identifier))
                continue
            demo.run_step(s, lot, step, demo.asc_values(step.code, 1, now, lot, donation.identifier))
    assert state_of(demo_db, ASC_IN_PROCESS) is LotState.qc_pending
    assert gate(demo_db, ASC_IN_PROCESS, "batch_record_complete") is None
    with demo_db.write() as s:  # a verification that no longer stands
        entry = s.scalars(select(StepEntry).where(StepEntry.lot_id == lots.by_number(s, ASC_IN_PROCESS).id,
                                                  StepEntry.step_code == "count")).one()
        signatures.invalidate(s, actor(s, "qa"), s.get(Signature, entry.verified_signature_id), "signed in error")
    assert "lacks a standing second-person verification" in gate(demo_db, ASC_IN_PROCESS, "batch_record_complete")


def test_the_donor_gate_needs_a_standing_eligibility_signature_and_a_placebo_lot_no_donor(demo_db):
    assert gate(demo_db, ASC, "donor_eligible") is None
    assert gate(demo_db, PLB, "donor_eligible") is None
    with demo_db.read() as s:  # a saline lot that named a donation would be wrong (not saved)
        placebo = lots.by_number(s, PLB)
        placebo.donation_id = lots.by_number(s, ASC).donation_id
        assert "a saline lot has no donor" in release.donor_eligible(s, placebo)
        s.rollback()
    with demo_db.write() as s:
        donation = s.get(Donation, lots.by_number(s, ASC).donation_id)
        signatures.invalidate(s, actor(s, "qa"), decision_signature(s, donation), "wrong panel version")
    assert "has no standing QA signature" in gate(demo_db, ASC, "donor_eligible")


def test_deviations_block_until_qa_closes_them_an_assessment_alone_is_not_enough(demo_db):
    assert gate(demo_db, ASC, "deviations_closed") is None
    with demo_db.write() as s:
        number = deviations.raise_deviation(s, actor(s, "operator"), lot_id=lots.by_number(s, ASC).id,
                                            origin="manual", description="LN2 top-up late by 2 h").number
    assert f"{number} (open)" in gate(demo_db, ASC, "deviations_closed")
    with demo_db.write() as s:
        deviations.assess_deviation(s, actor(s, "operator"), deviations.by_number(s, number),
                                    impact_assessment="tank stayed below -150 °C throughout")
    assert f"{number} (assessed)" in gate(demo_db, ASC, "deviations_closed")
    with demo_db.write() as s:
        deviations.close_deviation(s, user(s, "qa"), PW, deviations.by_number(s, number))
    assert gate(demo_db, ASC, "deviations_closed") is None


def test_a_storage_excursion_blocks_until_qa_assesses_it_acceptable(demo_db):
    with demo_db.write() as s:
        first = release.record_excursion(s, actor(s, "supply"), lots.by_number(s, ASC),
                                         observed_at=utcnow() - timedelta(hours=3), highest_temperature="-141.5",
                                         description="lid opened for inventory").id
    assert "excursion to -141.5 °C" in gate(demo_db, ASC, "no_unassessed_excursion")
    assert "not assessed by QA" in gate(demo_db, ASC, "no_unassessed_excursion")
    with pytest.raises(Forbidden), demo_db.write() as s:
        release.assess_excursion(s, actor(s, "operator"), lots.by_number(s, ASC), first, acceptable=True,
                                 assessment="fine")
    with demo_db.write() as s:
        release.assess_excursion(s, actor(s, "qa"), lots.by_number(s, ASC), first, acceptable=True,
                                 assessment="below the glass transition throughout; validated tolerance")
    assert gate(demo_db, ASC, "no_unassessed_excursion") is None
    with pytest.raises(Conflict), demo_db.write() as s:
        release.assess_excursion(s, actor(s, "qa"), lots.by_number(s, ASC), first, acceptable=False, assessment="x")
    with demo_db.write() as s:
        second = release.record_excursion(s, actor(s, "operator"), lots.by_number(s, ASC),
                                          observed_at=utcnow() - timedelta(hours=1), highest_temperature=-60,
                                          description="tank alarm, LN2 supply failed").id
        release.assess_excursion(s, actor(s, "qa"), lots.by_number(s, ASC), second, acceptable=False,
                                 assessment="above the glass transition for 40 min")
    assert "assessed unacceptable: above the glass transition for 40 min" in gate(demo_db, ASC,
                                                                                   "no_unassessed_excursion")
    with pytest.raises(InvalidInput) as refused, demo_db.write() as s:
        release.record_excursion(s, actor(s, "operator"), lots.by_number(s, ASC), observed_at=utcnow(),
                                 highest_temperature="warm", description="x")
    assert refused.value.field == "highest_temperature"


def test_reviews_are_signed_by_qa_and_go_stale_when_the_lot_changes_later(demo_db):
    assert "QA has not signed the batch-record review" in gate(demo_db, ASC, "batch_record_reviewed")
    with pytest.raises(Forbidden), demo_db.write() as s:
        release.sign_review(s, user(s, "qp"), PW, lots.by_number(s, ASC), "batch_record")
    with pytest.raises(AuthenticationFailed), demo_db.write() as s:
        release.sign_review(s, user(s, "qa"), "wrong password", lots.by_number(s, ASC), "batch_record")
    with pytest.raises(InvalidInput), demo_db.write() as s:  # not while the record is being made
        release.sign_review(s, user(s, "qa"), PW, lots.by_number(s, ASC_IN_PROCESS), "batch_record")
    review(demo_db, ASC, "batch_record")
    assert gate(demo_db, ASC, "batch_record_reviewed") is None
    assert "audit-trail review" in gate(demo_db, ASC, "audit_trail_reviewed")  # signing one does not stale the other
    review(demo_db, ASC, "audit_trail")
    assert gate(demo_db, ASC, "audit_trail_reviewed") is None and gate(demo_db, ASC, "batch_record_reviewed") is None
    with pytest.raises(Conflict):  # nothing new to review
        review(demo_db, ASC, "audit_trail")
    enter(demo_db, ASC, "endotoxin")  # a later change to the lot
    for name in ("batch_record_reviewed", "audit_trail_reviewed"):
        assert "is stale" in gate(demo_db, ASC, name)
    review(demo_db, ASC)
    assert gate(demo_db, ASC, "batch_record_reviewed") is None and gate(demo_db, ASC, "audit_trail_reviewed") is None
    with demo_db.read() as s:
        rows = [r for r, _ in release.reviews_of(s, lots.by_number(s, ASC))]
        assert [r.kind for r in rows] == ["batch_record", "audit_trail", "batch_record", "audit_trail"]
        assert rows[2].up_to_seq > rows[0].up_to_seq
        sig = s.get(Signature, rows[-1].signature_id)
        assert (sig.meaning, sig.signer_name, sig.entity_type) == ("reviewed", "Anna Berg", "lot_review")
        assert f'"lot":"{ASC}"' in sig.content and '"kind":"audit_trail"' in sig.content
    assert integrity.verify(demo_db).ok


def test_a_qp_who_performed_or_verified_a_step_of_the_lot_is_refused(demo_db):
    with demo_db.write() as s:  # the operator and the verifier also become QPs
        users.set_roles(s, users.cli_actor(), user(s, "operator"), ["operator", "qp"], "QP training complete")
        users.set_roles(s, users.cli_actor(), user(s, "verifier"), ["verifier", "operator", "qp"], "QP deputy")
    assert "Ole Jensen performed steps" in gate(demo_db, ASC, "qp_independent", "operator")
    assert "Vera Holm verified steps" in gate(demo_db, ASC, "qp_independent", "verifier")
    assert gate(demo_db, ASC, "qp_independent", "qp") is None
    enter_all(demo_db, ASC)
    review(demo_db, ASC)
    for who in ("operator", "verifier"):
        with pytest.raises(InvalidInput) as refused:
            certify(demo_db, ASC, who=who, final=True)
        assert "must not have performed or verified any of its steps" in refused.value.message
    assert set(blocking(demo_db, ASC, who="verifier")) == {"qp_independent"}
    certify(demo_db, ASC, who="qp", final=True)
    assert state_of(demo_db, ASC) is LotState.qp_certified


def test_rejection_needs_a_reason_and_a_signature_and_withdraws_pending_tests(demo_db):
    with pytest.raises(Forbidden), demo_db.write() as s:
        release.reject(s, user(s, "supply"), PW, lots.by_number(s, ASC), "no")
    with pytest.raises(InvalidInput) as refused, demo_db.write() as s:
        release.reject(s, user(s, "qp"), PW, lots.by_number(s, ASC), "  ")
    assert refused.value.field == "reason"
    with demo_db.write() as s:
        decision = release.reject(s, user(s, "qp"), PW, lots.by_number(s, ASC), "viability trend below process history")
        sig = s.get(Signature, decision.signature_id)
        assert (decision.to_state, decision.reason, sig.meaning) == (
            "rejected", "viability trend below process history", "rejected")
    assert state_of(demo_db, ASC) is LotState.rejected
    enter_all(demo_db, PLB, skip={"storage_history"})
    review(demo_db, PLB)
    certify(demo_db, PLB, final=False, pending=[("storage_history", "qc", due(3))])
    with demo_db.write() as s:
        release.reject(s, user(s, "qa"), PW, lots.by_number(s, PLB), "supplier recall of batch NACL-26A01")
    with demo_db.read() as s:
        assert [p.resolved_at is not None for p in release.pending_tests(s, lots.by_number(s, PLB))] == [True]
    assert state_of(demo_db, PLB) is LotState.rejected
    assert integrity.verify(demo_db).ok


def test_a_saline_placebo_lot_goes_through_the_same_gates_and_signatures_to_released(demo_db):
    assert set(blocking(demo_db, PLB)) == {"release_tests_in_specification", "batch_record_reviewed",
                                           "audit_trail_reviewed"}
    released(demo_db, PLB)
    released(demo_db, ASC)
    assert state_of(demo_db, PLB) is LotState.released
    with demo_db.read() as s:
        def shape(number):
            return [(d.decision, d.from_state, d.to_state, s.get(Signature, d.signature_id).meaning)
                    for d in lots.decisions_of(s, lots.by_number(s, number))]
        assert shape(PLB) == shape(ASC) == [("certify_final", "qc_pending", "qp_certified", "certified"),
                                             ("release", "qp_certified", "released", "released")]
        assert {r.kind for r in s.scalars(select(LotReview).where(LotReview.lot_id == lots.by_number(s, PLB).id))} == {
            "batch_record", "audit_trail"}
    assert integrity.verify(demo_db).ok


# --- review by exception ------------------------------------------------------------------------


def _placebo_with_exceptions(db) -> str:
    """A saline lot whose receipt has a late time, a count out of limits, an N/A entry and a value
    corrected after the step was signed; then an OOS result invalidated and a retest."""
    now = utcnow()
    with db.write() as s:
        op, ver, op_actor = user(s, "operator"), user(s, "verifier"), actor(s, "operator")
        lot = lots.start_lot(s, op_actor, "saline-placebo")
        number = lot.number
        values = {k: steps.ValueInput(v) for k, v in demo.placebo_values("supplier_receipt", now, "NACL-X1").items()}
        values["received_at"] = steps.ValueInput((now - timedelta(hours=30)).isoformat(timespec="minutes"))
        values["units_received"] = steps.ValueInput("2400", "two pallets delivered; excess returned")
        values["marketing_authorisation"] = steps.ValueInput("", "", "parallel import: MA on the outer carton")
        steps.start_entry(s, op_actor, lot, "supplier_receipt", None)
        steps.record_values(s, op_actor, lot, "supplier_receipt", 1, values, None)
        steps.perform(s, op, PW, lot, "supplier_receipt", 1, None)
        steps.verify(s, ver, PW, lot, "supplier_receipt", 1, None)
    with db.write() as s:
        lot = lots.by_number(s, number)
        entry = steps.entries_of(s, lot)["supplier_receipt"][0]
        batch = steps.current_values(s, entry)["supplier_batch"]
        steps.correct_value(s, actor(s, "operator"), lot, batch.id, "NACL-X2", "transcription error: carton reads X2")
        steps.perform(s, user(s, "operator"), PW, lot, "supplier_receipt", 1, None)
        steps.verify(s, user(s, "verifier"), PW, lot, "supplier_receipt", 1, None)
        spec = spec_versions.parsed(lots.spec_of(s, lot))
        for step in spec.steps[1:]:
            if step.code == "storage_transfer":  # six vials: 3 pulled for QC, 2 retained, 1 placed
                demo.store_every_vial(s, lot, step, "placebo", lambda index: demo.placebo_values(
                    "storage_transfer", now, "NACL-X2", lot, index))
                continue
            values = demo.placebo_values(step.code, now, "NACL-X2", lot, vials=6)
            demo.run_step(s, lot, step, values or demo.default_values(step))
    oos = enter(db, number, "appearance", "does not conform")
    with db.write() as s:
        qc.invalidate_result(s, user(s, "qa"), PW, s.get(QcResult, oos), "wrong ampoule inspected")
    enter(db, number, "appearance", "conforms")
    first = enter(db, number, "container_integrity", "conforms")
    enter(db, number, "container_integrity", "conforms", retest_of=first)
    return number


def test_review_by_exception_lists_only_what_needs_attention(demo_db, app):
    with demo_db.read() as s:
        assert release.exceptions(s, lots.by_number(s, ASC)) == []  # a clean record: nothing to look at
    number = _placebo_with_exceptions(demo_db)
    with demo_db.read() as s:
        found = release.exceptions(s, lots.by_number(s, number))
    kinds = {f.kind for f in found}
    assert kinds == set(release.FINDING_KINDS)
    by_kind = {k: [f for f in found if f.kind == k] for k in kinds}
    [limit] = by_kind["out_of_limit"]
    assert "Units received" in limit.where and "2400" in limit.what and limit.reason.startswith("two pallets")
    [correction] = by_kind["correction"]
    assert (correction.original, correction.new, correction.reason, correction.who) == (
        "NACL-X1", "NACL-X2", "transcription error: carton reads X2", "Ole Jensen")
    [na] = by_kind["not_applicable"]
    assert "parallel import" in na.reason
    [late] = by_kind["late_entry"]
    assert "late entry" in late.what
    assert {f.what.split(",")[0] for f in by_kind["deviation"]} == {"out of limit", "oos"}
    qc_notes = " | ".join(f.what for f in by_kind["qc_result"])
    assert "invalidated: wrong ampoule inspected" in qc_notes and "retest of result" in qc_notes
    after = " | ".join(f.what for f in by_kind["after_signing"])
    assert "value corrected: supplier_receipt.supplier_batch" in after and "signature invalidated" in after
    # only exceptions: the supplier name, a normal value, appears nowhere
    assert not any("Supplier /" in f.where or f.where.endswith("/ Supplier") for f in found)
    page = words(sign_in(app, "qa", PW).get(f"/lots/{number}/release").text)
    for heading in release.FINDING_KINDS.values():
        assert heading in page, heading
    assert "NACL-X1" in page and "transcription error: carton reads X2" in page and "wrong ampoule inspected" in page


# --- certificates -------------------------------------------------------------------------------


def test_the_certificates_are_read_back_from_their_pdfs(demo_db):
    enter_all(demo_db, ASC, skip={"sterility"})
    review(demo_db, ASC)
    certify(demo_db, ASC, final=False, pending=[("sterility", "qc", due())])
    enter(demo_db, ASC, "sterility", "no growth")
    review(demo_db, ASC)
    certify(demo_db, ASC, final=True)
    sponsor_release(demo_db, ASC)
    with demo_db.read() as s:
        data = certificates.gather(s, ASC)
    from zoneinfo import ZoneInfo
    zone = ZoneInfo("Europe/Copenhagen")
    coa = pdf_text(certificates.coa_pdf(data, zone=zone, printed_by="Anna Berg", printed_at=utcnow()))
    for expected in ("Certificate of analysis", ASC, "asc-cs10 version 2", "Bacterial endotoxins",
                     "Ph. Eur. 2.6.14 method D", "< 70 IU/mL", "35 IU/mL", "Sterility (bacteria and fungi)",
                     "no growth", "pass", "Anna Berg, reviewed", "All release tests meet the specification",
                     "QP initial certification", "QP final certification", "Peter Qvist", "certified",
                     "Sponsor release", "Sara Munk", "released", "Kim Larsen", "Donor anti-HIV-1/2",
                     "negative (donor sample", "Anna Berg, approved (donor eligibility)"):
        assert expected in coa, expected
    assert "OUT OF SPECIFICATION" not in coa
    certificate = pdf_text(certificates.release_certificate_pdf(data, zone=zone, printed_by="Sara Munk",
                                                                printed_at=utcnow()))
    for expected in ("Release certificate", ASC, "RELEASED", "QP initial certification", "QP final certification",
                     "Peter Qvist", "certified", "Sponsor release", "Sara Munk", "released", "Sterility",
                     "Audit trail of the lot reviewed", "Anna Berg"):
        assert expected in certificate, expected
    released(demo_db, PLB)
    with demo_db.read() as s:
        placebo = pdf_text(certificates.coa_pdf(certificates.gather(s, PLB), zone=zone, printed_by="x",
                                                printed_at=utcnow()))
    assert "Supplier certificate of analysis" in placebo and "conforms" in placebo and "Sara Munk" in placebo


def test_an_oos_shows_on_the_certificate_of_analysis(demo_db):
    enter(demo_db, ASC, "endotoxin", "140")
    with demo_db.read() as s:
        data = certificates.gather(s, ASC)
    from zoneinfo import ZoneInfo
    text = pdf_text(certificates.coa_pdf(data, zone=ZoneInfo("UTC"), printed_by="x", printed_at=utcnow()))
    assert "140 IU/mL" in text and "OUT OF SPECIFICATION" in text and "Not every release test" in text
    certificate = pdf_text(certificates.release_certificate_pdf(data, zone=ZoneInfo("UTC"), printed_by="x",
                                                                printed_at=utcnow()))
    assert "NOT RELEASED: the lot is qc pending" in certificate and "Not certified." in certificate


# --- pages --------------------------------------------------------------------------------------


def test_the_release_page_shows_each_gate_and_only_the_allowed_actions(demo_db, app):
    qa, qp, supply = (sign_in(app, n, PW) for n in ("qa", "qp", "supply"))
    page = qa.get(f"/lots/{ASC}/release")
    assert page.status_code == 200
    text = words(page.text)
    assert "Release tests present, reviewed and in specification" in text
    assert "Sterility (bacteria and fungi) has no result yet." in text
    assert "Sign: batch record reviewed" in text and "Sign: audit trail reviewed" in text
    assert "Sign: rejected" in text and "Sign: certified" not in text and "Sign: released" not in text
    assert "Nothing needs attention" in text
    assert sign_in(app, "operator", PW).get(f"/lots/{ASC}/release").status_code == 403
    assert "lots await your batch-record and audit-trail review" in words(qa.get("/").text)

    enter_all(demo_db, ASC)
    refused = qa.submit(f"/lots/{ASC}/release/review", {"kind": "batch_record", "password": "nope"})
    assert refused.status_code == 401 and "password" in refused.text.lower()
    for kind in ("batch_record", "audit_trail"):
        done = qa.submit(f"/lots/{ASC}/release/review", {"kind": kind, "password": PW})
        assert done.status_code == 303, done.text
    assert "reviewed lot awaits your certification" in words(qp.get("/").text)
    qp_page = words(qp.get(f"/lots/{ASC}/release").text)
    assert "Sign: certified" in qp_page and "Sign: batch record reviewed" not in qp_page
    done = qp.submit(f"/lots/{ASC}/release/certify", {"stage": "final", "password": PW})
    assert done.status_code == 303, done.text
    assert "certified lot awaits your sponsor release" in words(supply.get("/").text)
    supply_page = words(supply.get(f"/lots/{ASC}/release").text)
    assert "Sign: released" in supply_page and "Sign: certified" not in supply_page
    assert "Gates for the sponsor release" in supply_page
    done = supply.submit(f"/lots/{ASC}/release/sponsor_release", {"password": PW})
    assert done.status_code == 303
    assert state_of(demo_db, ASC) is LotState.released
    final = words(supply.get(f"/lots/{ASC}/release").text)
    assert "Peter Qvist" in final and "Sara Munk" in final and "Sign: released" not in final
    coa = supply.get(f"/lots/{ASC}/coa.pdf")
    assert coa.headers["content-type"] == "application/pdf" and ASC in pdf_text(coa.content)
    cert = qa.get(f"/lots/{ASC}/release-certificate.pdf")
    assert cert.status_code == 200 and "RELEASED" in pdf_text(cert.content)
    listing = words(qa.get("/release").text)
    assert ASC in listing and PLB in listing


def test_the_qp_certifies_initially_on_the_page_with_pending_rows(demo_db, app):
    enter_all(demo_db, ASC, skip={"sterility"})
    review(demo_db, ASC)
    qp = sign_in(app, "qp", PW)
    page = words(qp.get(f"/lots/{ASC}/release").text)
    assert "Initial certification with pending tests" in page and "Kim Larsen" in page
    refused = qp.submit(f"/lots/{ASC}/release/certify", {"stage": "initial", "password": PW, "test_1": "sterility",
                                                          "owner_1": "qc", "due_1": due(-2).isoformat()})
    assert refused.status_code == 422 and "in the past" in words(refused.text)
    done = qp.submit(f"/lots/{ASC}/release/certify", {"stage": "initial", "password": PW, "test_1": "sterility",
                                                       "owner_1": "qc", "due_1": due().isoformat(), "test_2": ""})
    assert done.status_code == 303, words(done.text)
    assert state_of(demo_db, ASC) is LotState.initial_certified
    assert "left pending by an initial certification" in words(sign_in(app, "qc", PW).get("/").text)


def test_excursions_are_recorded_and_assessed_on_the_page(demo_db, app):
    supply, qa = sign_in(app, "supply", PW), sign_in(app, "qa", PW)
    bad = supply.submit(f"/lots/{ASC}/release/excursion", {"observed_at": "yesterday", "highest_temperature": "-120",
                                                            "description": "door open"})
    assert bad.status_code == 422 and 'value="-120"' in bad.text
    observed = (utcnow() - timedelta(hours=2)).isoformat(timespec="minutes")
    assert supply.submit(f"/lots/{ASC}/release/excursion", {"observed_at": observed, "highest_temperature": "-120",
                                                             "description": "door open"}).status_code == 303
    assert "not assessed by QA" in words(qa.get(f"/lots/{ASC}/release").text)
    with demo_db.read() as s:
        excursion = release.excursions_of(s, lots.by_number(s, ASC))[0].id
    assert qa.submit(f"/lots/{ASC}/release/assess_excursion", {"excursion": excursion, "acceptable": "yes",
                                                                "assessment": "validated"}).status_code == 303
    assert gate(demo_db, ASC, "no_unassessed_excursion") is None


# --- API ------------------------------------------------------------------------------------------


def api_for(app, db, username):
    with db.write() as s:
        token = users.create_token(s, users.cli_actor(), users.by_username(s, username), "integration")
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def test_the_api_reports_the_gates_and_takes_reviews_certification_release_and_rejection(demo_db, app):
    qa, qp, supply = (api_for(app, demo_db, n) for n in ("qa", "qp", "supply"))
    status = qa.get(f"/api/v1/lots/{ASC}/release")
    assert status.status_code == 200
    body = status.json()
    assert (body["state"], body["ready"], body["next_decision"]) == ("qc_pending", False, "final_certification")
    gates = {g["name"]: g for g in body["gates"]}
    assert gates["release_tests_in_specification"]["passed"] is False and gates["donor_eligible"]["passed"] is True
    assert body["allowed_actions"] == ["hold", "reject"]
    forbidden = qp.post(f"/api/v1/lots/{ASC}/release/reviews", json={"kind": "batch_record", "password": PW})
    assert forbidden.status_code == 403
    enter_all(demo_db, ASC)
    for kind in ("batch_record", "audit_trail"):
        assert qa.post(f"/api/v1/lots/{ASC}/release/reviews", json={"kind": kind, "password": PW}).status_code == 201
    bad = qa.post(f"/api/v1/lots/{ASC}/release/reviews", json={"kind": "everything", "password": PW})
    assert bad.status_code == 422 and bad.json()["field"] == "kind"
    version = qp.get(f"/api/v1/lots/{ASC}/release").json()["lot_version"]
    assert qp.get(f"/api/v1/lots/{ASC}/release").json()["ready"] is True
    stale = qp.post(f"/api/v1/lots/{ASC}/release/certification",
                    json={"final": True, "password": PW, "lot_version": version - 1})
    assert stale.status_code == 409 and stale.json()["field"] == "lot_version"
    done = qp.post(f"/api/v1/lots/{ASC}/release/certification", json={"final": True, "password": PW,
                                                                       "lot_version": version})
    assert done.status_code == 201 and done.json()["state"] == "qp_certified"
    assert done.json()["decisions"][0]["signature"]["meaning"] == "certified"
    released_ = supply.post(f"/api/v1/lots/{ASC}/release/sponsor-release", json={"password": PW})
    assert released_.status_code == 201 and released_.json()["state"] == "released"
    refused = qp.post(f"/api/v1/lots/{PLB}/release/rejection", json={"password": PW, "reason": " "})
    assert refused.status_code == 422 and refused.json()["field"] == "reason"
    rejected = qp.post(f"/api/v1/lots/{PLB}/release/rejection", json={"password": PW, "reason": "damaged pallet"})
    assert rejected.status_code == 201 and rejected.json()["state"] == "rejected"
    assert qa.get(f"/api/v1/lots/{ASC}/release/exceptions").json() == []
    paths = app.openapi()["paths"]
    assert {"/api/v1/lots/{number}/release", "/api/v1/lots/{number}/release/certification",
            "/api/v1/lots/{number}/release/sponsor-release"} <= set(paths)
    assert integrity.verify(demo_db).ok


def test_the_api_lists_pending_tests_of_an_initial_certification(demo_db, app):
    enter_all(demo_db, ASC, skip={"sterility"})
    review(demo_db, ASC)
    qp = api_for(app, demo_db, "qp")
    bad = qp.post(f"/api/v1/lots/{ASC}/release/certification",
                  json={"final": False, "password": PW, "pending": [{"test": "sterility", "owner": "qa",
                                                                     "due_date": due().isoformat()}]})
    assert bad.status_code == 422 and bad.json()["field"] == "owner"
    done = qp.post(f"/api/v1/lots/{ASC}/release/certification",
                   json={"final": False, "password": PW, "pending": [{"test": "sterility", "owner": "qc",
                                                                      "due_date": due().isoformat()}]})
    assert done.status_code == 201
    assert done.json()["pending_tests"] == [{"test": "sterility", "owner": "Kim Larsen", "due_date": due().isoformat(),
                                             "resolved_at": None}]


# --- demo data ----------------------------------------------------------------------------------


def test_the_release_demo_has_released_blocked_and_staged_lots(demo_db):
    with demo_db.write() as s:
        made = demo.seed_release_demo(s)
    with demo_db.read() as s:
        def state(number):
            return LotState(lots.by_number(s, number).state)
        assert [state(n) for n in made["released_asc"] + made["released_saline"]] == [LotState.released] * 4
        assert all(n.startswith("PLB-") for n in made["released_saline"])
        [blocked] = made["blocked_by_oos"]
        assert state(blocked) is LotState.qc_pending
        lot = lots.by_number(s, blocked)
        assert "Bacterial endotoxins is out of specification" in release.release_tests_in_specification(s, lot)
        assert s.scalars(select(Deviation).where(Deviation.lot_id == lot.id, Deviation.origin == "oos")).one()
        [staged] = made["initial_certified"]
        assert state(staged) is LotState.initial_certified
        [pending] = release.pending_tests(s, lots.by_number(s, staged))
        assert (pending.test_code, pending.resolved_at) == ("sterility", None)
        assert state(ASC) is LotState.qc_pending and state(PLB) is LotState.qc_pending  # still there to click through
    assert integrity.verify(demo_db).ok


# --- the work queues: queries that list, gates that decide ----------------------------------------



def listed(db, query) -> list[str]:
    with db.read() as s:
        return [lot.number for lot in s.scalars(query)]


def every_state_world(db) -> dict[str, str]:
    """Lots in every state of release: released, blocked by an OOS (with its open deviation),
    initially certified, QP-certified awaiting the sponsor, one ready with every gate holding, one
    reviewed before its results were entered (listed for the QP, blocked on its page), one whose
    review went stale, one with an unassessed excursion, one in process."""
    with db.write() as s:
        made = demo.seed_release_demo(s)
        made_more = [demo.asc_lot(s, demo.eligible_donation(s, actor(s, "operator"), user(s, "qa"), n), until=None)
                     for n in (8, 9, 10)]
        certified_lot, stale_lot, excursion_lot = (lot.number for lot in made_more)
    for number in (ASC, certified_lot, stale_lot, excursion_lot):
        enter_all(db, number)
        review(db, number)
    certify(db, certified_lot, final=True)
    review(db, PLB)  # reviewed with no results yet: QA's part is done, the tests gate still blocks
    with db.write() as s:  # a later correction of a result makes both reviews stale
        lot = lots.by_number(s, stale_lot)
        first = s.scalars(select(QcResult).where(QcResult.lot_id == lot.id)).first()
        qc.invalidate_result(s, user(s, "qa"), PW, first, "transcription error")
    with db.write() as s:
        release.record_excursion(s, actor(s, "qa"), lots.by_number(s, excursion_lot), observed_at=utcnow(),
                                 highest_temperature="-120", description="freezer door left open")
    return {"ready": ASC, "untested": PLB, "qp_certified": certified_lot, "stale": stale_lot,
            "excursion": excursion_lot, "oos": made["blocked_by_oos"][0], "staged": made["initial_certified"][0],
            "in_process": ASC_IN_PROCESS, "released": made["released_asc"][0]}


def test_the_release_queues_list_exactly_the_lots_their_gates_put_there(demo_db):
    world = every_state_world(demo_db)
    with demo_db.read() as s:
        reviewable = release.lots_in(s, *release.REVIEWABLE)
        qp = actor(s, "qp")

        def holds(lot, *names, who=None) -> bool:
            return all(getattr(release, name)(s, lot, who) is None for name in names)

        # QA: the lots whose batch-record or audit-trail review gate blocks
        assert listed(demo_db, release.awaiting_review()) == sorted(
            lot.number for lot in reviewable if not holds(lot, "batch_record_reviewed", "audit_trail_reviewed"))
        # the QP: the reviewed lots no deviation or excursion holds back, whose steps this QP did not sign
        recorded = ("batch_record_reviewed", "audit_trail_reviewed", "deviations_closed", "no_unassessed_excursion")
        for who in (qp, None):
            assert listed(demo_db, release.awaiting_certification(who)) == sorted(
                lot.number for lot in reviewable if holds(lot, *recorded) and holds(lot, "qp_independent", who=who))
        # and every lot whose every gate holds is among them
        ready = [lot.number for lot in reviewable
                 if all(g.passed for g in release.readiness(s, lot, qp, "final_certification"))]
    assert ready == [world["ready"]]
    # an excursion is recorded on the lot: QA reviews again, and assesses it
    assert set(listed(demo_db, release.awaiting_review())) == {world["stale"], world["excursion"], world["staged"]}
    assert listed(demo_db, release.awaiting_certification(qp)) == sorted([world["ready"], world["untested"]])
    assert listed(demo_db, release.awaiting_sponsor_release()) == [world["qp_certified"]]


def test_a_lot_listed_for_certification_is_still_refused_by_the_gate_that_fails(demo_db):
    world = every_state_world(demo_db)
    with demo_db.read() as s:
        assert world["untested"] in listed(demo_db, release.awaiting_certification(actor(s, "qp")))
    assert "release_tests_in_specification" in blocking(demo_db, world["untested"])
    with pytest.raises(InvalidInput, match="Release tests"):
        certify(demo_db, world["untested"], final=True)
    assert state_of(demo_db, world["untested"]) is LotState.qc_pending
