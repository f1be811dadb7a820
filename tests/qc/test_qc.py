"""QC results: entered against the lot's own specification version, judged by the one pure function,
reviewed by a second person; OOS opens a deviation at once; a retest never clears an OOS; only QA's
signed invalidation does; a post-certification OOS marks the lot and calls the kits' hook."""
from __future__ import annotations

import html
import re
import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from cellbench import audit, demo, integrity, lots, qc, users
from cellbench.clock import utcnow
from cellbench.errors import AuthenticationFailed, Conflict, Forbidden, InvalidInput, NotFound
from cellbench.models import AuditEvent, Deviation, Lot, LotState, Meaning, QcResult, Signature, Visibility
from cellbench.specifications import Verdict, load_spec_file
from cellbench.web import qc as web_qc

from .. import shortcuts
from ..conftest import PASSWORD, ROOT, actor_of
from ..test_floor import statements

YEAR = f"{utcnow():%Y}"
ASC, IN_PROCESS, PLACEBO = f"ASC-{YEAR}-0001", f"ASC-{YEAR}-0002", f"PLB-{YEAR}-0001"
ASC_SPEC = load_spec_file(ROOT / "specs" / "asc-cs10" / "v1.toml")
TESTS = {t.code: t for t in ASC_SPEC.tests}
# Donor-stage tests are evidenced by the donation's signed eligibility, not by lot results.
REQUIRED = [t.code for t in ASC_SPEC.tests if t.required_for_release and t.stage != "donor"]
# A passing result for every test of asc-cs10 v1.
PASSING = {"range": None, "negative": "negative", "not_detected": "not detected", "conforms": "conforms",
           "no_growth": "no growth"}
PASSING_NUMBERS = {"endotoxin": "1.2", "viability": "92.5", "post_thaw_viability": "85", "cell_dose": "25.4",
                   "identity_cd73": "99.1", "identity_cd90": "98.7", "identity_cd105": "97.2", "purity_cd45": "0.4",
                   "purity_cd34": "2.1", "purity_cd14": "0.3", "purity_cd19": "0.1", "purity_hla_dr": "0.6"}


@pytest.fixture
def lab(demo_world, people):
    """The demo: complete lots ASC-<year>-0001 and PLB-<year>-0001 in qc_pending, one ASC lot in process.
    Quinn (QC) enters; Kim Larsen ("qc", demo password) is the second QC analyst; Anna is QA."""
    return demo_world


def enter(db, test, value, *, who="quinn", number=ASC, **kwargs) -> QcResult:
    with db.write() as s:
        return qc.enter_result(s, actor_of(db, who), lots.by_number(s, number), test, value, **kwargs)


def review(db, result_id, *, who="qc", password=demo.DEMO_PASSWORD, number=ASC) -> Signature:
    with db.write() as s:
        result = qc.result_of_lot(s, lots.by_number(s, number), result_id)
        return qc.review_result(s, users.by_username(s, who), password, result)


def invalidate(db, result_id, reason, *, who="anna", password=PASSWORD, number=ASC) -> Signature:
    with db.write() as s:
        result = qc.result_of_lot(s, lots.by_number(s, number), result_id)
        return qc.invalidate_result(s, users.by_username(s, who), password, result, reason)


def status(db, number=ASC) -> dict[str, qc.TestStatus]:
    with db.read() as s:
        return {st.test.code: st for st in qc.test_status(s, lots.by_number(s, number))}


def problems(db, number=ASC) -> list[str]:
    with db.read() as s:
        return qc.release_test_problems(s, lots.by_number(s, number))


def result_count(db) -> int:
    with db.read() as s:
        return len(s.scalars(select(QcResult.id)).all())


def set_state(db, number, state: LotState, before: LotState | None = None) -> None:
    """release.py is not there yet: put the lot where a certification would have."""
    with db.write() as s:
        s.execute(update(Lot).where(Lot.number == number)
                  .values(state=state.value, state_before_hold=before.value if before else None))
        shortcuts.lot_state_set(s, number, state)


def passing(code: str) -> str:
    return PASSING_NUMBERS.get(code) or PASSING[TESTS[code].acceptance.kind]


# --- entering and judging ---------------------------------------------------------------------


def test_a_number_and_a_word_are_judged_stored_as_entered_with_the_unit_and_audited_unblinded(lab):
    viability = enter(lab, "viability", " 92.5 ", sample_id="QC-V1")
    sterility = enter(lab, "sterility", "No growth")
    assert (viability.value, viability.unit, viability.verdict, viability.sample_id) == ("92.5", "%", "pass", "QC-V1")
    assert (sterility.value, sterility.unit, sterility.verdict) == ("No growth", None, "pass")
    assert viability.entered_by_name == "Quinn QC" and viability.retest_of is None and viability.deviation_id is None
    with lab.read() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.entity_type == "qc_result",
                                                   AuditEvent.entity_id == str(viability.id))).one()
        assert event.action == "qc result entered" and event.field == "viability"
        assert '"verdict":"pass"' in event.new_value.replace(" ", "") and ASC in event.new_value
        assert Visibility(event.visibility) is Visibility.unblinded
        monitor = users.actor(s, users.by_username(s, "mette"))
        assert audit.history(s, monitor, "qc_result", str(viability.id)) == []  # blinded roles never see QC data
    assert integrity.verify(lab).ok


@pytest.mark.parametrize("code,value,verdict", [
    ("viability", "80", "oos"), ("viability", "80.01", "pass"), ("viability", "100", "pass"),  # > 80 %
    ("endotoxin", "70", "oos"), ("endotoxin", "69.99", "pass"), ("endotoxin", "0", "pass"),  # < 70 IU/mL
    ("cell_dose", "19.99", "oos"), ("cell_dose", "20", "pass"), ("cell_dose", "30", "pass"),  # 20 – 30
    ("cell_dose", "30.01", "oos"), ("purity_cd45", "2", "pass"), ("purity_cd45", "2.01", "oos"),  # ≤ 2 %
    ("identity_cd73", "90", "pass"), ("identity_cd73", "8.95e1", "oos"), ("purity_cd34", "+5.0", "pass"),
    ("sterility", "no growth", "pass"), ("sterility", "GROWTH", "oos"),
    ("mycoplasma", "Not detected", "pass"), ("mycoplasma", "detected", "oos"),
    ("donor_anti_hiv", "negative", "pass"), ("donor_anti_hiv", "positive", "oos"),
    ("appearance", "conforms", "pass"), ("appearance", "does not conform", "oos"),
])
def test_the_acceptance_criterion_decides_pass_or_oos_at_its_boundaries(code, value, verdict):
    assert qc.judge(TESTS[code], value) == (value, Verdict(verdict))


@pytest.mark.parametrize("code,value,says", [
    ("viability", "85,5", "decimal point, not a comma"),
    ("viability", "85.5 %", "Type the number only: the unit (%)"),
    ("endotoxin", "12 IU/mL", "the unit (IU/mL)"),
    ("endotoxin", "< 0.5", "not a comparison"),
    ("viability", "high", "needs a number in %"),
    ("viability", "nan", "needs a number"),
    ("viability", "1e999", "too large"),
    ("viability", "   ", "Enter the result of Viability at release"),
    ("sterility", "negative", "expected 'no growth' or 'growth'"),
    ("mycoplasma", "92", "expected 'not detected' or 'detected'"),
])
def test_a_result_that_cannot_be_read_is_refused_naming_the_value(code, value, says):
    with pytest.raises(InvalidInput) as refused:
        qc.judge(TESTS[code], value)
    assert refused.value.field == "value" and says in refused.value.message


def test_a_refused_result_changes_nothing(lab):
    for code, value in (("viability", "85,5"), ("endotoxin", "12 IU/mL"), ("sterility", "maybe")):
        with pytest.raises(InvalidInput) as refused:
            enter(lab, code, value)
        assert refused.value.field == "value"
    assert result_count(lab) == 0
    with lab.read() as s:
        assert s.scalars(select(AuditEvent.seq).where(AuditEvent.entity_type == "qc_result")).first() is None


def test_numbers_from_an_instrument_are_read_and_true_or_false_are_not(lab):
    assert enter(lab, "viability", 91.25).value == "91.25"
    assert enter(lab, "endotoxin", 3).value == "3"
    with pytest.raises(InvalidInput) as refused:
        enter(lab, "cell_dose", True)
    assert refused.value.field == "value"


def test_only_release_tests_of_the_lots_own_specification_version_are_entered(lab):
    with pytest.raises(InvalidInput) as unknown:
        enter(lab, "ph", "7.2")
    assert unknown.value.field == "test_code" and "asc-cs10 v2" in unknown.value.message
    with pytest.raises(InvalidInput) as not_placebo:
        enter(lab, "viability", "92", number=PLACEBO)  # the saline placebo has no viability test
    assert not_placebo.value.field == "test_code"
    assert enter(lab, "appearance", "conforms", number=PLACEBO).verdict == "pass"
    with pytest.raises(InvalidInput) as long_sample:
        enter(lab, "viability", "92", sample_id="S" * 65)
    assert long_sample.value.field == "sample_id"
    assert result_count(lab) == 1


def test_only_a_qc_analyst_enters_results(lab):
    for who in ("olivia", "anna", "peter"):
        with pytest.raises(Forbidden):
            enter(lab, "viability", "92", who=who)
    assert result_count(lab) == 0


def test_results_are_refused_before_the_batch_record_is_complete_and_after_rejection(lab):
    with pytest.raises(InvalidInput) as early:
        enter(lab, "viability", "92", number=IN_PROCESS)
    assert early.value.field == "lot" and "in process" in early.value.message
    set_state(lab, ASC, LotState.rejected)
    with pytest.raises(InvalidInput):
        enter(lab, "viability", "92")
    set_state(lab, ASC, LotState.on_hold, before=LotState.qc_pending)  # a held lot still gets its results
    assert enter(lab, "viability", "92").verdict == "pass"


def test_an_entry_makes_a_page_showing_the_lot_before_it_stale(lab):
    with lab.read() as s:
        seen = lots.by_number(s, ASC).row_version
    enter(lab, "viability", "92", seen_version=seen)
    with pytest.raises(Conflict) as stale:
        enter(lab, "endotoxin", "2", seen_version=seen)
    assert stale.value.field == "lot_version"


# --- OOS --------------------------------------------------------------------------------------


def test_an_oos_result_opens_a_major_investigation_deviation_at_once(lab):
    result = enter(lab, "endotoxin", "75", sample_id="QC-E1")
    assert result.verdict == "oos" and result.deviation_id is not None
    with lab.read() as s:
        deviation = s.get(Deviation, result.deviation_id)
        lot = lots.by_number(s, ASC)
        assert (deviation.origin, deviation.severity, deviation.lot_id, deviation.state) == ("oos", "major", lot.id,
                                                                                             "open")
        assert "Bacterial endotoxins" in deviation.description and "75 IU/mL" in deviation.description
        assert "accepted: less than 70 IU/mL" in deviation.description and "(endotoxin)" not in deviation.description
        assert "ASC" not in deviation.blinded_summary and "endotoxin" not in deviation.blinded_summary.lower()
        assert LotState(lot.state) is LotState.qc_pending  # QA and the QP decide, not the result
    assert status(lab)["endotoxin"].state == "oos"


def test_a_second_result_for_a_test_is_refused_unless_it_is_a_retest(lab):
    first = enter(lab, "viability", "92")
    with pytest.raises(Conflict) as again:
        enter(lab, "viability", "93")
    assert again.value.field == "retest_of" and f"#{first.id}" in again.value.message
    assert result_count(lab) == 1


def test_a_retest_keeps_the_original_and_does_not_clear_the_oos(lab):
    original = enter(lab, "endotoxin", "75")
    retest = enter(lab, "endotoxin", "4", retest_of=original.id, sample_id="QC-E2")
    assert retest.retest_of == original.id and retest.verdict == "pass" and retest.deviation_id is None
    review(lab, original.id)
    review(lab, retest.id)
    with lab.read() as s:
        lot = lots.by_number(s, ASC)
        assert [r.id for r in qc.results_of(s, lot, "endotoxin")] == [original.id, retest.id]  # nothing overwritten
        assert qc.current_results(s, lot)["endotoxin"].id == retest.id
    endotoxin = status(lab)["endotoxin"]
    assert endotoxin.state == "oos" and endotoxin.result.id == retest.id
    assert [r.id for r in endotoxin.standing_oos] == [original.id]
    assert f"Bacterial endotoxins is out of specification (result #{original.id}); a retest cannot clear that" in \
        " ".join(problems(lab))
    with pytest.raises(InvalidInput) as stale:  # retests go down the chain, one at a time
        enter(lab, "endotoxin", "3", retest_of=original.id)
    assert stale.value.field == "retest_of" and f"#{retest.id}" in stale.value.message
    with pytest.raises(InvalidInput):
        enter(lab, "viability", "92", retest_of=original.id)  # a retest is of the same test
    assert integrity.verify(lab).ok


def test_an_oos_retest_opens_its_own_investigation(lab):
    original = enter(lab, "mycoplasma", "detected")
    retest = enter(lab, "mycoplasma", "detected", retest_of=original.id)
    assert retest.deviation_id and retest.deviation_id != original.deviation_id
    assert [r.id for r in status(lab)["mycoplasma"].standing_oos] == [original.id, retest.id]


def test_invalidating_the_oos_original_with_qas_signature_lets_the_reviewed_retest_count(lab):
    original = enter(lab, "endotoxin", "75")
    retest = enter(lab, "endotoxin", "4", retest_of=original.id)
    review(lab, retest.id)
    with pytest.raises(InvalidInput) as no_reason:
        invalidate(lab, original.id, "  ")
    assert no_reason.value.field == "reason"
    for who in ("quinn", "qc", "peter"):
        with pytest.raises(Forbidden):
            invalidate(lab, original.id, "lab error", who=who,
                       password=demo.DEMO_PASSWORD if who == "qc" else PASSWORD)
    with pytest.raises(AuthenticationFailed):
        invalidate(lab, original.id, "lab error", password="wrong password")
    assert status(lab)["endotoxin"].state == "oos"
    sig = invalidate(lab, original.id, "Investigation DEV: LAL reagent lot contaminated; laboratory error confirmed.")
    assert Meaning(sig.meaning) is Meaning.rejected and sig.signer_name == "Anna QA"
    assert sig.entity_type == "qc_result_invalidation" and "LAL reagent lot contaminated" in sig.content
    with lab.read() as s:
        kept = s.get(QcResult, original.id)
        assert kept.value == "75" and kept.verdict == "oos"  # the row stays, with its reason
        assert kept.invalidation_reason.startswith("Investigation DEV") and kept.invalidation_signature_id == sig.id
    endotoxin = status(lab)["endotoxin"]
    assert endotoxin.state == "pass" and endotoxin.standing_oos == ()
    with pytest.raises(Conflict):
        invalidate(lab, original.id, "again")
    assert integrity.verify(lab).ok


def test_after_every_result_is_invalidated_a_new_result_is_entered_not_a_retest(lab):
    first = enter(lab, "cell_dose", "25")
    invalidate(lab, first.id, "sample thawed twice before counting")
    assert status(lab)["cell_dose"].state == "invalidated_only"
    assert "Viable cells per vial has no valid result: every result was invalidated." in problems(lab)
    with pytest.raises(InvalidInput) as retest:
        enter(lab, "cell_dose", "24", retest_of=first.id)
    assert retest.value.field == "retest_of" and "invalidated" in retest.value.message
    second = enter(lab, "cell_dose", "24")
    assert second.retest_of is None and status(lab)["cell_dose"].result.id == second.id


def test_invalidating_a_retest_makes_its_original_current_again(lab):
    original = enter(lab, "viability", "92")
    retest = enter(lab, "viability", "91", retest_of=original.id)
    invalidate(lab, retest.id, "wrong vial counted")
    assert status(lab)["viability"].result.id == original.id
    assert enter(lab, "viability", "90", retest_of=original.id).retest_of == original.id


# --- review -----------------------------------------------------------------------------------


def test_a_second_person_reviews_a_result_and_nobody_reviews_their_own(lab):
    result = enter(lab, "viability", "92")
    assert status(lab)["viability"].state == "unreviewed"
    with pytest.raises(Forbidden) as own:
        review(lab, result.id, who="quinn", password=PASSWORD)
    assert "own" in own.value.message
    with pytest.raises(Forbidden):
        review(lab, result.id, who="olivia", password=PASSWORD)  # operators do not review QC
    with pytest.raises(AuthenticationFailed):
        review(lab, result.id, password="not it")
    sig = review(lab, result.id)
    assert Meaning(sig.meaning) is Meaning.reviewed and sig.signer_name == "Kim Larsen"
    assert '"value":"92"' in sig.content and '"verdict":"pass"' in sig.content and ASC in sig.content
    with pytest.raises(Conflict) as twice:
        review(lab, result.id, who="anna", password=PASSWORD)
    assert "already reviewed by Kim Larsen" in twice.value.message
    assert status(lab)["viability"].state == "pass"


def test_an_invalidated_result_is_not_reviewed(lab):
    result = enter(lab, "viability", "92")
    invalidate(lab, result.id, "entered against the wrong lot")
    with pytest.raises(Conflict):
        review(lab, result.id)


def test_a_result_is_found_only_through_its_own_lot(lab):
    placebo = enter(lab, "appearance", "conforms", number=PLACEBO)
    with lab.read() as s:
        with pytest.raises(NotFound):
            qc.result_of_lot(s, lots.by_number(s, ASC), placebo.id)
        with pytest.raises(NotFound):
            qc.result_of_lot(s, lots.by_number(s, ASC), "1; drop")


# --- status for the release gates -------------------------------------------------------------


def test_every_required_test_is_missing_until_a_reviewed_passing_result_is_in(lab):
    states = status(lab)
    assert list(states) == [t.code for t in ASC_SPEC.tests] and {s.state for s in states.values()} == {"missing"}
    assert len(problems(lab)) == len(REQUIRED)
    assert "Viability at release has no result yet." in problems(lab)
    assert not any("post-thaw" in p.lower() or "Label and identity" in p for p in problems(lab))  # not required
    entered = {code: enter(lab, code, passing(code)) for code in REQUIRED}
    assert {status(lab)[c].state for c in REQUIRED} == {"unreviewed"}
    assert f"Viability at release: result #{entered['viability'].id} awaits review by a second person." in problems(lab)
    for result in entered.values():
        review(lab, result.id)
    assert problems(lab) == []
    assert {status(lab)[c].state for c in REQUIRED} == {"pass"}
    assert status(lab)["post_thaw_viability"].state == "missing"
    with lab.read() as s:
        assert set(qc.current_results(s, lots.by_number(s, ASC))) == set(REQUIRED)
    assert integrity.verify(lab).ok


def test_an_unreviewed_oos_counts_as_oos_at_once(lab):
    enter(lab, "sterility", "growth")
    assert status(lab)["sterility"].state == "oos"
    assert any(p.startswith("Sterility (bacteria and fungi) is out of specification") for p in problems(lab))


def test_the_results_snapshot_holds_the_immutable_fields_only(lab):
    a = enter(lab, "endotoxin", "75")
    b = enter(lab, "endotoxin", "4", retest_of=a.id)
    c = enter(lab, "viability", "92")
    with lab.read() as s:
        before = lots.results_snapshot(s, lots.by_number(s, ASC), b.id)
    assert before == [[a.id, "endotoxin", "75", "IU/mL", "oos", None], [b.id, "endotoxin", "4", "IU/mL", "pass", a.id]]
    review(lab, b.id)
    invalidate(lab, a.id, "laboratory error")
    with lab.read() as s:
        assert lots.results_snapshot(s, lots.by_number(s, ASC), b.id) == before  # what a decision stood on stays
        assert [row[0] for row in lots.results_snapshot(s, lots.by_number(s, ASC), c.id)] == [a.id, b.id, c.id]


def test_verify_notices_an_invalidation_reason_changed_behind_qas_back(lab):
    result = enter(lab, "viability", "70")
    invalidate(lab, result.id, "counted the wrong vial")
    assert integrity.verify(lab).ok
    with lab.write() as s:
        s.execute(update(QcResult).where(QcResult.id == result.id).values(invalidation_reason="no reason"))
    report = integrity.verify(lab)
    assert not report.ok and any("qc_result_invalidation" in str(p) for p in report.problems)


# --- after certification -----------------------------------------------------------------------


@pytest.fixture
def hook(monkeypatch):
    calls = []
    monkeypatch.setattr(qc.investigations, "POST_CERTIFICATION_OOS_HOOKS", [lambda s, actor, lot, result: calls.append(
        (actor.name, lot.number, result.test_code, LotState(lot.state)))])
    return calls


@pytest.mark.parametrize("state", [LotState.initial_certified, LotState.qp_certified, LotState.released])
def test_an_oos_after_certification_opens_a_deviation_marks_the_lot_and_calls_the_hook(lab, hook, state):
    set_state(lab, ASC, state)
    result = enter(lab, "sterility", "growth")
    assert hook == [("Quinn QC", ASC, "sterility", state)]
    with lab.read() as s:
        lot = lots.by_number(s, ASC)
        assert LotState(lot.state) is state  # unchanged: QA and the QP decide
        assert [r.id for r in qc.post_certification_oos(s, lot)] == [result.id]
        mark = s.scalars(select(AuditEvent).where(AuditEvent.action == qc.POST_CERTIFICATION_OOS)).one()
        assert (mark.entity_type, mark.entity_id, Visibility(mark.visibility)) == ("lot", ASC, Visibility.unblinded)
        deviation = s.get(Deviation, result.deviation_id)
        assert deviation.origin == "oos" and "quarantined without breaking the blind" in deviation.description
    assert integrity.verify(lab).ok


def test_a_passing_result_after_certification_and_an_oos_before_it_call_no_hook(lab, hook):
    enter(lab, "endotoxin", "75")  # qc_pending: a deviation, no mark
    set_state(lab, ASC, LotState.qp_certified)
    enter(lab, "viability", "92")
    assert hook == []
    with lab.read() as s:
        assert qc.post_certification_oos(s, lots.by_number(s, ASC)) == []


def test_a_held_certified_lot_is_still_certified_for_a_late_oos(lab, hook):
    set_state(lab, ASC, LotState.on_hold, before=LotState.qp_certified)
    enter(lab, "mycoplasma", "detected")
    assert [call[2] for call in hook] == ["mycoplasma"]


def test_a_failing_hook_leaves_nothing_half_done(lab, monkeypatch):
    def broken(*_):
        raise Conflict("kit quarantine failed")

    monkeypatch.setattr(qc.investigations, "POST_CERTIFICATION_OOS_HOOKS", [broken])
    set_state(lab, ASC, LotState.released)
    with pytest.raises(Conflict):
        enter(lab, "sterility", "growth")
    assert result_count(lab) == 0
    with lab.read() as s:
        assert s.scalars(select(Deviation.id).where(Deviation.origin == "oos")).first() is None


# --- concurrency ------------------------------------------------------------------------------


def test_two_analysts_entering_the_same_test_at_once_get_one_result_and_one_conflict(lab):
    start, outcomes = threading.Barrier(2), []
    actors = [actor_of(lab, "quinn"), actor_of(lab, "qc")]

    def worker(actor) -> None:
        start.wait()
        try:
            with lab.write() as s:
                qc.enter_result(s, actor, lots.by_number(s, ASC), "viability", "92")
            outcomes.append("saved")
        except (Conflict, InvalidInput) as error:
            outcomes.append(type(error).__name__)

    threads = [threading.Thread(target=worker, args=(a,)) for a in actors]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["Conflict", "saved"] and result_count(lab) == 1
    assert integrity.verify(lab).ok


# --- pages ------------------------------------------------------------------------------------


def test_the_qc_page_shows_every_release_test_with_its_method_and_criterion_in_plain_words(lab, as_):
    page = as_("quinn").get(f"/lots/{ASC}/qc")
    assert page.status_code == 200
    for test in ASC_SPEC.tests:
        assert test.name.replace("'", "&#39;") in page.text
    assert "more than 80 %" in page.text and "less than 70 IU/mL" in page.text
    assert "20 to 30 × 10⁶ viable cells/vial" in page.text and "10^6" not in page.text
    assert "Ph. Eur. 2.6.14 method D" in page.text and f'href="/lots/{ASC}"' in page.text
    lot_stage = [t for t in ASC_SPEC.tests if t.stage != "donor"]
    # One grid, one form: an input for every lot-stage test, none for the donor's.
    assert page.text.count(f'action="/lots/{ASC}/qc/grid"') == 1
    assert all(f'name="value:{t.code}"' in page.text for t in lot_stage)
    assert "donor_" not in page.text
    assert as_("frida").get(f"/lots/{ASC}/qc").status_code == 403  # blinded pharmacist
    assert '/qc/grid"' not in as_("anna").get(f"/lots/{ASC}/qc").text  # QA does not enter results


def test_a_result_is_entered_reviewed_and_invalidated_through_the_pages(lab, as_):
    quinn, anna = as_("quinn"), as_("anna")
    saved = quinn.submit(f"/lots/{ASC}/qc/results", {"test_code": "endotoxin", "value": "82", "sample_id": "QC-E1"})
    assert saved.status_code == 303 and "#test-endotoxin" in saved.headers["location"]
    assert "investigation deviation" in saved.headers["location"].replace("%20", " ")
    page = quinn.get(f"/lots/{ASC}/qc").text
    assert "82 IU/mL" in page and '<span class="tag red">out of specification</span>' in page
    assert f"DEV-{YEAR}-" in page
    result_id = int(re.search(r'name="result" value="(\d+)"', anna.get(f"/lots/{ASC}/qc").text).group(1))
    assert 'name="result"' not in page  # Quinn entered it: no review form for her
    reviewed = anna.submit(f"/lots/{ASC}/qc/review", {"result": [str(result_id)], "password": PASSWORD})
    assert reviewed.status_code == 303
    assert "Anna QA" in anna.get(f"/lots/{ASC}/qc").text and "reviewed" in anna.get(f"/lots/{ASC}/qc").text
    no_reason = anna.submit(f"/lots/{ASC}/qc/results/{result_id}/invalidation", {"password": PASSWORD, "reason": ""})
    assert no_reason.status_code == 422 and "A reason is required" in no_reason.text
    done = anna.submit(f"/lots/{ASC}/qc/results/{result_id}/invalidation",
                       {"password": PASSWORD, "reason": "Endotoxin standard curve failed"})
    assert done.status_code == 303
    page = anna.get(f"/lots/{ASC}/qc").text
    assert "invalidated" in page and "Endotoxin standard curve failed" in page and "rejected" in page
    retest = quinn.submit(f"/lots/{ASC}/qc/results", {"test_code": "endotoxin", "value": "2"})
    assert retest.status_code == 303
    assert status(lab)["endotoxin"].state == "unreviewed"


def test_bad_input_on_the_page_names_the_field_and_keeps_what_was_typed(lab, as_):
    quinn = as_("quinn")
    bad = quinn.submit(f"/lots/{ASC}/qc/results", {"test_code": "viability", "value": "85,5", "sample_id": "QC-9"})
    assert bad.status_code == 422 and "decimal point, not a comma" in bad.text
    assert 'value="85,5"' in bad.text and 'value="QC-9"' in bad.text and 'aria-invalid="true"' in bad.text
    assert result_count(lab) == 0
    retest = quinn.submit(f"/lots/{ASC}/qc/results", {"test_code": "viability", "value": "91", "retest_of": "x"})
    assert retest.status_code == 404 and "has no QC result &#39;x&#39;" in retest.text
    forbidden = as_("anna").submit(f"/lots/{ASC}/qc/results", {"test_code": "viability", "value": "91"})
    assert forbidden.status_code == 403 and "qc_analyst" in forbidden.text
    no_csrf = quinn.post(f"/lots/{ASC}/qc/results", data={"test_code": "viability", "value": "91"},
                         follow_redirects=False)
    assert no_csrf.status_code == 403 and result_count(lab) == 0


def test_the_work_queues_show_lots_awaiting_results_and_results_awaiting_review(lab, as_):
    home = as_("quinn").get("/").text
    # Two lots (ASC and placebo) wait for results: the line opens the list of what waits.
    assert "<strong>2</strong> lots with QC results to enter" in home and 'href="/qc"' in home
    listing = as_("quinn").get("/qc").text
    assert f'href="/lots/{ASC}/qc#results"' in listing and f'href="/lots/{PLACEBO}/qc#results"' in listing
    assert IN_PROCESS not in listing
    enter(lab, "viability", "92")
    anna_home = as_("anna").get("/").text
    assert "<strong>1</strong> set of QC results for you to review" in anna_home
    assert f'href="/lots/{ASC}/qc#review"' in anna_home  # one set: the line opens it
    assert "to review" not in as_("quinn").get("/").text  # her own result is not hers to review
    operator = as_("olivia").get("/").text
    assert "QC results to enter" not in operator and "to review" not in operator


def test_the_lots_awaiting_results_are_counted_as_the_test_status_counts_them_in_a_few_statements(lab):
    """The QC analyst's home asks on every visit which lots wait for results: the database chooses
    them (one statement for the specification versions of the waiting lots, one read of each, one
    for the lots, one for the tests they have a valid result for), however many lots wait; the
    count per lot is test_status's (no result, or every result invalidated)."""
    def by_status() -> dict[str, int]:
        with lab.read() as s:
            found = {}
            for lot in s.scalars(select(Lot).where(Lot.state.in_([st.value for st in qc.AWAITING_RESULTS]))):
                missing = sum(1 for st in qc.test_status(s, lot) if qc.needs_lot_result(st.test)
                              and st.state in (qc.MISSING, qc.INVALIDATED_ONLY))
                if missing:
                    found[lot.number] = missing
            return found

    def awaiting() -> dict[str, int]:
        with lab.read() as s:
            return {lot.number: n for lot, n in qc.lots_awaiting_results(s)}

    assert awaiting() == by_status() and ASC in awaiting()
    before = awaiting()[ASC]
    first = enter(lab, "cell_dose", "25")
    assert awaiting()[ASC] == before - 1 == by_status()[ASC]
    invalidate(lab, first.id, "sample thawed twice before counting")
    assert awaiting()[ASC] == before == by_status()[ASC]  # every result invalidated: no valid result
    with lab.read() as s:
        versions = {lot.spec_version_id for lot, _ in qc.lots_awaiting_results(s)}
    with lab.read() as s:
        assert len(statements(lab, lambda: qc.lots_awaiting_results(s))) <= 3 + 2 * len(versions)


# --- API --------------------------------------------------------------------------------------


def api_for(app, db, username):
    with db.write() as s:
        token = users.create_token(s, users.cli_actor(), users.by_username(s, username), "lims")
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def test_a_lims_enters_a_result(lab, app):
    lims = api_for(app, lab, "quinn")
    created = lims.post(f"/api/v1/lots/{ASC}/qc-results", json={"test": "viability", "value": 78.5,
                                                              "sample_id": "QC-V1"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["value"], body["unit"], body["verdict"], body["entered_by"]) == ("78.5", "%", "oos", "Quinn QC")
    assert body["deviation"].startswith(f"DEV-{YEAR}-") and body["review"] is None and body["sample_id"] == "QC-V1"
    retest = lims.post(f"/api/v1/lots/{ASC}/qc-results", json={"test": "viability", "value": "88",
                                                             "retest_of": body["id"]})
    assert retest.status_code == 201 and retest.json()["retest_of"] == body["id"]
    again = lims.post(f"/api/v1/lots/{ASC}/qc-results", json={"test": "viability", "value": "89"})
    assert again.status_code == 409 and again.json()["field"] == "retest_of"
    bad = lims.post(f"/api/v1/lots/{ASC}/qc-results", json={"test": "viability", "value": "89 %",
                                                          "retest_of": retest.json()["id"]})
    assert bad.status_code == 422 and bad.json()["field"] == "value"
    boolean = lims.post(f"/api/v1/lots/{ASC}/qc-results", json={"test": "viability", "value": True})
    assert boolean.status_code == 422 and boolean.json()["field"].startswith("value")
    assert api_for(app, lab, "anna").post(f"/api/v1/lots/{ASC}/qc-results",
                                          json={"test": "viability", "value": "90"}).status_code == 403


def test_a_lims_lists_reviews_and_invalidates_results(lab, app):
    lims, anna = api_for(app, lab, "quinn"), api_for(app, lab, "anna")
    base = f"/api/v1/lots/{ASC}/qc-results"
    original = enter(lab, "viability", "78.5", sample_id="QC-V1")
    retest = enter(lab, "viability", "88", retest_of=original.id)
    assert lims.post(f"{base}/{retest.id}/review", json={"password": PASSWORD}).status_code == 403  # her own
    reviewed = anna.post(f"{base}/{retest.id}/review", json={"password": PASSWORD})
    assert reviewed.status_code == 200 and reviewed.json()["review"]["signer"] == "Anna QA"
    assert reviewed.json()["review"]["meaning"] == "reviewed"
    listing = lims.get(base).json()
    assert listing["lot"] == ASC and listing["state"] == "qc_pending"
    viability = next(t for t in listing["tests"] if t["test"] == "viability")
    assert viability["state"] == "oos" and viability["current_result"] == retest.id
    assert viability["acceptance"] == "> 80 %" and viability["unit"] == "%"
    first = next(r for r in listing["results"] if r["id"] == original.id)
    assert (first["value"], first["verdict"], first["sample_id"]) == ("78.5", "oos", "QC-V1")
    assert first["deviation"].startswith(f"DEV-{YEAR}-")
    assert any(p.startswith("Viability at release is out of specification") for p in listing["release_problems"])
    not_qa = lims.post(f"{base}/{original.id}/invalidation", json={"password": PASSWORD, "reason": "x"})
    assert not_qa.status_code == 403
    no_reason = anna.post(f"{base}/{original.id}/invalidation", json={"password": PASSWORD, "reason": " "})
    assert no_reason.status_code == 422 and no_reason.json()["field"] == "reason"
    gone = anna.post(f"{base}/{original.id}/invalidation", json={"password": PASSWORD, "reason": "Counter not zeroed"})
    assert gone.status_code == 200 and gone.json()["invalidation"]["meaning"] == "rejected"
    assert gone.json()["invalidation_reason"] == "Counter not zeroed" and gone.json()["invalidated_at"]
    after = next(t for t in lims.get(base).json()["tests"] if t["test"] == "viability")
    assert after["state"] == "pass"
    assert anna.post(f"{base}/999999/review", json={"password": PASSWORD}).status_code == 404
    assert anna.post(f"/api/v1/lots/{PLACEBO}/qc-results/{retest.id}/review",
                     json={"password": PASSWORD}).status_code == 404  # not a result of that lot
    assert api_for(app, lab, "frida").get(base).status_code == 403
    assert integrity.verify(lab).ok


def test_the_qc_line_and_list_show_the_lots_a_recount_finds_in_pages_with_their_exact_count(lab, as_, monkeypatch):
    """/qc shows a page of the lots with results to enter and how many there are in all; its pages
    together hold exactly the lots (and numbers of tests) that test_status finds missing."""
    def recount() -> dict[str, int]:
        with lab.read() as s:
            found = {}
            for lot in s.scalars(select(Lot).where(Lot.state.in_([st.value for st in qc.AWAITING_RESULTS]))):
                missing = sum(1 for st in qc.test_status(s, lot) if qc.needs_lot_result(st.test)
                              and st.state in (qc.MISSING, qc.INVALIDATED_ONLY))
                if missing:
                    found[lot.number] = missing
            return found

    expected = recount()
    monkeypatch.setattr(web_qc, "SHOWN", 1)  # a page of one lot: the pager is walked
    shown: dict[str, int] = {}
    url: str | None = "/qc"
    while url:
        page = as_("quinn").get(url).text
        assert f"Lots with QC results to enter ({len(expected)})" in page
        shown.update({number: int(n) for number, n in re.findall(
            r'href="/lots/([^/"]+)/qc#results" class="nowrap">[^<]+</a></td><td>(\d+)</td>', page)})
        found = re.search(r'href="([^"]+)" rel="next"', page)
        url = html.unescape(found.group(1)) if found else None
    assert shown == expected and len(expected) == 2
    home = as_("quinn").get("/").text
    assert f"<strong>{len(expected)}</strong> lots with QC results to enter" in home
