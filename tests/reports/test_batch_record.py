"""The executed batch record: a lot driven through every step, printed as a page and as a PDF."""
from __future__ import annotations

import html
import io
import re
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader
from sqlalchemy import event, select

from cellbench import deviations, lots, reports, steps, users
from cellbench.clock import utcnow
from cellbench.models import Deviation, Lot, StepEntry, StepValue

from ..conftest import PASSWORD, actor_of
from ..lots.test_lots import (
    placebo_spec,
    record_uses,
    record_whole_step,
    sample_vials,
    sign,
    start_placebo_lot,
    stock_for,
)

ORIGINAL_BATCH, CORRECTED_BATCH = "NACL-24117", "NACL-24171"
REASON = "transcription error, the carton reads NACL-24171"
EXCESS = "2400"  # units received: the limit is 1-2000
EXCESS_COMMENT = "two pallets delivered, the excess goes back to the supplier"


def words(text: str) -> str:
    """Text with its line breaks and runs of spaces made single spaces: a table cell may wrap."""
    return " ".join(html.unescape(text).split())


def pdf_text(pdf: bytes) -> tuple[str, int]:
    reader = PdfReader(io.BytesIO(pdf))
    return words(" ".join(page.extract_text() for page in reader.pages)), len(reader.pages)


@pytest.fixture
def finished_lot(db, effective_specs):
    """A placebo lot through every step: an out-of-limit count on receipt (its deviation assessed
    and closed by QA), and the supplier batch corrected after both signatures, which voids them."""
    number = start_placebo_lot(db)
    spec = placebo_spec(db)
    receipt = spec.steps[0]
    with db.write() as s:
        steps.start_entry(s, actor_of(db, "olivia"), lots.by_number(s, number), receipt.code, None)
    given = {"supplier": "B. Braun Melsungen", "product_name": "Sodium chloride 9 mg/mL",
             "supplier_batch": ORIGINAL_BATCH, "supplier_expiry": "2028-03-31",
             "received_at": (utcnow().replace(microsecond=0)).isoformat(timespec="minutes"),
             "units_received": EXCESS, "packaging_intact": "yes"}
    with db.write() as s:
        inputs = {code: steps.ValueInput(value) for code, value in given.items()}
        inputs["units_received"].comment = EXCESS_COMMENT
        inputs["marketing_authorisation"] = steps.ValueInput(na_reason="not printed on this import pack")
        steps.record_values(s, actor_of(db, "olivia"), lots.by_number(s, number), receipt.code, 1, inputs, None)
    sign(db, number, receipt, 1)
    with db.write() as s:
        original = s.scalars(select(StepValue).where(StepValue.value == ORIGINAL_BATCH)).one()
        steps.correct_value(s, actor_of(db, "oscar"), lots.by_number(s, number), original.id, CORRECTED_BATCH, REASON)
    sign(db, number, receipt, 1)
    stock_for(db, spec)  # the mirror fill's cryovials and instruments
    for step in spec.steps[1:]:
        if step.code == "storage_transfer":
            sample_vials(db, number)
        index = record_whole_step(db, number, step)
        record_uses(db, number, step, index)
        sign(db, number, step, index)
    with db.write() as s:
        deviation = s.scalars(select(Deviation)).one()
        deviations.assess_deviation(s, actor_of(db, "anna"), deviation,
                                    impact_assessment="excess units returned unopened; no impact on the lot")
    with db.write() as s:
        deviations.close_deviation(s, users.by_username(s, "anna"), PASSWORD, s.scalars(select(Deviation)).one())
    with db.read() as s:
        return {"number": number, "deviation": s.scalars(select(Deviation.number)).one(),
                "state": reports.text(lots.by_number(s, number).state), "titles": [step.title for step in spec.steps]}


def assert_particulars(text: str, lot: dict) -> None:
    assert lot["number"] in text and f"State {lot['state']}" in text.replace("State:", "State")
    for title in lot["titles"]:
        assert title in text
    assert "B. Braun Melsungen" in text and "Sodium chloride 9 mg/mL" in text
    # the correction: the original stays readable beside the new value, who, why, and the mark
    assert ORIGINAL_BATCH in text and CORRECTED_BATCH in text and REASON in text
    assert re.search(rf"changed after first entry — Supplier batch number: {ORIGINAL_BATCH} → {CORRECTED_BATCH}; "
                     r"by Oscar Operator at \d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? [+-]\d\d:\d\d", text, re.IGNORECASE)
    assert re.search(r"Data changed after first entry:? YES — 1 change", text)
    # the out-of-limit value, its verdict and its comment; an N/A with its reason
    assert EXCESS in text and "OUT OF LIMITS" in text and EXCESS_COMMENT in text
    assert "N/A: not printed on this import pack" in text
    # signatures: name, meaning, time in the site's zone with its offset; the voided ones with why
    for who, meaning in (("Olivia Operator", "performed"), ("Victor Verifier", "verified"), ("Anna QA", "approved")):
        assert re.search(rf"{who} · {meaning} · \d{{4}}-\d\d-\d\d \d\d:\d\d(:\d\d)? [+-]\d\d:\d\d", text), who
    assert re.search(r"INVALIDATED \d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? [+-]\d\d:\d\d ?: value supplier_batch corrected: "
                     + re.escape(REASON), text, re.IGNORECASE)
    assert lot["deviation"] in text and "closed" in text and "out of limit" in text


def test_the_pdf_holds_every_particular_of_the_executed_record(as_, finished_lot):
    response = as_("anna").get(f"/lots/{finished_lot['number']}/record.pdf")
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    assert f"batch-record-{finished_lot['number']}.pdf" in response.headers["content-disposition"]
    text, pages = pdf_text(response.content)
    assert_particulars(text, finished_lot)
    # a footer on every page: lot, page x of y, when printed and by whom
    footers = re.findall(rf"Lot {finished_lot['number']} · executed batch record · page (\d+) of (\d+) · printed "
                         r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d by Anna QA", text)
    assert footers == [(str(n), str(pages)) for n in range(1, pages + 1)]


def test_the_page_shows_the_same_record(as_, finished_lot):
    page = as_("victor").get(f"/lots/{finished_lot['number']}/record")
    assert page.status_code == 200
    assert_particulars(words(re.sub(r"<[^>]+>", " ", page.text)), finished_lot)
    assert f'href="/lots/{finished_lot["number"]}/record.pdf"' in page.text


def read_counting_queries(db, number: str) -> tuple[reports.BatchRecord, int]:
    selects = []

    def count(_conn, _cursor, statement, *_rest) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with db.read() as s:
            record = reports.batch_record(s, number)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    return record, len(selects)


def test_the_record_is_read_with_one_query_per_table_not_per_entry(db, finished_lot):
    record, queries = read_counting_queries(db, finished_lot["number"])
    assert sum(len(step.entries) for step in record.steps) == 6  # saline-placebo v2: one entry a step
    # the lot (with its specification, donation and starter), entries, values, materials, equipment,
    # deviations, what the lot's own signatures were for (decisions and QA's reviews), signatures, vials
    assert queries == 9


def test_blinded_roles_cannot_read_a_batch_record(as_, finished_lot):
    for username in ("frida", "ida", "mette", "adam"):
        for path in ("record", "record.pdf"):
            refused = as_(username).get(f"/lots/{finished_lot['number']}/{path}")
            assert refused.status_code == 403, (username, path)
            assert finished_lot["number"] not in refused.text and "NACL" not in refused.text


def test_an_unknown_lot_is_not_found(as_, effective_specs):
    for path in ("record", "record.pdf"):
        missing = as_("anna").get(f"/lots/PLB-1999-0001/{path}")
        assert missing.status_code == 404 and "No lot 'PLB-1999-0001'" in words(missing.text)


def test_a_cell_lot_record_lists_materials_equipment_donation_and_vial_positions(db, as_, people, demo_world):
    """The demo's complete ASC lot: what the placebo record does not have."""
    with db.read() as s:
        number = s.scalars(select(Lot.number).where(Lot.number.like("ASC-%"), Lot.expiry.is_not(None))).first()
    record, queries = read_counting_queries(db, number)
    assert sum(len(step.entries) for step in record.steps) > 10 and queries == 9
    text, pages = pdf_text(as_("peter").get(f"/lots/{number}/record.pdf").content)
    page = words(re.sub(r"<[^>]+>", " ", as_("peter").get(f"/lots/{number}/record").text))
    assert pages > 1
    donation = record.donation.identifier
    uses = [u for s in record.steps for e in s.entries for u in e.materials]
    kit = [u for s in record.steps for e in s.entries for u in e.equipment]
    stored = [v for v in record.vials if v.storage_position]
    assert uses and kit and stored and record.lot.expiry and record.complete and record.completed_at
    for shown in (page, text):
        assert f"Donation {donation}" in shown and "Expiry " + record.lot.expiry.isoformat() in shown
        material = uses[0]
        assert f"supplier lot {material.supplier_lot} · expiry {material.expiry.isoformat()}" in shown
        equipment = kit[0]
        assert f"asset {equipment.asset_id} · calibration due {equipment.calibration_due.isoformat()}" in shown
        assert f"{stored[0].code} {stored[0].storage_position}" in shown
        assert "computed by cellbench" in shown and "Passage 2" in shown and "Vial 3" in shown
        assert "Data changed after first entry: NO" in shown or "Data changed after first entry NO" in shown


def test_a_value_recomputed_after_a_correction_names_the_correction(db, as_, people, demo_world):
    """Correcting an input changes the value cellbench computed from it: that is a change after
    first entry too, and the record says which correction caused it."""
    with db.write() as s:
        number = s.scalars(select(Lot.number).where(Lot.number.like("ASC-%"), Lot.state == "in_process")).first()
        harvested = s.scalars(select(StepValue).join(StepEntry, StepEntry.id == StepValue.entry_id).where(
            StepEntry.lot_id == lots.by_number(s, number).id, StepEntry.step_code == "expansion_passage",
            StepEntry.repeat_index == 1, StepValue.parameter_code == "cells_harvested")).one()
    with db.write() as s:
        steps.correct_value(s, actor_of(db, "olivia"), lots.by_number(s, number), harvested.id, "70",
                            "count re-read from the NC-200 printout")
    with db.read() as s:
        record = reports.batch_record(s, number)
    passage = next(sr for sr in record.steps if sr.step.code == "expansion_passage").entries[0]
    doublings = next(line for line in passage.lines if line.code == "population_doublings")
    assert doublings.changed and [r.shown for r in doublings.rows] == ["1.585", "1.807"]
    assert doublings.changes[0].reason == ("recomputed by cellbench after 'Viable cells harvested' was corrected: "
                                           "count re-read from the NC-200 printout")
    page = words(re.sub(r"<[^>]+>", " ", as_("anna").get(f"/lots/{number}/record").text))
    assert "Population doublings in this passage: 1.585 → 1.807; by Olivia Operator" in page
    assert "Data changed after first entry YES — 2 changes" in page


def test_the_pdf_never_drops_a_character_its_font_cannot_print(db, finished_lot):
    with db.read() as s:
        record = reports.batch_record(s, finished_lot["number"])
    receipt = record.steps[0].entries[0]
    next(line for line in receipt.lines if line.code == "supplier").rows[0].remark = "carton label 📦 torn"
    text, _ = pdf_text(reports.batch_record_pdf(record, zone=ZoneInfo("Europe/Copenhagen"), printed_by="Anna QA",
                                          printed_at=utcnow()))
    assert "carton label [U+1F4E6] torn" in text


def test_a_lot_just_started_prints_its_steps_as_not_started(as_, db, effective_specs):
    number = start_placebo_lot(db)
    page = words(re.sub(r"<[^>]+>", " ", as_("olivia").get(f"/lots/{number}/record").text))
    text, pages = pdf_text(as_("olivia").get(f"/lots/{number}/record.pdf").content)
    for shown in (page, text):
        assert shown.count("Not started.") == len(placebo_spec(db).steps)
        assert re.search(r"Completed:? not complete", shown)
        assert re.search(r"Data changed after first entry:? NO", shown)
    assert pages == 1


def test_the_record_shows_the_signed_decisions_on_the_lot(as_, db, effective_specs):
    number = start_placebo_lot(db)
    with db.write() as s:
        lots.move(s, users.by_username(s, "anna"), lots.by_number(s, number), "abort", "broken seal on the box",
                  password=PASSWORD)
    page = as_("anna").get(f"/lots/{number}/record").text
    assert "Signatures on the lot" in page and "Anna QA" in page and "rejected" in page
