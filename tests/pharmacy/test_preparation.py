"""The preparer's record: the thaw or preparation end, each unit of the kit scanned against the kit,
the masking measure the study lists, one syringe per gland with its volume, and a signed label per
syringe; the same for an active and a placebo kit but for the kit number. Bad input is refused
naming its field and writes nothing; the use-by clock stops when the last gland is recorded."""
from __future__ import annotations

import io
import re
import shutil
import subprocess
import threading

import pypdf
import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import func, select

from cellbench import pharmacy, sealed, sitecodes, studies
from cellbench.errors import Conflict, InvalidInput
from cellbench.labels.syringe import SYRINGE_SIZE
from cellbench.models import AuditEvent, Kit, Preparation, PreparationSyringe, PreparationUnit, Visibility

from ..bedside_support import scanned_at_bedside
from ..conftest import SECRET, actor_of
from .test_pharmacy import (
    STUDY,
    assign,
    one_of_each_arm,
    payload,
    randomised,
    visit_url,
)

MM = 72 / 25.4  # PDF points per millimetre
MEASURE = "Opaque amber syringe sleeve over each syringe"


def started(as_, screening: str) -> str:
    """Assign and dispense a kit for treatment 1 and start its clock: its kit number."""
    number = assign(as_, screening).json()["kit_number"]
    assert as_("frida").post(f"{visit_url(screening)}/dispense", json={"code": payload(number)}).status_code == 200
    assert as_("jonas").post("/api/v1/preparation", json={"code": payload(number)}).status_code == 200
    return number


def record_url(screening: str) -> str:
    return f"/preparation/{STUDY}/{screening}/1"


def units_of(db, kit_number: str) -> dict[int, str]:
    """The kit's unit codes, read as the preparer may (a logged, unblinded read)."""
    with db.write() as s:
        kit = s.scalars(select(Kit).where(Kit.number == kit_number)).one()
        return sealed.unit_codes(s, actor_of(db, "jonas"), kit)


def counts(db) -> tuple[int, ...]:
    with db.read() as s:
        return tuple(s.scalar(select(func.count()).select_from(table))
                     for table in (Preparation, PreparationUnit, PreparationSyringe, AuditEvent))


def prepare_fully(as_, db, screening: str, kit_number: str) -> list[bytes]:
    """Every step of the record through the preparer's pages: the syringe labels printed."""
    jonas, url = as_("jonas"), record_url(screening)
    steps = [("/thaw-end", {"ended_at": ""}), ("/masking", {"masking_measure": MEASURE})]
    steps += [("/units", {"unit_code": code}) for code in units_of(db, kit_number).values()]
    steps += [("/syringes", {"gland": gland, "volume_ml": "1.0"}) for gland in ("left", "right")]
    for suffix, data in steps:
        done = jonas.submit(url + suffix, data)
        assert done.status_code == 303, (suffix, done.text[:400])
    labels = [jonas.submit(f"{url}/labels/{gland}") for gland in ("left", "right")]
    assert all(label.status_code == 200 and label.headers["content-type"] == "application/pdf" for label in labels)
    return [label.content for label in labels]


def page_text(html: str) -> str:
    main = re.search(r"<main.*?</main>", html, re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", main.group(0) if main else html))


def same_shape(text: str, numbers: tuple[str, ...]) -> str:
    for n in numbers:
        text = text.replace(n, "⟨n⟩")
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?( [+-]\d\d:\d\d)?", "⟨time⟩", text)
    text = re.sub(r"\b\d\d:\d\d\b", "⟨hh:mm⟩", text)
    return re.sub(r"\d+:\d\d left", "⟨left⟩", text)


# --- the whole record, both arms ---------------------------------------------------------------------


def test_a_full_record_for_an_active_and_a_placebo_kit_reads_the_same_but_for_the_kit_number(site, as_, db):
    by_arm = one_of_each_arm(as_, db)
    pages, labels, numbers = {}, {}, {}
    for arm, screening in by_arm.items():
        kit_number = started(as_, screening)
        labels[arm] = prepare_fully(as_, db, screening, kit_number)
        participant = as_("jonas").get(f"/api/v1/participants/{STUDY}/{screening}").json()["randomisation_number"]
        numbers[arm] = (kit_number, participant, screening)
        pages[arm] = page_text(as_("jonas").get(record_url(screening)).text)
        with db.read() as s:
            view = pharmacy.record_view(s, pharmacy.visit_by_ref(s, STUDY, screening, 1))
        assert view.complete and view.masking_measure == MEASURE and len(view.units_scanned) == 2
        assert [(v.short, v.volume_ml, v.labels_printed) for v in view.syringes] == [("left", 1.0, 1),
                                                                                    ("right", 1.0, 1)]
    assert same_shape(pages["active"], numbers["active"]) == same_shape(pages["placebo"], numbers["placebo"])
    for arm in by_arm:
        assert all(code not in pages[arm] for code in units_of(db, numbers[arm][0]).values()), "no unit code shown"
        texts = [same_shape(page.extract_text(), numbers[arm]) for label in labels[arm]
                 for page in pypdf.PdfReader(io.BytesIO(label)).pages]
        labels[arm] = texts
    assert labels["active"] == labels["placebo"]
    assert "For clinical trial use only" in labels["active"][0] and "Left submandibular gland" in labels["active"][0]
    with db.read() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent).where(
            AuditEvent.entity_id == f"{STUDY}/{by_arm['active']}/T1",
            AuditEvent.visibility == Visibility.everyone.value).order_by(AuditEvent.seq))]
    assert {"thaw or preparation ended", "unit checked", "masking measure recorded", "syringe drawn up",
            "syringe label printed"} <= set(actions)


def test_the_syringe_label_is_its_exact_size_and_its_qr_verifies_for_the_kit_gland_and_participant(
        site, as_, db, tmp_path):
    randomised(as_, "SCR-001")
    kit_number = started(as_, "SCR-001")
    left, right = prepare_fully(as_, db, "SCR-001", kit_number)
    participant = as_("jonas").get(f"/api/v1/participants/{STUDY}/SCR-001").json()["randomisation_number"]
    for dose, pdf in enumerate((left, right), 1):
        (page,) = pypdf.PdfReader(io.BytesIO(pdf)).pages
        size = (float(page.mediabox.width), float(page.mediabox.height))
        assert size == pytest.approx((SYRINGE_SIZE.width_mm * MM, SYRINGE_SIZE.height_mm * MM), abs=0.05)
        if shutil.which("pdftoppm") is None:  # the embedded image then, as the kit label tests do
            image = page.images[0].image
            decoded = [r.text for r in zxingcpp.read_barcodes(image.resize((image.width * 4, image.height * 4)))]
        else:
            (tmp_path / "label.pdf").write_bytes(pdf)
            subprocess.run(["pdftoppm", "-r", "300", "-gray", str(tmp_path / "label.pdf"), str(tmp_path / f"d{dose}")],
                           check=True)
            decoded = [r.text for r in zxingcpp.read_barcodes(Image.open(next(tmp_path.glob(f"d{dose}*.pgm"))))]
        (code,) = decoded
        assert sitecodes.verify_syringe(code, SECRET) == sitecodes.SyringeLabel(kit_number, dose, participant)


# --- refusals: named field, nothing written ------------------------------------------------------------------


def test_a_unit_of_another_kit_is_refused_naming_the_field_and_nothing_is_written(site, as_, db):
    randomised(as_, "SCR-001")
    randomised(as_, "SCR-002")
    mine, other = started(as_, "SCR-001"), started(as_, "SCR-002")
    stranger = units_of(db, other)[1]
    before = counts(db)
    refused = as_("jonas").submit(record_url("SCR-001") + "/units", {"unit_code": stranger})
    assert refused.status_code == 422
    assert f"Unit {stranger} is not one of kit {mine}&#39;s units" in refused.text
    assert 'name="unit_code" value="" class="scan-input" spellcheck="false" autocapitalize="characters" required ' \
           'aria-invalid="true"' in refused.text
    assert counts(db) == before, "no record, no scan, not even the compartment's read"
    with db.write() as s:
        visit = pharmacy.visit_by_ref(s, STUDY, "SCR-001", 1)
        with pytest.raises(InvalidInput) as error:
            pharmacy.scan_unit(s, actor_of(db, "jonas"), visit, "NOT-A-UNIT", sealed.unit_codes)
        assert error.value.field == "unit_code"
        s.rollback()
    first = as_("jonas").submit(record_url("SCR-001") + "/units", {"unit_code": units_of(db, mine)[1]})
    again = as_("jonas").submit(record_url("SCR-001") + "/units", {"unit_code": units_of(db, mine)[1].lower()})
    assert first.status_code == 303 and again.status_code == 409 and "already scanned" in again.text


def test_a_syringe_volume_out_of_bounds_is_refused_naming_the_volume(site, as_, db):
    randomised(as_, "SCR-001")
    kit_number = started(as_, "SCR-001")
    jonas, url = as_("jonas"), record_url("SCR-001")
    assert jonas.submit(url + "/thaw-end").status_code == 303
    for code in units_of(db, kit_number).values():
        assert jonas.submit(url + "/units", {"unit_code": code}).status_code == 303
    with db.read() as s:
        most = pharmacy.record_view(s, pharmacy.visit_by_ref(s, STUDY, "SCR-001", 1)).max_volume_ml
        assert most == studies.definition(studies.by_code(s, STUDY)).presentation.fill_volume_ml  # one unit a gland
    before = counts(db)
    for typed in ("0", "-1", f"{most + 0.1:g}", "lots", ""):
        refused = jonas.submit(url + "/syringes", {"gland": "left", "volume_ml": typed})
        assert refused.status_code == 422, typed
        assert 'aria-invalid="true"' in refused.text and "Volume drawn up" in refused.text
    assert counts(db) == before
    assert jonas.submit(url + "/syringes", {"gland": "left", "volume_ml": f"{most:g}"}).status_code == 303
    twice = jonas.submit(url + "/syringes", {"gland": "left", "volume_ml": "0.5"})
    assert twice.status_code == 409 and "already drawn up" in twice.text


def test_a_syringe_waits_for_the_thaw_end_and_every_unit_checked(site, as_, db):
    randomised(as_, "SCR-001")
    started(as_, "SCR-001")
    early = as_("jonas").submit(record_url("SCR-001") + "/syringes", {"gland": "left", "volume_ml": "1"})
    assert early.status_code == 422 and "Record the end of the thaw or preparation first" in early.text
    assert as_("jonas").submit(record_url("SCR-001") + "/thaw-end").status_code == 303
    early = as_("jonas").submit(record_url("SCR-001") + "/syringes", {"gland": "left", "volume_ml": "1"})
    assert early.status_code == 422 and "Scan every unit of kit" in early.text


def test_a_masking_measure_the_study_does_not_list_is_refused(site, as_, db):
    randomised(as_, "SCR-001")
    started(as_, "SCR-001")
    before = counts(db)
    refused = as_("jonas").submit(record_url("SCR-001") + "/masking", {"masking_measure": "Turned my back"})
    assert refused.status_code == 422 and "Choose a masking measure the study lists" in refused.text
    assert counts(db) == before
    with db.read() as s:
        listed = studies.definition(studies.by_code(s, STUDY)).presentation.masking_measures
    assert MEASURE in listed and len(listed) >= 2
    assert as_("jonas").submit(record_url("SCR-001") + "/masking", {"masking_measure": listed[1]}).status_code == 303


def test_only_the_preparer_reaches_the_record_and_blinded_people_see_no_trace_of_unit_codes(site, as_, db):
    randomised(as_, "SCR-001")
    kit_number = started(as_, "SCR-001")
    prepare_fully(as_, db, "SCR-001", kit_number)
    for user in ("ida", "frida", "anna"):
        assert as_(user).get(record_url("SCR-001")).status_code == 403
        assert as_(user).submit(record_url("SCR-001") + "/labels/left").status_code == 403
    participant_page = as_("ida").get(f"/participants/{STUDY}/SCR-001").text
    assert "Preparation record" not in participant_page
    assert all(code not in participant_page for code in units_of(db, kit_number).values())
    assert "preparation record" in as_("jonas").get(f"/participants/{STUDY}/SCR-001").text


def test_two_entries_for_the_same_gland_at_the_same_moment_one_gets_a_conflict(site, as_, db):
    randomised(as_, "SCR-001")
    kit_number = started(as_, "SCR-001")
    assert as_("jonas").submit(record_url("SCR-001") + "/thaw-end").status_code == 303
    for code in units_of(db, kit_number).values():
        assert as_("jonas").submit(record_url("SCR-001") + "/units", {"unit_code": code}).status_code == 303
    barrier, results = threading.Barrier(2), []

    def draw(volume: str) -> None:
        barrier.wait()
        try:
            with db.write() as s:
                pharmacy.draw_syringe(s, actor_of(db, "jonas"), pharmacy.visit_by_ref(s, STUDY, "SCR-001", 1),
                                      "left", volume)
            results.append("drawn")
        except Conflict as conflict:
            results.append(f"conflict on {conflict.field}")

    threads = [threading.Thread(target=draw, args=(volume,)) for volume in ("1.0", "0.9")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == ["conflict on gland", "drawn"], results
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(PreparationSyringe)) == 1


# --- the clock -------------------------------------------------------------------------------------------------


def test_the_use_by_countdown_stops_when_the_last_gland_is_recorded(site, as_, db):
    randomised(as_, "SCR-001")
    started(as_, "SCR-001")
    scanned_at_bedside(as_("ida"), visit_url("SCR-001"))  # the preparer's record first, then the bedside scans
    page = f"/participants/{STUDY}/SCR-001/visits/1/administration"
    for gland in ("left", "right"):
        assert 'data-use-by="' in as_("ida").get(page).text, "running while a gland is still to be given"
        assert 'data-use-by="' in as_("jonas").get(record_url("SCR-001")).text
        given = as_("ida").post(f"{visit_url('SCR-001')}/administrations", json={"gland": gland, "volume_ml": 1.0})
        assert given.status_code == 201, given.text
    for text in (as_("ida").get(page).text, as_("jonas").get(record_url("SCR-001")).text):
        assert 'data-use-by="' not in text and "Complete: every gland is recorded" in text
    with db.read() as s:
        view = pharmacy.view(s, actor_of(db, "ida"), pharmacy.visit_by_ref(s, STUDY, "SCR-001", 1))
    assert view.use_by is not None and not view.clock_running
    late = as_("jonas").submit(record_url("SCR-001") + "/thaw-end")
    assert late.status_code == 409 and "the preparation record is closed" in late.text


# --- the API --------------------------------------------------------------------------------------------------


def test_the_api_records_the_same_steps_and_names_the_field_it_refuses(site, as_, db):
    randomised(as_, "SCR-001")
    kit_number = started(as_, "SCR-001")
    jonas, url = as_("jonas"), f"/api/v1{record_url('SCR-001')}"
    assert jonas.post(url + "/thaw-end", json={}).status_code == 200
    wrong = jonas.post(url + "/units", json={"unit_code": "ASC-2026-0101-V999"})
    assert (wrong.status_code, wrong.json()["field"]) == (422, "unit_code")
    for code in units_of(db, kit_number).values():
        assert jonas.post(url + "/units", json={"unit_code": code}).status_code == 201
    bad_measure = jonas.post(url + "/masking", json={"masking_measure": "none"})
    assert (bad_measure.status_code, bad_measure.json()["field"]) == (422, "masking_measure")
    assert jonas.post(url + "/masking", json={"masking_measure": MEASURE}).status_code == 200
    too_much = jonas.post(url + "/syringes", json={"gland": "right", "volume_ml": 9})
    assert (too_much.status_code, too_much.json()["field"]) == (422, "volume_ml")
    for gland in ("left", "right"):
        assert jonas.post(url + "/syringes", json={"gland": gland, "volume_ml": 1}).status_code == 201
        label = jonas.post(f"{url}/labels/{gland}")
        assert label.status_code == 200 and label.content.startswith(b"%PDF")
    answer = jonas.get(url).json()
    assert answer["complete"] and answer["units_scanned"] == 2 and answer["clock_running"]
    assert all(code not in str(answer) for code in units_of(db, kit_number).values())
    assert as_("ida").get(url).status_code == 403


def test_a_treatment_number_past_what_a_database_holds_is_not_found_on_every_visit_page(site, as_):
    randomised(as_, "SCR-001")
    huge = 2**64
    assert as_("jonas").get(f"/preparation/{STUDY}/SCR-001/{huge}").status_code == 404
    assert as_("ida").get(f"/participants/{STUDY}/SCR-001/visits/{huge}/bedside").status_code == 404
    answer = as_("ida").get(f"/api/v1/participants/{STUDY}/SCR-001/visits/{huge}")
    assert answer.status_code == 404 and answer.json()["field"] == "treatment"
