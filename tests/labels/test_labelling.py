"""Label runs: the labels of real kits carry every particular and scan back to their kits, an active
and a placebo kit's labels differ only in kit number and QR code, every label printed is accounted
for, and only the supply manager prints and reconciles."""
from __future__ import annotations

import ast
import io
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pypdf
import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import event, select

from cellbench import kits, qrpayload, studies
from cellbench.errors import Conflict, DomainError, Forbidden, InvalidInput
from cellbench.labels import printed_expiry
from cellbench.labels import printing as labelling
from cellbench.models import AuditEvent, BlindedLot, Kit, LabelRun, LabelRunKit

from ..conftest import ROOT, SECRET, actor_of
from ..kitworld import build

STUDY = "NCT07290946"


def blinded_lot(db, kit_world) -> BlindedLot:
    with db.read() as s:
        return kits.blinded_lot_of(s, kits.by_number(s, kit_world.active[0]))


def print_run(db, who="sara", *, study=STUDY, secret=SECRET, **options):
    """A run printed through the service, committed: (run number, output, media type)."""
    options.setdefault("kind", "outer")
    options.setdefault("output", "sheet")
    with db.write() as s:
        run, data, media_type = labelling.print_run(s, actor_of(db, who), studies.by_code(s, study),
                                                    secret_key=secret, **options)
        return run.number, data, media_type


def reconcile(db, number, applied, spoiled, destroyed, reason=None, who="sara"):
    with db.write() as s:
        return labelling.reconcile(s, actor_of(db, who), labelling.by_number(s, number), applied, spoiled, destroyed,
                                   reason=reason)


def pages_text(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


def flat(text: str) -> str:
    """Text as read, whatever the label's line breaks."""
    return " ".join(text.split())


def scanned_payloads(pdf: bytes, tmp_path: Path) -> list[str]:
    """Every QR code on the PDF's pages, as a scanner sees them: rasterised, then decoded."""
    folder = tmp_path / f"scan-{time.perf_counter_ns()}"
    folder.mkdir()
    (folder / "labels.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "200", "-gray", "-png", str(folder / "labels.pdf"), str(folder / "page")],
                   check=True)
    found = []
    for page in sorted(folder.glob("page*.png")):
        found += [r.text for r in zxingcpp.read_barcodes(Image.open(page), formats=zxingcpp.BarcodeFormat.QRCode)]
    return found


def blinded_text(text: str, kit_number: str) -> str:
    """The output with the kit's own number and QR payload replaced by placeholders."""
    return text.replace(qrpayload.make_payload(kit_number, SECRET), "<QR>").replace(kit_number, "<KIT>")


# --- what a run prints ----------------------------------------------------------------------------


def test_a_run_prints_the_annex_vi_particulars_for_every_kit_of_the_blinded_lot(kit_world, db):
    blinded = blinded_lot(db, kit_world)
    everyone = sorted(kit_world.active + kit_world.placebo)
    number, pdf, media_type = print_run(db, blinded_lot_code=blinded.code, output="single")
    assert media_type == "application/pdf"
    texts = pages_text(pdf)
    assert len(texts) == len(everyone), "one page per kit"
    for kit_number, text in zip(everyone, map(flat, texts), strict=True):
        for particular in [
            kit_number, blinded.code, printed_expiry(blinded.expiry), "NCT07290946", "EU CT 2025-522559-25-00",
            "Allogeneic adipose-derived stromal cells 25 × 10⁶ cells or placebo (0.9 % NaCl)",
            "Allogene fedtvævsafledte stromale celler 25 × 10⁶ celler eller placebo",
            "Suspension for injection", "Injektionsvæske, suspension",
            "Intraglandular injection into the submandibular gland", "2 vials of 1.0 mL", "2 hætteglas à 1,0 ml",
            "For clinical trial use only", "Kun til klinisk forsøg",
            "Store at ≤ −150 °C", "Opbevares ved ≤ −150 °C",
            "Emergency contact, 24 h: +45 23 31 25 52", "Sponsor: Christian von Buchwald, Rigshospitalet",
        ]:
            assert particular in text, (kit_number, particular)
    with db.read() as s:
        run = labelling.by_number(s, number)
        assert run.printed == len(everyone) and run.kind == "outer" and run.output == "single"
        assert run.blinded_lot_id == blinded.id and run.applied is None and run.reconciled_at is None
        assert [k.number for k in labelling.kits_of(s, run)] == everyone


def test_vial_labels_are_one_per_dose_and_carry_the_reduced_set(kit_world, db):
    blinded = blinded_lot(db, kit_world)
    everyone = sorted(kit_world.active + kit_world.placebo)
    number, pdf, _ = print_run(db, blinded_lot_code=blinded.code, kind="vial", output="single")
    texts = pages_text(pdf)
    assert len(texts) == 2 * len(everyone), "two glands, two vials, two labels a kit"
    for page, text in enumerate(map(flat, texts)):
        for particular in [everyone[page // 2], f"Lot {blinded.code}", f"EXP {printed_expiry(blinded.expiry)}",
                           "NCT07290946", "Intraglandular injection", "Allogeneic ASC or placebo (0.9 % NaCl)",
                           "Allogene ASC eller placebo", "+45 23 31 25 52"]:
            assert particular in text, (page, particular)
    with db.read() as s:
        assert labelling.by_number(s, number).printed == 2 * len(everyone)
        assert len(s.scalars(select(LabelRunKit)).all()) == len(everyone), "the kits, once each"


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) not installed")
@pytest.mark.parametrize("kind", ["outer", "vial"])
def test_the_qr_codes_on_the_printed_sheet_scan_as_their_own_kits(kit_world, db, tmp_path, kind):
    blinded = blinded_lot(db, kit_world)
    everyone = sorted(kit_world.active + kit_world.placebo)
    _, pdf, _ = print_run(db, blinded_lot_code=blinded.code, kind=kind, output="sheet")
    payloads = scanned_payloads(pdf, tmp_path)
    with db.read() as s:
        scanned = sorted(kits.scan(s, payload, SECRET).number for payload in payloads)
    assert scanned == sorted(everyone * (1 if kind == "outer" else 2))


def test_the_zpl_carries_each_kits_signed_code_and_the_same_particulars(kit_world, db):
    blinded = blinded_lot(db, kit_world)
    _, zpl, media_type = print_run(db, blinded_lot_code=blinded.code, output="zpl")
    text = zpl.decode("utf-8")
    assert media_type.startswith("text/plain") and text.count("^XA") == text.count("^XZ") == 8
    for number in kit_world.active + kit_world.placebo:
        assert f"^FDMM,A{qrpayload.make_payload(number, SECRET)}^FS" in text
    for particular in ("For clinical trial use only", "Kun til klinisk forsøg", "Store at <= -150 °C", blinded.code):
        assert text.count(particular) == 8, particular


@pytest.mark.parametrize("kind", ["outer", "vial"])
def test_an_active_and_a_placebo_kits_labels_differ_only_in_kit_number_and_qr_code(kit_world, db, kind):
    active, placebo = kit_world.pair
    outputs = {}
    for number in (active, placebo):
        _, pdf, _ = print_run(db, kit_numbers=[number], kind=kind, output="single")
        _, zpl, _ = print_run(db, kit_numbers=[number], kind=kind, output="zpl")
        outputs[number] = ("\f".join(pages_text(pdf)), zpl.decode("utf-8"))
    for pdf_or_zpl in (0, 1):
        one, other = (blinded_text(outputs[n][pdf_or_zpl], n) for n in (active, placebo))
        assert one == other
        assert "<KIT>" in one and active not in one
    assert "<QR>" in blinded_text(outputs[active][1], active), "the ZPL carries the code itself"


def test_labelling_never_reaches_the_sealed_compartment(kit_world, db):
    """By construction: no import of anything arm-aware, and no SQL on a sealed table."""
    for path in sorted((ROOT / "cellbench" / "labels").glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    for alias in node.names} | {node.module or "" for node in ast.walk(tree)
                                                if isinstance(node, ast.ImportFrom)}
        assert not imported & {"sealed", "supply", "packaging", "quarantine", "lists", "cellbench.sealed",
                               "cellbench.supply"}, path.name
        assert not re.search(r"\bSealed\w+", path.read_text()), path.name
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        number, _, _ = print_run(db, blinded_lot_code=blinded_lot(db, kit_world).code)
        with db.write() as s:
            labelling.rendered(s, actor_of(db, "sara"), labelling.by_number(s, number), SECRET)
        reconcile(db, number, 8, 0, 0)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert statements and not [sql for sql in statements if "sealed_" in sql.lower()]


# --- runs, downloads, refusals -------------------------------------------------------------------


def test_printing_the_same_kits_again_is_a_new_run_with_its_own_audit_event(kit_world, db):
    code = blinded_lot(db, kit_world).code
    first, _, _ = print_run(db, blinded_lot_code=code)
    second, _, _ = print_run(db, kit_numbers=[kit_world.placebo[0]])
    assert first != second and first.startswith("LR-") and int(second[-4:]) == int(first[-4:]) + 1
    with db.read() as s:
        runs = {r.number: r for r in labelling.runs(s)}
        assert runs[first].printed == 8 and runs[second].printed == 1
        assert runs[second].blinded_lot_id == runs[first].blinded_lot_id, "one kit: its blinded lot"
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "label run printed")
                           .order_by(AuditEvent.seq)).all()
        listed = s.scalars(select(AuditEvent).where(AuditEvent.action == "label run kits")
                           .order_by(AuditEvent.seq)).all()
    assert [e.entity_id for e in events] == [first, second] and events[0].user_name == "Sara Supply"
    recorded = json.loads(events[1].new_value)
    assert recorded["kits"] == 1 and recorded["labels"] == 1 and recorded["kind"] == "outer"
    assert listed[0].new_value == " ".join(sorted(kit_world.active + kit_world.placebo))
    assert listed[1].new_value == kit_world.placebo[0] and listed[1].entity_id == second
    assert events[1].visibility == "all", "nothing in it depends on an arm"


def test_a_download_gives_the_same_bytes_again_and_is_recorded(kit_world, db):
    code = blinded_lot(db, kit_world).code
    for output in ("sheet", "single", "zpl"):
        number, data, media_type = print_run(db, blinded_lot_code=code, output=output)
        if output == "sheet":
            time.sleep(1.1)  # the PDF must not take the time of the download
        with db.write() as s:
            again, again_type = labelling.rendered(s, actor_of(db, "anna"), labelling.by_number(s, number), SECRET)
        assert again == data and again_type == media_type, output
    with db.read() as s:
        downloads = s.scalars(select(AuditEvent).where(AuditEvent.action == "label run downloaded")).all()
    assert len(downloads) == 3 and {e.user_name for e in downloads} == {"Anna QA"}


def test_a_run_that_would_no_longer_print_the_same_is_not_downloaded_again(kit_world, db):
    number, _, _ = print_run(db, blinded_lot_code=blinded_lot(db, kit_world).code)
    with db.write() as s, pytest.raises(Conflict, match="Print a new run"):
        labelling.rendered(s, actor_of(db, "sara"), labelling.by_number(s, number), "a-rotated-secret-key-000000000000")


def test_planned_kits_unknown_kits_and_bad_choices_are_refused_naming_the_field(db, people, effective_specs):
    build(db, kits=8, listed=10)  # two kit numbers on the list are not packaged yet
    with db.read() as s:
        planned = s.scalars(select(Kit).where(Kit.blinded_lot_id.is_(None))).first()
        packaged = s.scalars(select(Kit).where(Kit.blinded_lot_id.is_not(None))).first().number
        code = s.scalars(select(BlindedLot)).one().code
    with db.read() as s, pytest.raises(InvalidInput, match="no blinded lot") as refused:
        labelling.kit_labels(s, [planned], SECRET)
    assert refused.value.field == "kit_numbers"
    cases = [
        ({"kit_numbers": [planned.number]}, "kit_numbers", "no blinded lot"),
        ({"kit_numbers": [packaged, "ZZZZ"]}, "kit_numbers", "ZZZZ"),
        ({"blinded_lot_code": code, "kind": "carton"}, "kind", "outer, vial"),
        ({"blinded_lot_code": code, "output": "png"}, "output", "sheet, single, zpl"),
        ({}, "blinded_lot", "Choose a blinded lot"),
        ({"blinded_lot_code": "XB26-999"}, "blinded_lot", "XB26-999"),
        ({"blinded_lot_code": code, "study": "NCT06805448"}, "blinded_lot", "another study"),
        ({"kit_numbers": [packaged], "study": "NCT06805448"}, "kit_numbers", "another study"),
    ]
    for options, field, words in cases:
        with pytest.raises(DomainError) as refused:
            print_run(db, **options)
        assert refused.value.field == field and words in refused.value.message, (options, refused.value)
    with db.read() as s:
        assert s.scalars(select(LabelRun)).all() == [], "a refusal prints and records nothing"


# --- reconciliation -------------------------------------------------------------------------------


def test_a_run_is_reconciled_once_when_every_label_is_accounted_for(kit_world, db):
    number, _, _ = print_run(db, blinded_lot_code=blinded_lot(db, kit_world).code, kind="vial")  # 16 labels
    run = reconcile(db, number, "13", "2", 1, reason="two labels creased on the vial shoulder")
    assert (run.printed, run.applied, run.spoiled, run.destroyed) == (16, 13, 2, 1)
    with db.read() as s:
        view = labelling.view(s, labelling.by_number(s, number))
        (done,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "label run reconciled")).all()
    assert view.reconciled_by == "Sara Supply" and view.balance == "16 = 13 + 2 + 1"
    assert json.loads(done.new_value) == {"printed": 16, "applied": 13, "spoiled": 2, "destroyed": 1}
    assert done.reason == "two labels creased on the vial shoulder"
    with pytest.raises(InvalidInput, match="cannot be reconciled again"):
        reconcile(db, number, 16, 0, 0)


def test_a_reconciliation_that_does_not_balance_or_is_not_whole_numbers_is_refused(kit_world, db):
    number, _, _ = print_run(db, blinded_lot_code=blinded_lot(db, kit_world).code)  # 8 labels
    cases = [
        ((6, 1, 0, None), "applied", "1 label is not accounted for"),
        ((5, 0, 0, None), "applied", "3 labels are not accounted for"),
        ((8, 0, 2, None), "applied", "2 more than were printed"),
        (("", 0, 0, None), "applied", "whole number"),
        ((8, "1.5", 0, None), "spoiled", "whole number"),
        ((8, 0, -1, None), "destroyed", "cannot be negative"),
        ((8, 0, "two", None), "destroyed", "whole number"),
        ((True, 0, 0, None), "applied", "whole number"),
        ((7, 1, 0, "  "), "reason", "why labels were spoiled"),
    ]
    for (applied, spoiled, destroyed, reason), field, words in cases:
        with pytest.raises(InvalidInput) as refused:
            reconcile(db, number, applied, spoiled, destroyed, reason)
        assert refused.value.field == field and words in refused.value.message, (applied, spoiled, destroyed)
    with db.read() as s:
        assert labelling.by_number(s, number).reconciled_at is None
        assert not s.scalars(select(AuditEvent).where(AuditEvent.action == "label run reconciled")).all()
    assert reconcile(db, number, 8, 0, 0).applied == 8


def test_only_the_supply_manager_prints_and_reconciles(kit_world, db):
    number, _, _ = print_run(db, blinded_lot_code=blinded_lot(db, kit_world).code)
    for who in ("anna", "frida", "adam", "olivia"):
        with pytest.raises(Forbidden):
            print_run(db, who, kit_numbers=[kit_world.active[0]])
        with pytest.raises(Forbidden):
            reconcile(db, number, 8, 0, 0, who=who)


# --- pages and API --------------------------------------------------------------------------------


def test_the_supply_manager_prints_downloads_and_reconciles_a_run_on_its_pages(kit_world, as_, db):
    client = as_("sara")
    code = blinded_lot(db, kit_world).code
    form = client.get(f"/labels/new?blinded_lot={code}")
    assert form.status_code == 200 and f'<input name="blinded_lot" value="{code}"' in form.text, "typed, not listed"
    assert f'<option value="{STUDY}" selected' in form.text
    created = client.submit("/labels", {"study": STUDY, "blinded_lot": code, "kit_numbers": "", "kind": "vial",
                                        "output": "sheet"})
    assert created.status_code == 303
    page = client.get(created.headers["location"])
    number = re.search(r"LR-\d{4}-\d{4}", created.headers["location"]).group(0)
    assert page.status_code == 200 and "16 labels printed" in page.text and f"{number}-vial.pdf" in page.text
    assert all(k in page.text for k in kit_world.active + kit_world.placebo)
    download = client.get(f"/labels/{number}/download")
    assert download.status_code == 200 and download.headers["content-type"] == "application/pdf"
    assert f'filename="{number}-vial.pdf"' in download.headers["content-disposition"]
    assert len(pypdf.PdfReader(io.BytesIO(download.content)).pages) >= 1

    home = client.get("/")
    assert "label run awaits your reconciliation" in home.text and f'href="/labels/{number}"' in home.text
    listing = client.get("/labels?open=1")
    assert number in listing.text and "16 printed, not yet accounted for" in listing.text

    short = client.submit(f"/labels/{number}/reconciliation", {"applied": "14", "spoiled": "0", "destroyed": "0",
                                                               "reason": ""})
    assert short.status_code == 422 and "2 labels are not accounted for" in short.text
    assert 'value="14"' in short.text, "what was typed is kept"
    done = client.submit(f"/labels/{number}/reconciliation", {"applied": "14", "spoiled": "0", "destroyed": "2"})
    assert done.status_code == 303
    page = client.get(done.headers["location"])
    assert "16 = 14 + 0 + 2" in page.text and "/reconciliation" not in page.text
    assert "your reconciliation" not in client.get("/").text
    assert "16 = 14 + 0 + 2" in client.get("/labels").text


def test_a_refused_print_keeps_the_form_and_names_the_field(kit_world, as_):
    client = as_("sara")
    refused = client.submit("/labels", {"study": STUDY, "blinded_lot": "", "kit_numbers": "AAAA-AAAA-A",
                                        "kind": "outer", "output": "zpl"})
    assert refused.status_code == 422 and 'class="field invalid"><span>Only these kits' in refused.text
    assert ">AAAA-AAAA-A</textarea>" in refused.text and 'value="zpl" checked' in refused.text


def test_the_api_prints_returns_the_output_and_reconciles(kit_world, as_, db):
    client = as_("sara")
    code = blinded_lot(db, kit_world).code
    created = client.post("/api/v1/label-runs", json={"study": STUDY, "blinded_lot": code, "kind": "outer",
                                                      "output": "zpl"})
    assert created.status_code == 201, created.text
    run = created.json()
    assert run["printed"] == 8 and run["kits"] == 8 and run["blinded_lot"] == code and run["reconciled"] is False
    assert run["kit_numbers"] == sorted(kit_world.active + kit_world.placebo)
    output = client.get(run["output_url"])
    assert output.status_code == 200 and output.text.count("^XA") == 8
    open_runs = client.get("/api/v1/label-runs", params={"open_only": True}).json()["label_runs"]
    assert open_runs[0]["number"] == run["number"]
    bad = client.post(f"/api/v1/label-runs/{run['number']}/reconciliation", json={"applied": 9, "spoiled": 0,
                                                                                  "destroyed": 0})
    assert bad.status_code == 422 and bad.json()["field"] == "applied" and "1 more than" in bad.json()["error"]
    done = client.post(f"/api/v1/label-runs/{run['number']}/reconciliation",
                       json={"applied": 7, "spoiled": 1, "destroyed": 0, "reason": "torn while peeling"})
    assert done.status_code == 200 and done.json()["reconciled"] is True and done.json()["spoiled"] == 1
    assert client.get("/api/v1/label-runs", params={"open_only": True}).json()["label_runs"] == []
    again = client.post(f"/api/v1/label-runs/{run['number']}/reconciliation", json={"applied": 8, "spoiled": 0,
                                                                                    "destroyed": 0})
    assert again.status_code == 422 and "again" in again.json()["error"]


def test_blinded_roles_get_403_and_qa_may_only_read(kit_world, as_, db):
    number, _, _ = print_run(db, blinded_lot_code=blinded_lot(db, kit_world).code)
    reads = ["/labels", "/labels/new", f"/labels/{number}", f"/labels/{number}/download", "/api/v1/label-runs",
             f"/api/v1/label-runs/{number}", f"/api/v1/label-runs/{number}/output"]
    for who in ("frida", "ida", "mette", "adam"):
        client = as_(who)
        for path in reads:
            assert client.get(path).status_code == 403, (who, path)
        assert client.post("/api/v1/label-runs", json={"study": STUDY, "kit_numbers": [kit_world.active[0]],
                                                       "kind": "outer"}).status_code == 403
        assert client.submit(f"/labels/{number}/reconciliation", {"applied": 8, "spoiled": 0,
                                                                  "destroyed": 0}).status_code == 403
        assert 'href="/labels"' not in client.get("/").text
    qa = as_("anna")
    for path in reads:
        if path != "/labels/new":
            assert qa.get(path).status_code == 200, path
    assert qa.get("/labels/new").status_code == 403
    assert qa.post("/api/v1/label-runs", json={"study": STUDY, "kit_numbers": [kit_world.active[0]],
                                               "kind": "outer"}).status_code == 403
    assert qa.post(f"/api/v1/label-runs/{number}/reconciliation",
                   json={"applied": 8, "spoiled": 0, "destroyed": 0}).status_code == 403
    assert "/reconciliation" not in qa.get(f"/labels/{number}").text


def test_kits_that_are_gone_get_no_labels_and_a_lot_with_none_left_to_label_says_so(kit_world, db):
    code = blinded_lot(db, kit_world).code
    with db.write() as s:  # set directly: how a kit got there is tested with the kit moves
        kits.by_number(s, kit_world.placebo[0]).state = "destroyed"
    with pytest.raises(InvalidInput, match="destroyed: labels are printed only for kits") as refused:
        print_run(db, kit_numbers=[kit_world.active[0], kit_world.placebo[0]])
    assert refused.value.field == "kit_numbers"
    with db.write() as s:
        for kit in s.scalars(select(Kit)):
            kit.state = "at_site"
    with pytest.raises(InvalidInput, match="no packaged or released kits") as refused:
        print_run(db, blinded_lot_code=code)
    assert refused.value.field == "blinded_lot"
    number, _, _ = print_run(db, blinded_lot_code=code, kit_numbers=[kit_world.active[0]])
    with db.read() as s:
        assert labelling.by_number(s, number).printed == 1, "a kit at a site may be relabelled by number"
