"""The formal documents of a released demo lot read back from their PDFs: the certificate of analysis
names the instrument the batch record shows and who approved the results; the release certificate
carries the QP's declaration with each certification, the manufacturing site, the authorisation
number and the batch size; the batch record lists every signature on the lot, QA's reviews with
them; and no printed time breaks across lines or leaves the site's zone."""
from __future__ import annotations

import io
import re
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from cellbench import clock, demo, lots, qc, reports, users
from cellbench.clock import utcnow
from cellbench.models import Lot, LotDecision, LotState, QcResult, Signature, Vial
from cellbench.release import certificates

ZONE = ZoneInfo("Europe/Copenhagen")
AUTHORISATION = "DK-MIA-TEST-7"
MANUFACTURER = "OUH Cell Bench, Odense, Denmark"
# a time as every printed record writes it: site time to the second with the site's offset
WHOLE_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0[12]:00")
TIME_START = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d")


def raw_text(pdf: bytes) -> str:
    """The text as laid out, line breaks kept: a time broken across lines shows as two lines."""
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def words(pdf: bytes) -> str:
    return " ".join(raw_text(pdf).split())


def lot_with(db, *decisions: str) -> str:
    """A released demo lot whose decisions are exactly these, in this order."""
    with db.read() as s:
        for lot in s.scalars(select(Lot).where(Lot.state == LotState.released, Lot.number.like("ASC-%"))
                             .order_by(Lot.id)):
            made = s.scalars(select(LotDecision.decision).where(LotDecision.lot_id == lot.id)
                             .order_by(LotDecision.id)).all()
            if tuple(made) == decisions:
                return lot.number
    raise AssertionError(f"the demo has no released lot decided by {decisions}")


def documents(db, number: str) -> dict[str, bytes]:
    with db.read() as s:
        data = certificates.gather(s, number)
        record = reports.batch_record(s, number)
    now = utcnow()
    return {"coa": certificates.coa_pdf(data, zone=ZONE, printed_by="Anna Berg", printed_at=now,
                                        authorisation=AUTHORISATION),
            "release": certificates.release_certificate_pdf(data, zone=ZONE, printed_by="Anna Berg", printed_at=now,
                                                            authorisation=AUTHORISATION),
            "record": reports.batch_record_pdf(record, zone=ZONE, printed_by="Anna Berg", printed_at=now)}


@pytest.fixture
def two_step(demo_trial_world) -> str:
    """The demo's lot certified initially, released for shipment, then certified finally."""
    return lot_with(demo_trial_world, "certify_initial", "release_for_shipment", "certify_final_shipped")


def test_the_coa_names_the_counter_the_batch_record_shows_not_the_specifications_default(demo_trial_world):
    number = lot_with(demo_trial_world, "certify_final", "release")
    with demo_trial_world.read() as s:
        record = reports.batch_record(s, number)
        data = certificates.gather(s, number)
    counters = {(e.name, e.asset_id) for step in record.steps for entry in step.entries for e in entry.equipment
                if "NucleoCounter" in e.name}
    assert counters == {("NucleoCounter NC-200", "NC-200")}  # what the bench recorded
    viability = next(t for t in data.tests if t.code == "viability")
    assert viability.method == "NucleoCounter NC-200, asset NC-200 (Ph. Eur. 2.7.29 principle)"
    coa = words(documents(demo_trial_world, number)["coa"])
    assert "NucleoCounter NC-200, asset NC-200" in coa and "NC-100" not in coa
    assert "Methods name the instruments as recorded on the lot's batch record." in coa


def test_the_coa_carries_the_approval_of_its_results_with_name_time_and_meaning(demo_trial_world):
    number = lot_with(demo_trial_world, "certify_final", "release")
    with demo_trial_world.read() as s:
        lot = lots.by_number(s, number)
        reviews = s.scalars(select(Signature).join(QcResult, QcResult.review_signature_id == Signature.id)
                            .where(QcResult.lot_id == lot.id)).all()
        data = certificates.gather(s, number)
    [approval, donor] = data.approvals
    latest = max(reviews, key=lambda sig: sig.at)
    assert (approval.name, approval.meaning, approval.at) == (latest.signer_name, "reviewed", latest.at)
    assert approval.note.startswith(f"{len({r.entity_id for r in reviews})} results")
    assert donor.label == "Donor tests approved by QA's donor eligibility decision" and donor.meaning == "approved"
    coa = words(documents(demo_trial_world, number)["coa"])
    assert (f"Release test results approved by second-person review {latest.signer_name} reviewed "
            f"{clock.local_text(latest.at, ZONE)}") in coa
    assert "NOT APPROVED" not in coa
    # units as a person writes them, in a font that has the characters
    assert "× 10⁶ viable cells/vial" in coa and "10^6" not in coa and "[U+" not in coa


def test_a_result_nobody_has_reviewed_leaves_the_coa_not_approved(demo_trial_world):
    with demo_trial_world.write() as s:
        lot = s.scalars(select(Lot).where(Lot.state == LotState.qc_pending, Lot.number.like("ASC-%"))).first()
        missing = next(status.test for status in qc.test_status(s, lot)
                       if status.state == qc.MISSING and status.test.stage != "donor")
        qc.enter_result(s, users.actor(s, users.by_username(s, "qc")), lot, missing.code, demo.passing_value(missing))
        number = lot.number
    with demo_trial_world.read() as s:
        data = certificates.gather(s, number)
    assert data.unreviewed >= 1
    coa = words(documents(demo_trial_world, number)["coa"])
    assert f"NOT APPROVED: {data.unreviewed} result" in coa and "await second-person review" in coa


def test_the_release_certificate_carries_the_declaration_site_authorisation_batch_size_and_signatures(
        demo_trial_world, two_step):
    with demo_trial_world.read() as s:
        lot = lots.by_number(s, two_step)
        filled = s.scalar(select(func.count()).select_from(Vial).where(Vial.lot_id == lot.id))
        signed = {d.decision: s.get(Signature, d.signature_id)
                  for d in s.scalars(select(LotDecision).where(LotDecision.lot_id == lot.id))}
        data = certificates.gather(s, two_step)
    certificate = words(documents(demo_trial_world, two_step)["release"])
    for particular in (f"Manufactured by {MANUFACTURER}", f"Manufacturing authorisation {AUTHORISATION}",
                       f"Batch size {filled} vials of 1 mL ({filled} mL)", "NCT07290946 (EU CT 2025-522559-25-00)",
                       "Status: RELEASED"):
        assert particular in certificate, particular
    declaration = (f"I, the Qualified Person signing below, certify that lot {two_step} of {data.product} was "
                   "manufactured and checked in compliance with Good Manufacturing Practice for investigational "
                   "medicinal products")
    assert certificate.count(declaration) == 2  # one for each certification, each above its signature
    assert "with the product specification file (asc-cs10 version 2)" in certificate
    assert "It allows the lot to be shipped to the trial sites under quarantine" in certificate
    assert "releases the lot shipped under quarantine" in certificate
    for decision, title in (("certify_initial", "QP initial certification"),
                            ("certify_final_shipped", "QP final certification (releases the lot shipped under "
                                                      "quarantine)"),
                            ("release_for_shipment", "Sponsor release for shipment under quarantine")):
        sig = signed[decision]
        shown = f"{title} {sig.signer_name} {reports.text(sig.meaning)} {clock.local_text(sig.at, ZONE)}"
        assert shown in certificate, title
    assert "Pending test Owner Due Resolved Sterility (bacteria and fungi)" in certificate


def test_an_unset_authorisation_is_printed_as_missing_not_left_blank(demo_trial_world, two_step):
    with demo_trial_world.read() as s:
        data = certificates.gather(s, two_step)
    certificate = words(certificates.release_certificate_pdf(data, zone=ZONE, printed_by="x", printed_at=utcnow()))
    assert "Manufacturing authorisation NOT SET" in certificate


def test_the_batch_record_lists_every_signature_on_the_lot_qa_reviews_included(demo_trial_world, two_step, app):
    with demo_trial_world.read() as s:
        record = reports.batch_record(s, two_step)
    labels = [line.label for line in record.lot_signatures]
    assert labels.count("QA review of the batch record by exception") >= 1
    assert labels.count("QA review of the lot's audit trail") >= 1
    assert {"QP initial certification", "Sponsor release for shipment under quarantine"} <= set(labels)
    assert [line.signature.at for line in record.lot_signatures] == sorted(line.signature.at
                                                                           for line in record.lot_signatures)
    printed = words(documents(demo_trial_world, two_step)["record"])
    section = printed[printed.index("Signatures on the lot"):]
    for line in record.lot_signatures:
        sig = line.signature
        assert f"{sig.signer_name} {sig.meaning.value} {clock.local_text(sig.at, ZONE)}" in section, line.label
    assert "QA review of the batch record by exception" in section and "up to the lot's audit event" in section
    from ..conftest import sign_in

    page = " ".join(sign_in(app, "qa", demo.DEMO_PASSWORD).get(f"/lots/{two_step}/record").text.split())
    assert "QA review of the lot&#39;s audit trail" in page or "QA review of the lot's audit trail" in page


def test_no_printed_time_breaks_across_lines_or_leaves_the_site_zone(demo_trial_world, two_step):
    for kind, pdf in documents(demo_trial_world, two_step).items():
        text = raw_text(pdf)
        starts = [m.start() for m in TIME_START.finditer(text)]
        assert len(starts) > 5, kind
        for start in starts:
            whole = WHOLE_TIME.match(text, start)
            assert whole, f"{kind}: a time broken or not in site time: {text[start:start + 30]!r}"
        assert not re.search(r"\d\d:\d\d(:\d\d)?\s*\n\s*[+-]\d\d:\d\d", text), kind
