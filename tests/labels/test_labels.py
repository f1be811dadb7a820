"""Kit and vial labels: the Annex VI particulars are printed, the QR codes scan, and two kits'
labels differ only in their kit numbers."""
from __future__ import annotations

import dataclasses
import io
import re
import shutil
import subprocess
from datetime import UTC, date

import pypdf
import pytest
import zxingcpp
from PIL import Image

from cellbench.identifiers import new_kit_numbers
from cellbench.labels import (
    KitLabel,
    LabelFontMissing,
    LabelKind,
    LabelSize,
    LabelStudy,
    SheetLayout,
    find_label_fonts,
    printed_expiry,
    render_label_sheet_pdf,
    render_single_label_pdf,
    render_zpl,
)
from cellbench.labels import fonts as label_fonts
from cellbench.labels import layout as label_layout
from cellbench.qrpayload import make_payload, verify_payload

SECRET = "label-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
MM = 72 / 25.4  # PDF points per millimetre

STUDY = LabelStudy(
    trial_code="NCT07290946",
    eu_ct_number="2025-522559-25-00",
    sponsor_name="Rigshospitalet",
    sponsor_address="Blegdamsvej 9, 2100 København Ø, Danmark",
    sponsor_phone="+45 35 45 35 45",
    emergency_phone="+45 23 31 25 52",
    cells_per_vial="25 × 10⁶",
    volume_per_vial_ml="1.5",
)


def kit_label(kit: str, **changes) -> KitLabel:
    label = KitLabel(STUDY, kit, make_payload(kit, SECRET), "BL-2025-014", date(2026, 3, 31))
    return dataclasses.replace(label, **changes)


def pdf_text(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


@pytest.fixture(scope="module")
def kits() -> list[str]:
    return new_kit_numbers(10)


def test_the_outer_label_carries_every_annex_vi_particular(kits):
    text = pdf_text(render_single_label_pdf(kit_label(kits[0])))[0]
    for particular in [
        kits[0], "BL-2025-014", "03/2026",  # kit number, blinded lot, month/year expiry
        "Allogeneic adipose-derived stromal cells 25 × 10⁶ cells or placebo (0.9 % NaCl)",
        "Allogene fedtvævsafledte stromale celler 25 × 10⁶ celler eller placebo",
        "(0,9 % NaCl)",
        "Suspension for injection", "Intraglandular injection into the submandibular gland",
        "2 vials of 1.5 mL", "2 hætteglas",
        "Store at ≤ −150 °C", "Opbevares ved ≤ −150 °C",
        "For clinical trial use only", "Kun til klinisk forsøg",
        "NCT07290946", "EU CT 2025-522559-25-00",
        "Sponsor: Rigshospitalet", "+45 35 45 35 45", "Emergency contact, 24 h: +45 23 31 25 52",
        "Participant no.: ____", "Visit: ____", "Investigator: ____",
        "Use as directed in the protocol",
    ]:
        assert particular in text, particular


def test_assigned_participant_visit_and_investigator_replace_the_blank_lines(kits):
    label = kit_label(kits[0], participant_number="DK-0412", visit="2", investigator="Dr. Ida Holm")
    text = pdf_text(render_single_label_pdf(label))[0]
    assert "Participant no.: DK-0412" in text and "Visit: 2" in text and "Investigator: Dr. Ida Holm" in text
    assert "____" not in text


def test_the_vial_label_carries_the_reduced_set_and_both_product_names(kits):
    text = pdf_text(render_single_label_pdf(kit_label(kits[0]), LabelKind.VIAL))[0]
    for particular in [
        kits[0], "Lot BL-2025-014", "EXP 03/2026", "NCT07290946", "Intraglandular injection",
        "+45 23 31 25 52", "Participant no.:", "Visit:", "Allogeneic ASC or placebo (0.9 % NaCl)",
        "Allogene ASC eller placebo",
    ]:
        assert particular in text, particular


def test_expiry_prints_as_month_and_year_never_later_than_the_real_date():
    assert printed_expiry(date(2026, 3, 31)) == "03/2026"
    assert printed_expiry(date(2026, 3, 15)) == "02/2026"
    assert printed_expiry(date(2027, 1, 10)) == "12/2026"
    assert printed_expiry(date(2028, 2, 29)) == "02/2028"


def test_a_single_label_pdf_page_is_exactly_the_label_size(kits):
    reader = pypdf.PdfReader(io.BytesIO(render_single_label_pdf([kit_label(k) for k in kits[:3]])))
    assert len(reader.pages) == 3
    box = reader.pages[0].mediabox
    assert float(box.width) == pytest.approx(99.1 * MM, abs=0.05)
    assert float(box.height) == pytest.approx(67.7 * MM, abs=0.05)


def test_the_sheet_is_a4_and_holds_as_many_labels_as_fit(kits):
    reader = pypdf.PdfReader(io.BytesIO(render_label_sheet_pdf([kit_label(k) for k in kits])))
    assert len(reader.pages) == 2  # 8 outer labels a page
    box = reader.pages[0].mediabox
    assert (float(box.width), float(box.height)) == pytest.approx((210 * MM, 297 * MM), abs=0.05)
    assert all(k in "".join(pdf_text(render_label_sheet_pdf([kit_label(k) for k in kits]))) for k in kits)


def test_sheet_margins_and_gaps_are_parameters_and_overfull_grids_are_refused(kits):
    tight = SheetLayout(margin_left_mm=0, margin_top_mm=0, gap_x_mm=0, gap_y_mm=0, columns=1, rows=1)
    sheet = render_label_sheet_pdf([kit_label(k) for k in kits[:3]], sheet=tight)
    assert len(pypdf.PdfReader(io.BytesIO(sheet)).pages) == 3
    with pytest.raises(ValueError, match="do not fit"):
        render_label_sheet_pdf([kit_label(kits[0])], sheet=SheetLayout(columns=3))


def test_every_qr_code_embedded_in_the_pdf_decodes_to_its_kit(kits):
    pdf = render_label_sheet_pdf([kit_label(k) for k in kits])
    decoded = []
    for page in pypdf.PdfReader(io.BytesIO(pdf)).pages:
        for image in page.images:
            big = image.image.resize((image.image.width * 6, image.image.height * 6))
            decoded += [r.text for r in zxingcpp.read_barcodes(big)]
    assert sorted(verify_payload(p, SECRET) for p in decoded) == sorted(kits)


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) not installed")
def test_qr_codes_scan_from_the_rendered_pdf_pages(kits, tmp_path):
    for kind in LabelKind:
        (tmp_path / "labels.pdf").write_bytes(render_label_sheet_pdf([kit_label(k) for k in kits], kind))
        subprocess.run(["pdftoppm", "-r", "200", "-gray", str(tmp_path / "labels.pdf"),
                        str(tmp_path / kind.value)], check=True)
        decoded = []
        for page in sorted(tmp_path.glob(f"{kind.value}*.pgm")):
            decoded += [r.text for r in zxingcpp.read_barcodes(Image.open(page))]
        assert sorted(verify_payload(p, SECRET) for p in decoded) == sorted(kits), kind


def test_zpl_has_one_well_formed_block_per_label_with_the_signed_payload(kits):
    batch = [kit_label(k) for k in kits[:3]]
    zpl = render_zpl(batch)
    blocks = re.findall(r"\^XA.*?\^XZ", zpl, flags=re.S)
    assert len(blocks) == 3 and zpl.count("^XA") == 3 and zpl.count("^XZ") == 3
    assert "".join(blocks).replace("\n", "") == zpl.replace("\n", "")  # nothing outside blocks
    for block, label in zip(blocks, batch, strict=True):
        assert "^CI28" in block and "^PW" in block and "^LL" in block
        assert f"^BQN,2,4,M,7^FDMM,A{label.qr_payload}^FS" in block
        assert label.kit_number in block
        assert block.count("^FO") == block.count("^FS")  # every field closed
        assert "Store at <= -150 °C" in block  # resident printer font: ≤ and − spelled out


def test_zpl_with_a_unicode_printer_font_keeps_the_exact_text(kits):
    zpl = render_zpl([kit_label(kits[0])], LabelKind.VIAL, font="E:DEJAVU.TTF")
    assert "^A@N," in zpl and "E:DEJAVU.TTF" in zpl and "10⁶" not in zpl  # vial has no strength
    outer = render_zpl([kit_label(kits[0])], font="E:DEJAVU.TTF")
    assert "Store at ≤ −150 °C" in outer and "25 × 10⁶ cells" in outer


def test_zpl_escapes_characters_that_would_be_read_as_commands(kits):
    zpl = render_zpl([kit_label(kits[0], investigator="A^B~C_D")])
    assert "A_5EB_7EC_5FD" in zpl


def test_the_label_input_cannot_say_which_arm_a_kit_is_on():
    assert [f.name for f in dataclasses.fields(KitLabel)] == [
        "study", "kit_number", "qr_payload", "blinded_lot", "expiry",
        "participant_number", "visit", "investigator",
    ]
    study_fields = {f.name for f in dataclasses.fields(LabelStudy)}
    assert not {"arm", "treatment", "content", "active", "placebo"} & (study_fields | {
        f.name for f in dataclasses.fields(KitLabel)})


@pytest.mark.parametrize("kind", list(LabelKind))
def test_two_kits_labels_differ_only_in_kit_number_and_payload(kits, kind):
    first, second = kit_label(kits[0]), kit_label(kits[1])

    def neutral(text: str, label: KitLabel) -> str:
        return text.replace(label.qr_payload, "<PAYLOAD>").replace(label.kit_number, "<KIT>")

    assert neutral(pdf_text(render_single_label_pdf(first, kind))[0], first) == \
        neutral(pdf_text(render_single_label_pdf(second, kind))[0], second)
    assert neutral(render_zpl([first], kind), first) == neutral(render_zpl([second], kind), second)
    sheet_first = pdf_text(render_label_sheet_pdf([first], kind))
    sheet_second = pdf_text(render_label_sheet_pdf([second], kind))
    assert [neutral(t, first) for t in sheet_first] == [neutral(t, second) for t in sheet_second]


def test_a_single_language_study_prints_only_that_language(kits):
    english = dataclasses.replace(STUDY, languages=("en",))
    text = pdf_text(render_single_label_pdf(kit_label(kits[0], study=english)))[0]
    assert "Store at ≤ −150 °C" in text and "Opbevares" not in text and " / " not in text
    with pytest.raises(ValueError, match="not available"):
        render_single_label_pdf(kit_label(kits[0], study=dataclasses.replace(STUDY, languages=("sv",))))


def test_text_that_does_not_fit_is_refused_not_cut_off(kits):
    verbose = dataclasses.replace(STUDY, sponsor_address="Blegdamsvej 9, " * 20)
    with pytest.raises(ValueError, match="does not fit"):
        render_single_label_pdf(kit_label(kits[0], study=verbose))
    with pytest.raises(ValueError, match="does not fit"):
        render_single_label_pdf(kit_label(kits[0], investigator="Professor " * 8))
    with pytest.raises(ValueError, match="does not fit"):
        render_single_label_pdf(kit_label(kits[0]), size=LabelSize(60, 30))


def test_without_a_unicode_font_labels_are_refused_with_an_install_hint(monkeypatch):
    monkeypatch.delenv("CELLBENCH_LABEL_FONT", raising=False)
    monkeypatch.setattr(label_fonts, "_font_dirs", list)
    find_label_fonts.cache_clear()
    try:
        with pytest.raises(LabelFontMissing, match="fonts-dejavu-core"):
            find_label_fonts()
    finally:
        find_label_fonts.cache_clear()


def test_a_regular_width_dejavu_is_narrowed_to_stand_in_for_the_condensed_face(monkeypatch, tmp_path, kits):
    regular = find_label_fonts().regular.with_name("DejaVuSans.ttf")
    if not regular.is_file():
        pytest.skip("DejaVuSans.ttf not installed")
    (tmp_path / "DejaVuSans.ttf").symlink_to(regular)
    monkeypatch.setattr(label_fonts, "_font_dirs", lambda: [tmp_path])
    find_label_fonts.cache_clear()
    label_layout.label_layout.cache_clear()
    try:
        fonts = find_label_fonts()
        assert fonts.stretch_percent < 100 and fonts.bold == fonts.regular
        assert "Store at ≤ −150 °C" in pdf_text(render_single_label_pdf(kit_label(kits[0])))[0]
    finally:
        find_label_fonts.cache_clear()
        label_layout.label_layout.cache_clear()


@pytest.mark.parametrize("render", [render_label_sheet_pdf, render_single_label_pdf])
def test_a_creation_date_makes_the_pdf_the_same_bytes_every_time(kits, render):
    """The PDF carries the date it is given, and its file identifier follows from the content and
    that date: the same labels and date give the same bytes, with no rewriting afterwards."""
    from datetime import datetime

    labels = [kit_label(k) for k in kits[:3]]
    printed = datetime(2026, 3, 1, 8, 30, 15, tzinfo=UTC)
    first = render(labels, creation_date=printed)
    again = render(labels, creation_date=printed)
    assert first == again
    assert b"/CreationDate (D:20260301083015Z)" in first
    assert render(labels, creation_date=printed.replace(second=16)) != first
    assert pypdf.PdfReader(io.BytesIO(first)).metadata.creation_date == printed
    with pytest.raises(ValueError, match="UTC offset"):
        render(labels, creation_date=datetime(2026, 3, 1, 8, 30))


def test_labelling_no_longer_rewrites_the_pdf_after_rendering():
    from cellbench.labels import printing as labelling

    assert not hasattr(labelling, "_stamp")
