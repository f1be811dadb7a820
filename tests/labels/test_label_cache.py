"""The QR image of each kit is made once and kept under the hash of all it follows from, and a PDF
assembled from kept images and written-once text is the very PDF drawn the plain way."""
from __future__ import annotations

import inspect
import io
from datetime import UTC, datetime

import pypdf
import pytest
from PIL import Image

from cellbench import qrpayload
from cellbench.identifiers import new_kit_numbers
from cellbench.labels import (
    DEFAULT_SHEET,
    DEFAULT_SIZE,
    LabelKind,
    qrcache,
    render_label_sheet_pdf,
    render_single_label_pdf,
)
from cellbench.labels.fonts import new_pdf
from cellbench.labels.layout import label_layout, label_lines, use_font
from cellbench.labels.qrcache import QR_IMAGES, QrImageCache, image_key
from cellbench.labels.sheets import sheet_slots

from .test_labels import SECRET, kit_label

PRINTED = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def kits() -> list[str]:
    return new_kit_numbers(12)


def drawn_the_plain_way(labels, kind: LabelKind) -> bytes:
    """Every line through fpdf2's text(), every symbol through image() from its pixels: the sheet
    as it was drawn before anything was kept."""
    size, sheet = DEFAULT_SIZE[kind], DEFAULT_SHEET[kind]
    pdf = new_pdf((sheet.page_width_mm, sheet.page_height_mm), PRINTED)
    pdf.set_title(f"cellbench {kind.value} labels")
    side = qrpayload.QR_MODULES + 2 * qrpayload.QR_QUIET_ZONE
    for label, (new_page, x0, y0) in zip(labels, sheet_slots(len(labels), size, sheet), strict=True):
        if new_page:
            pdf.add_page()
        layout = label_layout(label.study, kind, size)
        quiet = qrpayload.QR_QUIET_ZONE * layout.module
        pixels = Image.frombytes("L", (side, side), qrpayload.qr_pixels(label.qr_payload))
        pdf.image(pixels, x0 + layout.qr_x - quiet, y0 + layout.qr_y - quiet, side * layout.module,
                  side * layout.module)
        for run, text in label_lines(pdf, layout, label):
            use_font(pdf, run)
            pdf.text(x0 + run.x, y0 + run.y, text)
    return bytes(pdf.output())


@pytest.mark.parametrize("kind", [LabelKind.OUTER, LabelKind.VIAL])
def test_a_sheet_from_kept_images_and_text_is_the_same_bytes_as_one_drawn_the_plain_way(kits, kind):
    """So the QR symbols and every line are exactly as before, and a run printed before the cache
    existed still downloads again byte for byte. Fails if an fpdf2 upgrade changes what the cache
    relies on."""
    labels = [kit_label(kit, participant_number="P-0007" if i == 3 else None) for i, kit in enumerate(kits)]
    labels = labels if kind is LabelKind.OUTER else [label for label in labels for _ in range(2)]
    QR_IMAGES.clear()
    cold = render_label_sheet_pdf(labels, kind, creation_date=PRINTED)
    warm = render_label_sheet_pdf(labels, kind, creation_date=PRINTED)
    assert cold == warm == drawn_the_plain_way(labels, kind)


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
        changed.setattr(qrcache.SETTINGS, "compression_level", 1)
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
