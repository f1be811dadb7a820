"""QC in sets: the lot's results grid saves every typed result at once (each its own audited record),
one bad row saves nothing and names its test, donor tests are shown and never offered, and a second
person reviews a set under ONE signature that covers every member and that `cellbench verify` checks.
The issue's target: 20 results entered in at most 3 page loads and reviewed with 1 signature."""
from __future__ import annotations

import json
import re
import threading

import pytest
from sqlalchemy import func, select, update

from cellbench import demo, integrity, lots, qc, users
from cellbench.errors import AuthenticationFailed, Conflict, Forbidden, InvalidInput
from cellbench.models import AuditEvent, Deviation, Donation, QcResult, QcReviewSet, QcReviewSetMember, Signature
from cellbench.specifications import load_spec_file, unit_text

from ..conftest import PASSWORD, ROOT, actor_of, sign_in
from ..demo_pages import visible_text
from .test_qc import ASC, PASSING, PASSING_NUMBERS, result_count

ASC_SPEC = load_spec_file(ROOT / "specs" / "asc-cs10" / "v1.toml")
LOT_STAGE = [t for t in ASC_SPEC.tests if t.stage != "donor"]
DONOR_STAGE = [t for t in ASC_SPEC.tests if t.stage == "donor"]
# A passing value for every lot-stage test of asc-cs10 v1, as the grid posts it.
GRID = {f"value:{t.code}": PASSING_NUMBERS.get(t.code) or PASSING[t.acceptance.kind] for t in LOT_STAGE}


@pytest.fixture
def lab(demo_world, people):
    """The demo: ASC-<year>-0001 complete and awaiting QC. Quinn (QC) enters; Kim Larsen ("qc", the
    demo password) is the second QC analyst who reviews; Anna is QA."""
    return demo_world


def count(db, model, *where) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def events(db, action: str) -> list[AuditEvent]:
    with db.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def enter_all(db, who="quinn") -> list[int]:
    rows = [qc.Row(key.removeprefix("value:"), value) for key, value in GRID.items()]
    with db.write() as s:
        return [r.id for r in qc.enter_results(s, actor_of(db, who), lots.by_number(s, ASC), rows)]


def review_set(db, ids, who="qc", password=demo.DEMO_PASSWORD) -> Signature:
    with db.write() as s:
        return qc.review_results(s, users.by_username(s, who), password, lots.by_number(s, ASC), ids)


# --- units -------------------------------------------------------------------------------------


def test_units_read_as_a_person_writes_them():
    assert unit_text("10^6 cells/mL") == "× 10⁶ cells/mL"
    assert unit_text("10^6 viable cells/vial") == "× 10⁶ viable cells/vial"
    assert unit_text("× 10^6 cells") == "× 10⁶ cells"  # a sign already written is not doubled
    assert unit_text("%") == "%" and unit_text("IU/mL") == "IU/mL" and unit_text(None) == ""


# --- the grid ----------------------------------------------------------------------------------


def test_the_grid_saves_every_typed_result_at_once_each_with_its_audit_event(lab, as_):
    quinn = as_("quinn")
    saved = quinn.submit(f"/lots/{ASC}/qc/grid", GRID)
    assert saved.status_code == 303, saved.text
    assert "20 results saved" in saved.headers["location"].replace("%20", " ")
    assert result_count(lab) == len(LOT_STAGE) == 20
    entered = events(lab, "qc result entered")
    assert len(entered) == 20 and {e.field for e in entered} == {t.code for t in LOT_STAGE}
    assert {e.user_name for e in entered} == {"Quinn QC"}
    page = quinn.get(f"/lots/{ASC}/qc").text
    # Entered results show as entered, with who and when in site time, and are not offered again.
    assert 'name="value:' not in page and '/qc/grid"' not in page
    assert page.count("entered by Quinn QC") >= 20
    shown = visible_text(page)
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d [+-]\d\d:\d\d", shown) and not re.search(r"\d{4}-\d\d-\d\dT", shown)
    assert "25.4 × 10⁶ viable cells/vial" in page


def test_empty_rows_are_left_for_later_and_an_all_empty_grid_is_refused(lab, as_):
    quinn = as_("quinn")
    nothing = quinn.submit(f"/lots/{ASC}/qc/grid", dict.fromkeys(GRID, ""))
    assert nothing.status_code == 422 and "every row of the grid is empty" in nothing.text
    some = quinn.submit(f"/lots/{ASC}/qc/grid", {**dict.fromkeys(GRID, ""), "value:viability": "91.5",
                                                 "value:sterility": "no growth", "sample:viability": "QC-V1"})
    assert some.status_code == 303 and result_count(lab) == 2
    page = quinn.get(f"/lots/{ASC}/qc").text
    assert 'name="value:viability"' not in page and 'name="value:endotoxin"' in page  # the rest still offered
    with lab.read() as s:
        assert s.scalars(select(QcResult.sample_id).where(QcResult.test_code == "viability")).one() == "QC-V1"


def test_one_bad_row_saves_nothing_names_its_test_and_keeps_everything_typed(lab, as_):
    quinn = as_("quinn")
    typed = {**GRID, "value:viability": "85,5", "sample:endotoxin": "QC-E7"}
    bad = quinn.submit(f"/lots/{ASC}/qc/grid", typed)
    assert bad.status_code == 422
    assert "Nothing was saved" in bad.text and "Viability at release: use a decimal point, not a comma" in bad.text
    assert result_count(lab) == 0 and events(lab, "qc result entered") == []
    # Everything typed comes back: the numbers, the chosen words, the sample id, and the bad row marked.
    numbers = [t.code for t in LOT_STAGE if t.acceptance.kind == "range"]
    assert all(f'name="value:{code}" value="{typed[f"value:{code}"]}"' in bad.text for code in numbers)
    assert bad.text.count('value="no growth" selected') == 2 and 'value="QC-E7"' in bad.text
    row = re.search(r'<tr id="row-viability" class="bad[^"]*">(.*?)</tr>', bad.text, re.S)
    assert row and 'aria-invalid="true"' in row.group(1)


def test_the_service_names_every_bad_row_and_refuses_donor_tests(lab):
    rows = [qc.Row("viability", "about 90"), qc.Row("endotoxin", "< 0.5"), qc.Row("donor_anti_hiv", "negative"),
            qc.Row("appearance", "fine")]
    with pytest.raises(qc.ResultSetInvalid) as refused, lab.write() as s:
        qc.enter_results(s, actor_of(lab, "quinn"), lots.by_number(s, ASC), rows)
    problems = refused.value.problems
    assert refused.value.field == "value:viability" and refused.value.status == 422
    assert set(problems) == {"viability", "endotoxin", "donor_anti_hiv", "appearance"}
    assert problems["viability"].startswith("Viability at release needs a number in %")
    assert problems["donor_anti_hiv"].startswith("Donor anti-HIV-1/2 is a donor test")
    assert problems["appearance"].startswith("Appearance: expected 'conforms' or 'does not conform'")
    assert result_count(lab) == 0


def test_an_oos_result_in_the_grid_keeps_its_investigation_path(lab, as_):
    saved = as_("quinn").submit(f"/lots/{ASC}/qc/grid", {**GRID, "value:endotoxin": "82"})
    assert saved.status_code == 303 and "out of specification" in saved.headers["location"].replace("%20", " ")
    with lab.read() as s:
        endotoxin = s.scalars(select(QcResult).where(QcResult.test_code == "endotoxin")).one()
        assert endotoxin.verdict == "oos" and s.get(Deviation, endotoxin.deviation_id).origin == "oos"
    assert len(events(lab, "oos investigation opened")) == 1


def test_a_grid_saved_twice_is_a_conflict_not_a_duplicate(lab, as_):
    first = as_("quinn").submit(f"/lots/{ASC}/qc/grid", GRID)
    again = as_("quinn").submit(f"/lots/{ASC}/qc/grid", GRID)  # a stale tab, or a double tap
    assert first.status_code == 303 and again.status_code == 409 and "never overwritten" in again.text
    assert result_count(lab) == 20


# --- donor tests --------------------------------------------------------------------------------


def test_donor_tests_are_shown_with_the_donations_eligibility_and_not_offered(lab, as_):
    page = as_("quinn").get(f"/lots/{ASC}/qc").text
    with lab.read() as s:
        donation = s.get(Donation, lots.by_number(s, ASC).donation_id)
    donor = page[page.index('id="donor"'):]
    assert donation.identifier in donor and "donor eligible" in donor
    assert f'href="/donations/{donation.identifier}"' not in donor, "the QC analyst does not open donations"
    qa_page = as_("anna").get(f"/lots/{ASC}/qc").text
    assert f'href="/donations/{donation.identifier}"' in qa_page[qa_page.index('id="donor"'):], "QA does"
    assert all(t.name in donor for t in DONOR_STAGE)
    assert donor.count("negative <small>(sample of") == len(DONOR_STAGE) - 1  # the timing check is the donation's
    assert not any(f'name="value:{t.code}"' in page for t in DONOR_STAGE)
    assert "see donor eligibility" not in page and "donor_" not in page


# --- the review of a set ------------------------------------------------------------------------


def test_a_set_is_reviewed_under_one_signature_covering_every_member(lab):
    ids = enter_all(lab)
    sig = review_set(lab, ids)
    assert sig.entity_type == qc.SET_ENTITY and sig.meaning.value == "reviewed" and sig.signer_name == "Kim Larsen"
    assert count(lab, Signature, Signature.entity_type.in_(["qc_result", qc.SET_ENTITY])) == 1
    content = json.loads(sig.content)
    assert [r["id"] for r in content["results"]] == ids and content["lot"] == ASC
    assert {(r["test"], r["value"], r["entered_by_name"]) for r in content["results"]} == {
        (key.removeprefix("value:"), value, "Quinn QC") for key, value in GRID.items()}
    with lab.read() as s:
        assert {r.review_signature_id for r in s.scalars(select(QcResult))} == {sig.id}
        review = s.scalars(select(QcReviewSet)).one()
        assert review.signature_id == sig.id and count(lab, QcReviewSetMember) == 20
    reviewed = events(lab, "qc result reviewed")
    assert len(reviewed) == 20 and {e.user_name for e in reviewed} == {"Kim Larsen"}
    assert all(e.new_value == f"#{sig.id} (set #{review.id} of 20)" for e in reviewed)
    with lab.read() as s:
        assert qc.release_test_problems(s, lots.by_number(s, ASC)) == []
    assert integrity.verify(lab).ok


def test_verify_detects_a_changed_member_of_a_reviewed_set(lab):
    ids = enter_all(lab)
    sig = review_set(lab, ids)
    with lab.write() as s:  # a member's value altered behind cellbench's back
        s.execute(update(QcResult).where(QcResult.id == ids[5]).values(value="99.9"))
    report = integrity.verify(lab)
    assert not report.ok
    assert f"signature {sig.id} (reviewed by Kim Larsen on qc_result_set" in report.problems[0]
    assert "has changed since it was signed" in report.problems[0]


def test_the_reviewer_cannot_be_the_one_who_entered_a_member(lab):
    ids = enter_all(lab)
    with pytest.raises(Forbidden, match="Nobody reviews their own result"):
        review_set(lab, ids, who="quinn", password=PASSWORD)
    with lab.write() as s:  # Kim entered one retest-free result of another test; she may not review the set
        extra = qc.enter_result(s, actor_of(lab, "qc"), lots.by_number(s, ASC), "viability", "91",
                                retest_of=ids[[t.code for t in LOT_STAGE].index("viability")])
    with pytest.raises(Forbidden, match=f"result #{extra.id}"):
        review_set(lab, [*ids, extra.id])
    assert count(lab, QcReviewSet) == 0 and events(lab, "qc result reviewed") == []
    assert count(lab, Signature, Signature.entity_type == qc.SET_ENTITY) == 0


def test_a_wrong_password_reviews_nothing(lab):
    ids = enter_all(lab)
    with pytest.raises(AuthenticationFailed):
        review_set(lab, ids, password="not the password")
    assert count(lab, QcReviewSet) == 0 and events(lab, "qc result reviewed") == []
    assert count(lab, QcResult, QcResult.review_signature_id.is_not(None)) == 0


def test_an_empty_set_is_refused(lab):
    enter_all(lab)
    with pytest.raises(InvalidInput) as refused:
        review_set(lab, [])
    assert refused.value.field == "results"


def test_a_second_review_of_the_same_set_is_a_conflict(lab):
    ids = enter_all(lab)
    review_set(lab, ids)
    with pytest.raises(Conflict, match="already reviewed by Kim Larsen"):
        review_set(lab, ids, who="anna", password=PASSWORD)
    assert count(lab, Signature, Signature.entity_type == qc.SET_ENTITY) == 1


def test_two_reviewers_signing_the_same_set_at_once_get_one_review_and_one_conflict(lab):
    ids = enter_all(lab)
    start, outcomes = threading.Barrier(2), []

    def worker(who, password) -> None:
        start.wait()
        try:
            review_set(lab, ids, who=who, password=password)
            outcomes.append("reviewed")
        except Conflict:
            outcomes.append("Conflict")

    threads = [threading.Thread(target=worker, args=a) for a in (("qc", demo.DEMO_PASSWORD), ("anna", PASSWORD))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["Conflict", "reviewed"]
    assert count(lab, QcReviewSet) == 1 and count(lab, QcReviewSetMember) == 20
    assert len(events(lab, "qc result reviewed")) == 20 and integrity.verify(lab).ok


# --- the target, over HTTP ---------------------------------------------------------------


class Counting:
    """Counts what a person's browser would load: every page fetched and every form posted."""

    def __init__(self, client):
        self.client, self.loads = client, 0

    def get(self, url):
        self.loads += 1
        return self.client.get(url)

    def submit(self, url, data):
        response = self.client.submit(url, data)
        self.loads += 1
        if response.status_code == 303:  # the browser follows the redirect: one more page
            return self.get(response.headers["location"])
        return response


def test_twenty_results_are_entered_in_three_page_loads_and_reviewed_with_one_signature(lab, app, as_):
    assert len(LOT_STAGE) >= 20
    quinn = Counting(as_("quinn"))
    page = quinn.get(f"/lots/{ASC}/qc").text
    form = {name: GRID[name] for name in re.findall(r'name="(value:[a-z0-9_]+)"', page)}
    assert len(form) == 20
    after = quinn.submit(f"/lots/{ASC}/qc/grid", form)
    assert after.status_code == 200 and "20 results saved" in after.text
    assert quinn.loads <= 3 and result_count(lab) == 20
    print(f"\n20 QC results entered in {quinn.loads} page loads")

    kim = Counting(sign_in(app, "qc", demo.DEMO_PASSWORD))  # the second QC analyst
    signatures_before = count(lab, Signature)
    page = kim.get(f"/lots/{ASC}/qc").text
    chosen = re.findall(r'name="result" value="(\d+)"\s+aria-label="[^"]*"\s+checked', page)
    assert len(chosen) == 20  # every result pending review is ticked by default
    done = kim.submit(f"/lots/{ASC}/qc/review", {"result": chosen, "password": demo.DEMO_PASSWORD})
    assert done.status_code == 200 and "20 results reviewed under one signature" in done.text
    assert count(lab, Signature) - signatures_before == 1
    assert count(lab, QcResult, QcResult.review_signature_id.is_(None)) == 0
    print(f"20 QC results reviewed in {kim.loads} page loads with {count(lab, Signature) - signatures_before} "
          "signature")
    assert "Every test required for release has a reviewed, passing result." in done.text


# --- the API ---------------------------------------------------------------------------------------


def api_for(app, db, username):
    from .test_qc import api_for as make

    return make(app, db, username)


def test_a_lims_enters_a_set_and_a_reviewer_signs_it_once(lab, app):
    lims, anna = api_for(app, lab, "quinn"), api_for(app, lab, "anna")
    base = f"/api/v1/lots/{ASC}/qc-results"
    body = [{"test": key.removeprefix("value:"), "value": value} for key, value in GRID.items()]
    bad = lims.post(f"{base}/set", json={"results": [*body[:-1], {"test": body[-1]["test"], "value": "maybe"}]})
    assert bad.status_code == 422 and bad.json()["field"] == f"value:{body[-1]['test']}" and result_count(lab) == 0
    created = lims.post(f"{base}/set", json={"results": body})
    assert created.status_code == 201, created.text
    ids = [r["id"] for r in created.json()]
    assert len(ids) == 20 and {r["entered_by"] for r in created.json()} == {"Quinn QC"}
    own = lims.post(f"{base}/set-review", json={"results": ids, "password": PASSWORD})
    assert own.status_code == 403
    signed = anna.post(f"{base}/set-review", json={"results": ids, "password": PASSWORD})
    assert signed.status_code == 200, signed.text
    assert signed.json()["signature"]["signer"] == "Anna QA" and len(signed.json()["results"]) == 20
    assert {r["review"]["meaning"] for r in signed.json()["results"]} == {"reviewed"}
    again = anna.post(f"{base}/set-review", json={"results": ids, "password": PASSWORD})
    assert again.status_code == 409
    assert integrity.verify(lab).ok


def test_an_invalidated_result_is_offered_again_and_a_current_one_is_corrected_only_by_retest(lab, as_):
    ids = enter_all(lab)
    viability = ids[[t.code for t in LOT_STAGE].index("viability")]
    page = as_("quinn").get(f"/lots/{ASC}/qc").text
    assert 'name="value:viability"' not in page and f'name="retest_of" value="{viability}"' in page
    with lab.write() as s:
        qc.invalidate_result(s, users.by_username(s, "anna"), PASSWORD,
                             qc.result_of_lot(s, lots.by_number(s, ASC), viability), "Counter not zeroed")
    page = as_("quinn").get(f"/lots/{ASC}/qc").text
    assert 'name="value:viability"' in page and "every earlier result was invalidated" in page
    assert as_("quinn").submit(f"/lots/{ASC}/qc/grid", {"value:viability": "90.5"}).status_code == 303
    assert result_count(lab) == 21


def test_an_oos_result_reviewed_in_a_set_still_stands_until_qa_invalidates_it(lab):
    rows = [qc.Row(key.removeprefix("value:"), "82" if key == "value:endotoxin" else value)
            for key, value in GRID.items()]
    with lab.write() as s:
        ids = [r.id for r in qc.enter_results(s, actor_of(lab, "quinn"), lots.by_number(s, ASC), rows)]
    review_set(lab, ids)
    with lab.read() as s:
        lot = lots.by_number(s, ASC)
        assert {st.test.code: st.state for st in qc.test_status(s, lot)}["endotoxin"] == qc.OOS
        assert qc.release_test_problems(s, lot)[0].startswith("Bacterial endotoxins is out of specification")


def test_a_placebo_lots_grid_offers_its_own_tests_and_has_no_donor_section(lab, as_):
    from .test_qc import PLACEBO

    page = as_("quinn").get(f"/lots/{PLACEBO}/qc").text
    saline = load_spec_file(ROOT / "specs" / "saline-placebo" / "v2.toml")
    assert page.count('name="value:') == len(saline.tests) and 'id="donor"' not in page
    assert "Extractable volume per vial" in page
