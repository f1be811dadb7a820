"""The QR image of each kit is made once and kept under the hash of all it follows from, the label
font is read once and its subsets kept, and a PDF assembled from kept images, kept subsets and
written-once text is the very PDF drawn the plain way."""
from __future__ import annotations

import hashlib
import inspect
import io
import zlib
from datetime import UTC, datetime

import fontTools
import fpdf
import pypdf
import pytest
import zxingcpp
from fontTools import ttLib
from PIL import Image

from cellbench import qrpayload
from cellbench.identifiers import new_kit_numbers
from cellbench.labels import (
    DEFAULT_SHEET,
    DEFAULT_SIZE,
    LabelKind,
    fonts,
    qrcache,
    render_label_sheet_pdf,
    render_single_label_pdf,
)
from cellbench.labels.fonts import BASES, SUBSETS, new_pdf
from cellbench.labels.layout import label_layout, label_lines, use_font
from cellbench.labels.qrcache import QR_IMAGES, SIDE, QrImageCache, image_key, packed_rows, place_qr
from cellbench.labels.sheets import sheet_slots
from cellbench.labels.syringe import SYRINGE_SIZE, SyringeLabelText, _draw, render_syringe_labels_pdf

from .test_labels import SECRET, kit_label

PRINTED = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def kits() -> list[str]:
    return new_kit_numbers(12)


def drawn_the_plain_way(labels, kind: LabelKind) -> bytes:
    """Every line through fpdf2's text(), every symbol made anew, the font read and its subset cut
    by fpdf2 from the whole face: the sheet as it is drawn with nothing kept."""
    size, sheet = DEFAULT_SIZE[kind], DEFAULT_SHEET[kind]
    pdf = new_pdf((sheet.page_width_mm, sheet.page_height_mm), PRINTED, shared_faces=False)
    pdf.set_title(f"cellbench {kind.value} labels")
    for label, (new_page, x0, y0) in zip(labels, sheet_slots(len(labels), size, sheet), strict=True):
        if new_page:
            pdf.add_page()
        layout = label_layout(label.study, kind, size)
        quiet = qrpayload.QR_QUIET_ZONE * layout.module
        QR_IMAGES.clear()
        place_qr(pdf, label.qr_payload, x0 + layout.qr_x - quiet, y0 + layout.qr_y - quiet, SIDE * layout.module)
        for run, text in label_lines(pdf, layout, label):
            use_font(pdf, run)
            pdf.text(x0 + run.x, y0 + run.y, text)
    assert not pdf.shared_faces
    return bytes(pdf.output())


@pytest.mark.parametrize("kind", [LabelKind.OUTER, LabelKind.VIAL])
def test_a_sheet_from_kept_images_subsets_and_text_is_the_same_bytes_as_one_drawn_the_plain_way(kits, kind):
    """So a run downloads again byte for byte whatever the caches held when it was first printed.
    Fails if an fpdf2 or fontTools upgrade changes what the caches rely on."""
    labels = [kit_label(kit, participant_number="P-0007" if i == 3 else None) for i, kit in enumerate(kits)]
    labels = labels if kind is LabelKind.OUTER else [label for label in labels for _ in range(2)]
    QR_IMAGES.clear()
    SUBSETS.clear()
    cold = render_label_sheet_pdf(labels, kind, creation_date=PRINTED)
    assert SUBSETS.made == 2  # the regular and the bold face, each cut once
    warm = render_label_sheet_pdf(labels, kind, creation_date=PRINTED)
    assert SUBSETS.made == 2  # and found the second time
    assert cold == warm == drawn_the_plain_way(labels, kind)


def test_a_single_label_pdf_with_kept_faces_is_the_same_bytes_as_one_with_faces_read_the_plain_way(kits):
    labels = [kit_label(kit) for kit in kits[:3]]
    SUBSETS.clear()
    cold = render_single_label_pdf(labels, creation_date=PRINTED)
    warm = render_single_label_pdf(labels, creation_date=PRINTED)
    plain = new_pdf((DEFAULT_SIZE[LabelKind.OUTER].width_mm, DEFAULT_SIZE[LabelKind.OUTER].height_mm), PRINTED,
                    shared_faces=False)
    plain.set_title("cellbench outer label")
    layout = label_layout(labels[0].study, LabelKind.OUTER, DEFAULT_SIZE[LabelKind.OUTER])
    quiet = qrpayload.QR_QUIET_ZONE * layout.module
    for label in labels:
        plain.add_page()
        place_qr(plain, label.qr_payload, layout.qr_x - quiet, layout.qr_y - quiet, SIDE * layout.module)
        for run, text in label_lines(plain, layout, label):
            use_font(plain, run)
            plain.text(run.x, run.y, text)
    assert cold == warm == bytes(plain.output())


def syringe_label(kit: str, n: int, gland: str = "left submandibular gland") -> SyringeLabelText:
    use_by = f"2026-03-{n % 28 + 1:02d} {n % 24:02d}:{n % 60:02d} +01:00"
    return SyringeLabelText("NCT07290946", f"R{n:03d}", gland, kit, use_by, qrpayload.make_payload(kit, SECRET))


def syringe_drawn_the_plain_way(label: SyringeLabelText) -> bytes:
    pdf = new_pdf((SYRINGE_SIZE.width_mm, SYRINGE_SIZE.height_mm), PRINTED, shared_faces=False)
    pdf.set_title("cellbench syringe label")
    pdf.add_page()
    _draw(pdf, label)
    return bytes(pdf.output())


def test_labels_each_with_new_glyphs_are_cut_from_the_faces_base_and_are_the_bytes_cut_from_the_whole_face(kits):
    """Every syringe label needs its own digits: none finds its subset kept. From a face's second
    such miss on, they are cut from the face's base (the repertoire's glyphs), with the same bytes."""
    BASES.clear()
    SUBSETS.clear()
    fonts._MISSED_ONCE.clear()
    labels = [syringe_label(kit, n, "left submandibular gland" if n % 2 else "Højre glandula submandibularis")
              for n, kit in enumerate(kits)]
    made = [render_syringe_labels_pdf(label, creation_date=PRINTED) for label in labels]
    assert len(BASES) == 2  # the regular and the bold face, each cut to its base once
    assert made == [syringe_drawn_the_plain_way(label) for label in labels]


def test_a_label_with_a_glyph_outside_the_repertoire_is_cut_from_the_whole_face_with_the_same_bytes(kits):
    BASES.clear()
    SUBSETS.clear()
    fonts._MISSED_ONCE.clear()
    for n, kit in enumerate(kits[:2]):  # the second makes the bases
        render_syringe_labels_pdf(syringe_label(kit, n), creation_date=PRINTED)
    greek = syringe_label(kits[2], 7, "glandula submandibularis (Ω)")
    assert ord("Ω") not in fonts.REPERTOIRE
    assert render_syringe_labels_pdf(greek, creation_date=PRINTED) == syringe_drawn_the_plain_way(greek)


def test_a_faces_base_is_kept_under_the_faces_key_which_changes_with_the_font_and_the_library_versions(monkeypatch):
    """What invalidates a base: another font file, or another fpdf2 or fontTools (the face's key)."""
    face = fonts._parsed(str(fonts.find_label_fonts().regular), "")
    assert face is not None
    assert face.key.startswith(hashlib.sha256(face.data).hexdigest())
    assert f"fpdf2={fpdf.__version__}" in face.key and f"fonttools={fontTools.version}" in face.key
    BASES.clear()
    fonts._MISSED_ONCE.clear()
    cmap = ttLib.TTFont(io.BytesIO(face.data)).getBestCmap()
    names = frozenset({cmap[ord("A")], cmap[ord("1")]})
    assert fonts._base_for(face, names) is None  # a first miss: cut from the whole face
    assert fonts._base_for(face, names) is not None and BASES.get(face.key) is not None
    assert fonts._base_for(face, names | {cmap[ord("Ω")]}) is None  # not in the base: from the whole face


def test_the_symbol_image_is_the_symbols_modules_one_bit_each_and_scans(kits):
    """1 = light, the quiet zone light all round, each row padded to whole bytes; and a scanner
    reads the image back as the signed payload."""
    payload = qrpayload.make_payload(kits[0], SECRET)
    image = QrImageCache().image(payload)
    assert (image.info["bpc"], image.info["cs"], image.info["w"], image.info["h"]) == (1, "DeviceGray", SIDE, SIDE)
    rows = zlib.decompress(image.info["data"])
    assert rows == packed_rows(payload) and len(rows) == SIDE * ((SIDE + 7) // 8)
    symbol = Image.frombytes("1", (SIDE, SIDE), rows)
    quiet = qrpayload.QR_QUIET_ZONE
    dark = [[not symbol.getpixel((x, y)) for x in range(SIDE)] for y in range(SIDE)]
    matrix = qrpayload.qr_matrix(payload)
    assert [row[quiet:-quiet] for row in dark[quiet:-quiet]] == matrix
    assert not any(any(row) for row in dark[:quiet] + dark[-quiet:])
    assert not any(any(row[:quiet] + row[-quiet:]) for row in dark)
    big = symbol.convert("L").resize((SIDE * 6, SIDE * 6), Image.Resampling.NEAREST)
    assert [result.text for result in zxingcpp.read_barcodes(big)] == [payload]


def test_each_kits_image_is_made_once_for_its_outer_and_vial_labels_and_every_reprint(kits):
    QR_IMAGES.clear()
    outer = [kit_label(kit) for kit in kits]
    render_label_sheet_pdf(outer, LabelKind.OUTER)
    render_label_sheet_pdf([label for label in outer for _ in range(2)], LabelKind.VIAL)
    render_single_label_pdf(outer[:3], LabelKind.OUTER)
    assert QR_IMAGES.made == len(kits)


def test_a_kits_symbol_is_stored_once_in_a_pdf_however_many_of_its_labels_it_holds(kits):
    vial = render_label_sheet_pdf([kit_label(kit) for kit in kits[:4] for _ in range(3)], LabelKind.VIAL)
    page = pypdf.PdfReader(io.BytesIO(vial)).pages[0]
    assert len(page.images) == 4


def test_the_key_changes_with_the_payload_and_with_every_rendering_parameter(kits, monkeypatch):
    payload = qrpayload.make_payload(kits[0], SECRET)
    key = image_key(payload)
    assert image_key(qrpayload.make_payload(kits[1], SECRET)) != key
    assert image_key(qrpayload.make_payload(kits[0], SECRET + "-rotated")) != key
    for parameter, other in [("QR_VERSION", 6), ("QR_ERROR_CORRECTION", "Q"), ("QR_MASK", 3), ("QR_QUIET_ZONE", 2)]:
        with monkeypatch.context() as changed:
            changed.setattr(qrcache, parameter, other)
            assert image_key(payload) != key, parameter
    with monkeypatch.context() as changed:
        changed.setattr(qrcache, "COMPRESSION", 9)
        assert image_key(payload) != key
    assert image_key(payload) == key


def test_the_key_is_the_payload_alone_which_no_arm_can_reach():
    """The blind: the image, its key and whether it is found follow from the kit number and its
    signature only (qrpayload.make_payload takes nothing else), the same way for both arms."""
    assert list(inspect.signature(image_key).parameters) == ["payload"]
    assert list(inspect.signature(QrImageCache.image).parameters) == ["self", "payload"]
    assert list(inspect.signature(qrpayload.make_payload).parameters) == ["kit_number", "secret_key"]


def test_the_cache_keeps_at_most_its_limit_and_drops_the_least_recently_used(kits):
    cache = QrImageCache(limit=3)
    payloads = [qrpayload.make_payload(kit, SECRET) for kit in kits[:4]]
    for payload in payloads[:3]:
        cache.image(payload)
    cache.image(payloads[0])  # used again: now the most recent
    cache.image(payloads[3])  # pushes out payloads[1]
    assert len(cache) == 3 and cache.made == 4
    cache.image(payloads[0])
    cache.image(payloads[2])
    assert cache.made == 4
    cache.image(payloads[1])
    assert cache.made == 5
