"""Donors and donations: pseudonyms and consent, identifiers as received with their check characters,
the eligibility panel and its sampling window, QA's signed decision, and what may start a lot."""
from __future__ import annotations

import json
import re
import threading
from datetime import date, timedelta
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from cellbench import donors, identifiers, integrity, lots, users
from cellbench.errors import AuthenticationFailed, Conflict, Forbidden, InvalidInput
from cellbench.models import AuditEvent, Donation, Donor, DonorTest, Eligibility, Meaning, Signature
from cellbench.specifications import load_all
from cellbench.specifications import versions as spec_versions

from ..conftest import PASSWORD, actor_of

DONATED = date(2025, 3, 3)
# Reference 4.1 test vectors: (13-character DIN, eye-readable check character).
DIN_VECTORS = [("G123498654321", "H"), ("G123489654321", "Y"), ("A999915000001", "M")]
SEC_DI = "SEC DK" + "TE0001" + "2025ABC000001"


def events(db, action=None, entity_id=None) -> list[AuditEvent]:
    with db.read() as s:
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if action:
            query = query.where(AuditEvent.action == action)
        if entity_id:
            query = query.where(AuditEvent.entity_id == entity_id)
        return list(s.scalars(query))


def register_donor(db, code="D-0001", consent=date(2025, 2, 20), reference="CONSENT-2025-001", by="olivia"):
    with db.write() as s:
        return donors.register_donor(s, actor_of(db, by), code, consent, reference)


def register_donation(db, identifier="G123498654321", check="H", donated_on=DONATED, code="D-0001", by="olivia"):
    with db.write() as s:
        return donors.register_donation(s, actor_of(db, by), donors.donor_by_code(s, code), identifier, check,
                                        donated_on)


def panel(results=None, sampled=DONATED + timedelta(days=1), laboratory="Rigshospitalet KIA", skip=()):
    results = results or {}
    return [donors.TestEntry(code, results.get(code, "negative"), sampled, laboratory)
            for code in donors.REQUIRED_PANEL if code not in skip]


def record(db, entries, identifier="G123498654321", reason=None, by="olivia"):
    with db.write() as s:
        donation = donors.donation_by_identifier(s, identifier)
        return donors.record_tests(s, actor_of(db, by), donation, entries, reason)


def decide(db, decision, identifier="G123498654321", reason=None, by="anna", password=PASSWORD):
    with db.write() as s:
        donation = donors.donation_by_identifier(s, identifier)
        return donors.decide_eligibility(s, users.by_username(s, by), password, donation, decision, reason)


def donation(db, identifier="G123498654321") -> Donation:
    with db.read() as s:
        return donors.donation_by_identifier(s, identifier)


@pytest.fixture
def donor(db, people):
    return register_donor(db)


@pytest.fixture
def din(donor, db):
    return register_donation(db)


# --- donors ----------------------------------------------------------------------------------------


def test_an_operator_registers_a_donor_by_pseudonym_with_consent_and_it_is_audited(db, people):
    register_donor(db, code="d-0042")
    with db.read() as s:
        donor = donors.donor_by_code(s, "D-0042")
        assert (donor.code, donor.consent_date, donor.consent_reference) == ("D-0042", date(2025, 2, 20),
                                                                             "CONSENT-2025-001")
    [event] = events(db, "donor registered")
    assert (event.entity_type, event.entity_id, event.user_name) == ("donor", "D-0042", "Olivia Operator")
    assert json.loads(event.new_value) == {"date": "2025-02-20", "reference": "CONSENT-2025-001"}


@pytest.mark.parametrize("code", ["Jens Hansen", "D 0042", "JH-1970", "D-12", "Hansen", ""])
def test_a_donor_code_that_is_not_a_pseudonym_is_refused_naming_the_code(db, people, code):
    with pytest.raises(InvalidInput) as refused:
        register_donor(db, code=code)
    assert refused.value.field == "code" and "D-" in refused.value.message
    with db.read() as s:
        assert s.scalars(select(Donor)).first() is None
    assert events(db, "donor registered") == []


@pytest.mark.parametrize("consent,reference,field", [(None, "CONSENT-1", "consent_date"),
                                                     ("", "CONSENT-1", "consent_date"),
                                                     ("20.02.2025", "CONSENT-1", "consent_date"),
                                                     (date(2025, 2, 20), "  ", "consent_reference"),
                                                     (date.today() + timedelta(days=3), "CONSENT-1", "consent_date")])
def test_no_consent_no_donor(db, people, consent, reference, field):
    with pytest.raises(InvalidInput) as refused:
        register_donor(db, consent=consent, reference=reference)
    assert refused.value.field == field


def test_one_donor_number_is_one_donor(db, donor):
    with pytest.raises(Conflict) as refused:
        register_donor(db, code="D-00001")
    assert refused.value.field == "code" and "D-0001" in refused.value.message


def test_only_operators_register_donors(db, people):
    with pytest.raises(Forbidden):
        register_donor(db, by="anna")


def test_the_next_donor_code_is_suggested(db, donor):
    with db.read() as s:
        assert donors.next_donor_code(s) == "D-0002"


# --- donations: identifiers --------------------------------------------------------------------------


@pytest.mark.parametrize("din13,check", DIN_VECTORS)
def test_a_din_with_its_right_check_character_is_registered_exactly_as_received(db, donor, din13, check):
    assert identifiers.isbt128_check_character(din13) == check
    received = f"{din13[:5]} {din13[5:7]} {din13[7:]}"  # grouped, as printed under the barcode
    register_donation(db, identifier=received, check=check.lower())
    with db.read() as s:
        stored = s.scalars(select(Donation)).one()
        assert (stored.identifier, stored.id_system, stored.check_character) == (received, "ISBT128", check)
    [event] = events(db, "donation registered", received)
    assert json.loads(event.new_value)["donor"] == "D-0001"
    assert [e.new_value for e in events(db, "donation registered", "D-0001")] == [received]


@pytest.mark.parametrize("din13,check", DIN_VECTORS)
def test_a_wrong_check_character_is_refused_without_saying_which_one_is_expected(db, donor, din13, check):
    wrong = "X" if check != "X" else "Z"
    with pytest.raises(InvalidInput) as refused:
        register_donation(db, identifier=din13, check=wrong)
    assert refused.value.field == "check_character"
    assert "does not match" in refused.value.message
    assert not re.search(rf"\b{re.escape(check)}\b", refused.value.message)  # no hint to copy from the screen
    with db.read() as s:
        assert s.scalars(select(Donation)).first() is None


def test_a_transposed_din_is_caught_by_its_check_character(db, donor):
    # G123498654321 has H; the transposition G123489654321 has Y (reference 4.1)
    with pytest.raises(InvalidInput) as refused:
        register_donation(db, identifier="G123489654321", check="H")
    assert refused.value.field == "check_character"


def test_a_wrong_check_character_inside_the_din_is_refused_naming_the_identifier(db, donor):
    with pytest.raises(InvalidInput) as refused:
        register_donation(db, identifier="G123498654321X", check="H")
    assert refused.value.field == "identifier" and "does not match" in refused.value.message
    assert "should be" not in refused.value.message


@pytest.mark.parametrize("identifier,check,field", [("G123498654321", "", "check_character"),
                                                    ("G123498654321", "HH", "check_character"),
                                                    ("O123498654321", "H", "identifier"),
                                                    ("G12349865", "H", "identifier"),
                                                    ("", "", "identifier")])
def test_an_incomplete_or_malformed_din_is_refused_naming_the_field(db, donor, identifier, check, field):
    with pytest.raises(InvalidInput) as refused:
        register_donation(db, identifier=identifier, check=check)
    assert refused.value.field == field


def test_barcode_data_is_stored_as_scanned_and_its_check_character_still_typed(db, donor):
    register_donation(db, identifier="=G12349865432100", check="H")
    assert donation(db, "G123498654321H").identifier == "=G12349865432100"


def test_a_sec_donation_sequence_is_accepted_as_received_without_a_check_character(db, donor):
    register_donation(db, identifier=SEC_DI, check="")
    stored = donation(db, SEC_DI)
    assert (stored.identifier, stored.id_system, stored.check_character) == (SEC_DI, "SEC", None)


def test_a_sec_donation_sequence_takes_no_check_character(db, donor):
    with pytest.raises(InvalidInput) as refused:
        register_donation(db, identifier=SEC_DI, check="H")
    assert refused.value.field == "check_character"


def test_a_malformed_sec_sequence_is_refused(db, donor):
    with pytest.raises(InvalidInput) as refused:
        register_donation(db, identifier="SEC DK12", check="")
    assert refused.value.field == "identifier" and "21 characters" in refused.value.message


@pytest.mark.parametrize("again", ["G123498654321", "=G12349865432100", "G1234 98 654321", "SEC DKTE0001G123498654321"])
def test_the_same_donation_cannot_be_registered_twice_in_any_spelling(db, din, again):
    register_donor(db, code="D-0002")
    with pytest.raises(Conflict) as refused:
        register_donation(db, identifier=again, check="H" if not again.startswith("SEC") else "", code="D-0002")
    assert refused.value.field == "identifier"
    assert "already registered as G123498654321 (donor D-0001)" in refused.value.message


def test_a_donation_date_in_the_future_or_before_consent_is_refused(db, donor):
    with pytest.raises(InvalidInput) as future:
        register_donation(db, donated_on=date.today() + timedelta(days=2))
    with pytest.raises(InvalidInput) as early:
        register_donation(db, donated_on=date(2025, 2, 1))
    assert future.value.field == early.value.field == "donated_on"
    assert "future" in future.value.message and "consent" in early.value.message


# --- eligibility tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("days", [0, 7])
def test_a_sample_at_donation_or_up_to_seven_days_after_is_accepted(db, din, days):
    record(db, panel(sampled=DONATED + timedelta(days=days)))
    with db.read() as s:
        rows = s.scalars(select(DonorTest)).all()
        assert len(rows) == 9 and {r.sample_date for r in rows} == {DONATED + timedelta(days=days)}


@pytest.mark.parametrize("days,why", [(-1, "before the donation"), (8, "more than 7 days after the donation")])
def test_a_sample_outside_the_seven_day_window_is_refused_naming_sample_date(db, din, days, why):
    with pytest.raises(InvalidInput) as refused:
        record(db, [donors.TestEntry("nat_hiv", "negative", DONATED + timedelta(days=days), "Lab")])
    assert refused.value.field == "sample_date" and refused.value.test == "nat_hiv"
    assert refused.value.message.startswith("NAT HIV:") and why in refused.value.message
    with db.read() as s:
        assert s.scalars(select(DonorTest)).first() is None
    assert events(db, "donor test recorded") == []


def test_each_recorded_result_is_audited_on_its_donation(db, din):
    record(db, panel(skip=("nat_hcv",)))
    recorded = events(db, "donor test recorded", "G123498654321")
    assert len(recorded) == 8 and recorded[0].field == "test:anti_hiv"
    assert json.loads(recorded[0].new_value) == {"result": "negative", "sample_date": "2025-03-04",
                                                 "laboratory": "Rigshospitalet KIA"}


@pytest.mark.parametrize("entry,field", [(donors.TestEntry("cmv", "negative", DONATED, "Lab"), "test"),
                                         (donors.TestEntry("hbsag", "reactive", DONATED, "Lab"), "result"),
                                         (donors.TestEntry("hbsag", "negative", "", "Lab"), "sample_date"),
                                         (donors.TestEntry("hbsag", "negative", DONATED, " "), "laboratory")])
def test_bad_test_input_is_refused_naming_the_field(db, din, entry, field):
    with pytest.raises(InvalidInput) as refused:
        record(db, [entry])
    assert refused.value.field == field


def test_a_recorded_result_is_never_overwritten_without_a_reason(db, din):
    record(db, panel())
    with pytest.raises(InvalidInput) as nothing:  # the same panel again changes nothing
        record(db, panel())
    assert nothing.value.field == "result"
    with pytest.raises(InvalidInput) as refused:
        record(db, panel({"anti_hbc": "positive"}))
    assert refused.value.field == "reason" and refused.value.test == "anti_hbc"
    with db.read() as s:
        assert s.scalars(select(DonorTest).where(DonorTest.test == "anti_hbc")).one().result == "negative"


def test_a_correction_keeps_the_old_value_in_the_audit_trail_with_its_reason(db, din):
    record(db, panel())
    record(db, [donors.TestEntry("anti_hbc", "positive", DONATED + timedelta(days=2), "Rigshospitalet KIA")],
           reason="transcription error: lab report says reactive", by="oscar")
    with db.read() as s:
        row = s.scalars(select(DonorTest).where(DonorTest.test == "anti_hbc")).one()
        assert (row.result, row.sample_date) == ("positive", DONATED + timedelta(days=2))
        assert row.recorded_by == users.by_username(s, "oscar").id
    corrected = events(db, "donor test corrected", "G123498654321")
    assert [(e.field, e.old_value, e.new_value) for e in corrected] == [
        ("test:anti_hbc.result", "negative", "positive"), ("test:anti_hbc.sample_date", "2025-03-04", "2025-03-05")]
    assert {e.reason for e in corrected} == {"transcription error: lab report says reactive"}


def test_a_recorded_result_cannot_be_removed(db, din):
    record(db, panel())
    with pytest.raises(InvalidInput) as refused:
        record(db, [donors.TestEntry("hbsag", "", DONATED, "Lab")], reason="oops")
    assert refused.value.field == "result" and "cannot be removed" in refused.value.message


def test_only_operators_record_test_results(db, din):
    with pytest.raises(Forbidden):
        record(db, panel(), by="anna")


# --- eligibility rules and QA's decision ---------------------------------------------------------------


def test_a_positive_result_blocks_eligibility_and_says_which(db, din):
    record(db, panel({"anti_hbc": "positive", "nat_hcv": "indeterminate"}))
    with pytest.raises(InvalidInput) as refused:
        decide(db, "eligible")
    assert refused.value.field == "decision"
    assert "Not every result is negative: Anti-HBc is positive; NAT HCV is indeterminate." in refused.value.message
    assert donation(db).eligibility == Eligibility.pending.value
    with db.read() as s:
        assert s.scalars(select(Signature)).first() is None


def test_a_missing_test_blocks_eligibility(db, din):
    record(db, panel(skip=("anti_htlv", "nat_hbv")))
    with db.read() as s:
        assert donors.eligibility_blockers(s, donors.donation_by_identifier(s, "G123498654321")) == [
            "Missing test results: Anti-HTLV-I/II, NAT HBV."]
    with pytest.raises(InvalidInput) as refused:
        decide(db, "eligible")
    assert "Missing test results: Anti-HTLV-I/II, NAT HBV." in refused.value.message


def test_a_sample_outside_the_window_blocks_eligibility(db, din):
    record(db, panel())
    with db.engine.begin() as conn:  # as a corrected donation date would leave it
        conn.execute(text("UPDATE donor_test SET sample_date = :d WHERE test = 'syphilis'"),
                     {"d": DONATED - timedelta(days=1)})
    with db.read() as s:
        blockers = donors.eligibility_blockers(s, donors.donation_by_identifier(s, "G123498654321"))
    assert blockers == ["Samples outside the window 2025-03-03 to 2025-03-10 (at donation or within 7 days after): "
                        "Syphilis (2025-03-02)."]


def test_consent_dated_after_the_donation_blocks_eligibility(db, din):
    record(db, panel())
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE donor SET consent_date = :d"), {"d": DONATED + timedelta(days=1)})
    with db.read() as s:
        assert "consent" in donors.eligibility_blockers(s, donors.donation_by_identifier(s, "G123498654321"))[0]


def test_qa_signs_a_complete_negative_panel_eligible(db, din):
    record(db, panel())
    sig = decide(db, "eligible")
    with db.read() as s:
        stored = donors.donation_by_identifier(s, "G123498654321")
        assert stored.eligibility == Eligibility.eligible.value and stored.eligibility_signature_id == sig.id
        sig = s.get(Signature, sig.id)
        assert (sig.signer_name, Meaning(sig.meaning), sig.entity_type, sig.entity_id) == (
            "Anna QA", Meaning.approved, "donation", "G123498654321")
        content = json.loads(sig.content)
        assert content["decision"] == "eligible" and content["donor"] == "D-0001"
        assert len(content["tests"]) == 9 and content["tests"][0] == {
            "test": "anti_hiv", "result": "negative", "sample_date": "2025-03-04", "laboratory": "Rigshospitalet KIA"}
    [decided] = events(db, "eligibility decided")
    assert (decided.old_value, decided.new_value, decided.user_name) == ("pending", "eligible", "Anna QA")
    assert events(db, "signed", "G123498654321")[0].new_value == f"#{sig.id} {sig.record_hash}"
    report = integrity.verify(db)
    assert report.ok and report.signatures == 1


def test_verify_names_the_decision_when_a_signed_result_is_changed_behind_its_back(db, din):
    record(db, panel())
    sig = decide(db, "eligible")
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE donor_test SET result = 'positive' WHERE test = 'nat_hiv'"))
    [problem] = integrity.verify(db).problems
    assert problem == (f"signature {sig.id} (approved by Anna QA on donation G123498654321): "
                       "the signed record has changed since it was signed")


def test_a_wrong_password_is_refused_and_the_donation_stays_undecided(db, din):
    record(db, panel())
    with pytest.raises(AuthenticationFailed) as refused:
        decide(db, "eligible", password="not my password")
    assert refused.value.field == "password"
    assert donation(db).eligibility == Eligibility.pending.value
    assert events(db, "eligibility decided") == []
    assert [e.entity_id for e in events(db, "password check failed")] == ["anna"]


@pytest.mark.parametrize("who", ["peter", "olivia", "quinn"])
def test_only_qa_decides_eligibility(db, din, who):
    record(db, panel())
    with pytest.raises(Forbidden):
        decide(db, "eligible", by=who)
    assert donation(db).eligibility == Eligibility.pending.value


def test_qa_may_decide_ineligible_at_any_time_but_must_say_why(db, din):
    with pytest.raises(InvalidInput) as refused:
        decide(db, "ineligible")
    assert refused.value.field == "reason"
    sig = decide(db, "ineligible", reason="travel history: high-prevalence area, no HTLV result")
    assert Meaning(sig.meaning) is Meaning.rejected
    assert donation(db).eligibility == Eligibility.ineligible.value
    assert events(db, "eligibility decided")[0].reason.startswith("travel history")
    assert integrity.verify(db).ok


def test_a_decision_is_final(db, din):
    decide(db, "ineligible", reason="medical history")
    with pytest.raises(Conflict) as again:
        decide(db, "eligible")
    assert again.value.field == "decision" and "already decided ineligible by Anna QA" in again.value.message
    with pytest.raises(Conflict) as late:
        record(db, panel())
    assert "can no longer change" in late.value.message


def test_an_unknown_decision_is_refused(db, din):
    with pytest.raises(InvalidInput) as refused:
        decide(db, "maybe", reason="?")
    assert refused.value.field == "decision"


# --- what may start a lot --------------------------------------------------------------------------


def test_only_a_donation_signed_eligible_may_start_a_lot(db, din):
    register_donation(db, identifier="A999915000001", check="M")
    with db.read() as s:
        pending = donors.donation_may_start_lot(s, donors.donation_by_identifier(s, "G123498654321"))
    assert "no eligibility decision yet" in pending and "undecided donor cannot start a lot" in pending
    record(db, panel())
    decide(db, "eligible")
    decide(db, "ineligible", identifier="A999915000001", reason="positive anti-HCV reported by phone")
    with db.read() as s:
        assert donors.donation_may_start_lot(s, donors.donation_by_identifier(s, "G123498654321")) is None
        refused = donors.donation_may_start_lot(s, donors.donation_by_identifier(s, "A999915000001"))
    assert "ineligible donor cannot start a lot" in refused


def test_an_eligible_donation_whose_signature_was_invalidated_cannot_start_a_lot(db, din):
    record(db, panel())
    sig = decide(db, "eligible")
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE signature SET invalidated_at = '2026-01-01T00:00:00.000000Z' WHERE id = :id"),
                     {"id": sig.id})
    with db.read() as s:
        assert "no valid signed eligibility decision" in donors.donation_may_start_lot(s, donation(db))


def test_the_panel_is_the_donor_tests_of_the_asc_specification():
    asc = [spec for spec in load_all() if spec.product.kind == "asc"][-1]  # the latest version
    donor_tests = [t.code for t in asc.tests if t.stage == "donor" and t.code != "donor_sample_timing"]
    assert donor_tests == ["donor_" + code for code in donors.REQUIRED_PANEL]


def test_a_cell_lot_starts_only_from_a_donation_signed_eligible(db, din):
    with db.write() as s:
        for row in spec_versions.sync_from_files(s, actor_of(db, "anna")):
            if row.kind == "asc":
                asc_id = row.id
    with db.write() as s:
        spec_versions.approve(s, users.by_username(s, "anna"), PASSWORD, asc_id)
    with pytest.raises(InvalidInput) as refused, db.write() as s:
        lots.start_lot(s, actor_of(db, "olivia"), "asc-cs10", "G123498654321")
    assert refused.value.field == "donation" and "undecided donor cannot start a lot" in refused.value.message
    record(db, panel())
    decide(db, "eligible")
    with db.write() as s:
        lot = lots.start_lot(s, actor_of(db, "olivia"), "asc-cs10", "G123498654321")
        assert lot.donation_id == donation(db).id


# --- pages ------------------------------------------------------------------------------------------


def test_an_operator_registers_a_donor_and_a_donation_through_the_pages(as_, db):
    olivia = as_("olivia")
    form = olivia.get("/donors/new")
    assert 'value="D-0001"' in form.text  # the next code is suggested
    response = olivia.submit("/donors", {"code": "D-0001", "consent_date": "2025-02-20",
                                         "consent_reference": "CONSENT-2025-001"})
    assert response.status_code == 303 and response.headers["location"].startswith("/donors/D-0001")
    response = olivia.submit("/donors/D-0001/donations", {"identifier": "=G12349865432100", "check_character": "H",
                                                          "donated_on": "2025-03-03"})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/donations/" + quote("=G12349865432100", safe=""))
    page = olivia.get(response.headers["location"])
    assert page.status_code == 200 and "=G12349865432100" in page.text and 'name="result:nat_hcv"' in page.text
    listing = olivia.get("/donors").text
    assert "D-0001" in listing and "decision pending" in listing


def test_a_refused_donation_keeps_what_was_typed_and_names_the_field(as_, db, donor):
    response = as_("olivia").submit("/donors/D-0001/donations", {"identifier": "G123498654321", "check_character": "Q",
                                                                 "donated_on": "2025-03-03"})
    assert response.status_code == 422
    assert 'value="G123498654321"' in response.text and 'value="Q"' in response.text
    assert 'value="2025-03-03"' in response.text and "does not match" in response.text
    assert re.search(r'name="check_character"[^>]*aria-invalid="true"', response.text)


def test_a_refused_donor_keeps_what_was_typed(as_, people):
    response = as_("olivia").submit("/donors", {"code": "Jens Hansen", "consent_date": "2025-02-20",
                                                "consent_reference": "CONSENT-7"})
    assert response.status_code == 422 and 'value="Jens Hansen"' in response.text
    assert 'value="CONSENT-7"' in response.text and "no spaces" in response.text


def test_the_panel_form_records_the_whole_panel_and_keeps_typed_values_on_error(as_, db, din):
    olivia = as_("olivia")
    form = {f"result:{c}": "negative" for c in donors.REQUIRED_PANEL}
    form |= {f"sample_date:{c}": "2025-03-04" for c in donors.REQUIRED_PANEL}
    form |= {f"laboratory:{c}": "Rigshospitalet KIA" for c in donors.REQUIRED_PANEL}
    bad = form | {"sample_date:nat_hbv": "2025-03-12", "laboratory:nat_hbv": "Statens Serum Institut"}
    response = olivia.submit("/donations/G123498654321/tests", bad)
    assert response.status_code == 422 and "NAT HBV: the sample date 2025-03-12 is more than 7 days" in response.text
    assert 'value="2025-03-12"' in response.text and 'value="Statens Serum Institut"' in response.text
    with db.read() as s:
        assert s.scalars(select(DonorTest)).first() is None
    assert olivia.submit("/donations/G123498654321/tests", form).status_code == 303
    with db.read() as s:
        assert len(s.scalars(select(DonorTest)).all()) == 9


def test_qa_signs_the_decision_on_the_donation_page_and_every_page_shows_the_signature(as_, db, din):
    record(db, panel())
    anna = as_("anna")
    page = anna.get("/donations/G123498654321")
    assert 'action="/donations/G123498654321/decision"' in page.text and 'name="result:' not in page.text
    wrong = anna.submit("/donations/G123498654321/decision", {"decision": "eligible", "reason": "all clear",
                                                              "password": "nope"})
    assert wrong.status_code == 401 and 'value="all clear"' in wrong.text and "nope" not in wrong.text
    signed = anna.submit("/donations/G123498654321/decision", {"decision": "eligible", "password": PASSWORD})
    assert signed.status_code == 303
    for path in ("/donations/G123498654321", "/donors/D-0001"):
        text_ = as_("peter").get(path).text
        assert "Anna QA" in text_ and "approved" in text_ and 'class="sig' in text_
    assert 'action="/donations/G123498654321/decision"' not in anna.get("/donations/G123498654321").text


def test_donor_pages_are_for_operators_qa_and_qp_only(as_, din):
    for who in ("olivia", "anna", "peter"):
        assert as_(who).get("/donors").status_code == 200
        assert as_(who).get("/donors/D-0001").status_code == 200
    for who in ("frida", "mette", "adam"):
        assert as_(who).get("/donors").status_code == 403
        assert as_(who).get("/api/v1/donors").status_code == 403
    assert as_("anna").submit("/donors", {"code": "D-0009", "consent_date": "2025-01-01",
                                          "consent_reference": "C"}).status_code == 403


@pytest.mark.parametrize("username,path", [("olivia", "/donors/new"), ("olivia", "/donors/D-0001"),
                                           ("olivia", "/donations/G123498654321"),
                                           ("anna", "/donations/G123498654321")])
def test_every_donor_form_carries_the_sessions_csrf_token(as_, din, username, path):
    client = as_(username)
    page = client.get(path).text
    forms = page.count('<form method="post"')
    tokens = re.findall(r'name="csrf_token" value="([^"]*)"', page)
    assert forms >= 1 and len(tokens) == forms and set(tokens) == {client.csrf()}


def test_the_work_queues_show_donations_waiting(as_, db, din):
    assert "donation misses eligibility test results" in as_("olivia").get("/").text
    record(db, panel())
    assert "donation awaits your eligibility decision" in as_("anna").get("/").text


def test_junk_in_donor_urls_gives_a_clear_error_not_a_server_error(as_, din):
    anna, olivia = as_("anna"), as_("olivia")
    for path in ("/donors/%27%3B--%00junk", "/donations/%27%3B--%00junk", "/donations/SEC%20x",
                 "/api/v1/donations/%27%3B--junk/eligibility"):
        assert anna.get(path).status_code in (404, 422)
    for path in ("/donors/%27%3B--junk/donations", "/donations/%27%3B--junk/tests", "/donations/G123498654321/tests",
                 "/donors", "/donations/G123498654321/decision"):
        assert olivia.submit(path, {"identifier": "\x00", "result:hbsag": "x", "decision": "x"}).status_code < 500


# --- API ------------------------------------------------------------------------------------------------


def token_client(app, db, username) -> TestClient:
    with db.write() as s:
        token = users.create_token(s, users.cli_actor(), users.by_username(s, username), "integration")
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def test_the_api_round_trip_from_donor_to_signed_decision(app, db, people):
    lab, qa = token_client(app, db, "olivia"), token_client(app, db, "anna")
    created = lab.post("/api/v1/donors", json={"code": "D-0007", "consent_date": "2025-02-20",
                                               "consent_reference": "CONSENT-7"})
    assert created.status_code == 201 and created.json()["donations"] == []
    bad = lab.post("/api/v1/donors/D-0007/donations", json={"identifier": "G123498654321", "check_character": "Y",
                                                            "donated_on": "2025-03-03"})
    assert bad.status_code == 422 and bad.json()["field"] == "check_character"
    made = lab.post("/api/v1/donors/D-0007/donations", json={"identifier": "G123498654321", "check_character": "H",
                                                             "donated_on": "2025-03-03"})
    assert made.status_code == 201 and made.json()["missing_tests"] == list(donors.REQUIRED_PANEL)
    tests = [{"test": c, "result": "negative", "sample_date": "2025-03-04", "laboratory": "KIA"}
             for c in donors.REQUIRED_PANEL]
    window = lab.post("/api/v1/donations/G123498654321/tests",
                      json={"tests": [tests[0] | {"sample_date": "2025-03-11"}]})
    assert window.status_code == 422 and window.json()["field"] == "sample_date"
    recorded = lab.post("/api/v1/donations/G123498654321/tests", json={"tests": tests})
    assert recorded.status_code == 200 and recorded.json()["missing_tests"] == []
    status = qa.get("/api/v1/donations/G123498654321H/eligibility").json()
    assert status == {"state": "pending", "blockers": [], "may_start_lot": False,
                      "lot_refusal": status["lot_refusal"], "signature": None}
    assert lab.post("/api/v1/donations/G123498654321/eligibility",
                    json={"decision": "eligible", "password": PASSWORD}).status_code == 403
    decided = qa.post("/api/v1/donations/G123498654321/eligibility",
                      json={"decision": "eligible", "password": PASSWORD})
    assert decided.status_code == 200
    body = decided.json()
    assert body["state"] == "eligible" and body["may_start_lot"] and body["signature"]["meaning"] == "approved"
    assert body["signature"]["signer_name"] == "Anna QA"
    assert qa.post("/api/v1/donations/G123498654321/eligibility",
                   json={"decision": "ineligible", "password": PASSWORD, "reason": "x"}).status_code == 409
    listed = qa.get("/api/v1/donors", params={"eligibility": "eligible"}).json()["donors"]
    assert [d["code"] for d in listed] == ["D-0007"] and listed[0]["donations"][0]["eligibility"] == "eligible"
    scanned = qa.get("/api/v1/donations/" + quote("=G12349865432100", safe="")).json()
    assert scanned["identifier"] == "G123498654321" and len(scanned["tests"]) == 9


def test_the_openapi_document_describes_the_donor_api(as_):
    paths = set(as_("olivia").get("/api/v1/openapi.json").json()["paths"])
    assert {"/api/v1/donors", "/api/v1/donors/{code}", "/api/v1/donors/{code}/donations",
            "/api/v1/donations/{identifier}", "/api/v1/donations/{identifier}/tests",
            "/api/v1/donations/{identifier}/eligibility"} <= paths


# --- at the same moment ----------------------------------------------------------------------------
# On PostgreSQL the transactions really overlap (pooled connections, no process lock); on SQLite the
# writers are serialised by the database layer, and the tests show nothing breaks.


def at_once(*jobs) -> list:
    start, outcomes = threading.Barrier(len(jobs)), [None] * len(jobs)

    def run(i, job) -> None:
        start.wait()
        try:
            outcomes[i] = job()
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def test_two_spellings_of_one_donation_registered_at_the_same_moment_give_one_donation(db, donor):
    register_donor(db, code="D-0002")
    outcomes = at_once(lambda: register_donation(db, identifier="G123498654321", check="H"),
                       lambda: register_donation(db, identifier="=G12349865432100", check="H", code="D-0002"))
    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "Donation"]
    with db.read() as s:
        assert len(s.scalars(select(Donation)).all()) == 1


def test_two_decisions_at_the_same_moment_give_one_decision(db, din):
    record(db, panel())
    outcomes = at_once(lambda: decide(db, "eligible"), lambda: decide(db, "ineligible", reason="second opinion"))
    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "Signature"]
    with db.read() as s:
        assert len(s.scalars(select(Signature)).all()) == 1
    assert integrity.verify(db).ok


def test_a_correction_racing_a_decision_never_leaves_a_signature_over_other_results(db, din):
    record(db, panel())
    correction = [donors.TestEntry("nat_hiv", "positive", DONATED + timedelta(days=1), "Rigshospitalet KIA")]
    decided, corrected = at_once(lambda: decide(db, "eligible"),
                                 lambda: record(db, correction, reason="lab recalled its report"))
    if isinstance(decided, Signature):  # the decision came first: the results it covers are frozen
        assert isinstance(corrected, Conflict) and donation(db).eligibility == "eligible"
    else:  # the correction came first: the rules saw the positive result
        assert isinstance(decided, InvalidInput) and "NAT HIV is positive" in decided.message
        assert isinstance(corrected, list) and donation(db).eligibility == "pending"
    assert integrity.verify(db).ok
