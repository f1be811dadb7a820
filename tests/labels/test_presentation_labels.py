"""Labels from the study's presentation: an active and a placebo kit's outer and vial labels, as PDF
text and as ZPL, are the same once the kit number and the QR payload are masked; the quantity, the
storage condition and the manufacturer come from the presentation both arms share."""
from __future__ import annotations

import dataclasses
import io
import re
from datetime import UTC, datetime

import pypdf
import pytest

from cellbench import kits, qrpayload, studies
from cellbench.labels import (
    LabelKind,
    kit_labels,
    label_study,
    render_label_sheet_pdf,
    render_single_label_pdf,
    render_zpl,
)

from ..conftest import SECRET


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def masked(text: str, kit_number: str) -> str:
    return text.replace(qrpayload.make_payload(kit_number, SECRET), "<QR>").replace(kit_number, "<KIT>")


@pytest.fixture
def pair_labels(kit_world, db):
    """The labels of one active and one placebo kit of the same blinded lot, as printing makes them."""
    active, placebo = kit_world.pair
    with db.read() as s:
        made = kit_labels(s, [kits.by_number(s, active), kits.by_number(s, placebo)], SECRET)
    return {active: made[0], placebo: made[1]}


@pytest.mark.parametrize("kind", [LabelKind.OUTER, LabelKind.VIAL])
def test_active_and_placebo_labels_are_identical_but_for_kit_number_and_qr(pair_labels, kind):
    (active, a), (placebo, p) = pair_labels.items()
    when = datetime(2026, 1, 1, tzinfo=UTC)
    texts = {number: masked(pdf_text(render_single_label_pdf(label, kind, creation_date=when)), number)
             for number, label in pair_labels.items()}
    assert texts[active] == texts[placebo] and "<KIT>" in texts[active]
    sheets = {number: masked(pdf_text(render_label_sheet_pdf([label], kind, creation_date=when)), number)
              for number, label in pair_labels.items()}
    assert sheets[active] == sheets[placebo]
    zpl = {number: masked(render_zpl([label], kind), number) for number, label in pair_labels.items()}
    assert zpl[active] == zpl[placebo], "ZPL byte-identical after masking the kit number and the QR payload"
    assert "^FDMM,A<QR>^FS" in zpl[active] and a.qr_payload != p.qr_payload
    assert len(a.qr_payload) == len(p.qr_payload)


def test_the_outer_label_prints_quantity_storage_and_manufacturer_from_the_presentation(pair_labels, db):
    label = next(iter(pair_labels.values()))
    with db.read() as s:
        shared = studies.definition(studies.by_code(s, label.study.trial_code)).presentation
        assert label_study(studies.by_code(s, label.study.trial_code)) == label.study
    assert (label.study.vials_per_kit, label.study.volume_per_vial_ml, label.study.storage_max_c,
            label.study.manufacturer) == (shared.vials_per_kit, str(shared.fill_volume_ml), shared.storage_max_c,
                                          shared.manufacturer)
    text = " ".join(pdf_text(render_single_label_pdf(label)).split())
    for expected in ("2 vials of 1.0 mL", "2 hætteglas à 1,0 ml", "Store at ≤ −150 °C", "Opbevares ved ≤ −150 °C",
                     "Fremstillet af / Manufactured by OUH Cell Bench, Odense, Denmark"):
        assert expected in text, expected
    vial = " ".join(pdf_text(render_single_label_pdf(label, LabelKind.VIAL)).split())
    assert "OUH" not in vial, "the vial's reduced set (Annex VI A.2 point 5) names no manufacturer"


def test_a_colder_presentation_prints_its_own_storage_line(pair_labels):
    label = next(iter(pair_labels.values()))
    colder = dataclasses.replace(label, study=dataclasses.replace(label.study, storage_max_c=-180.0))
    text = " ".join(pdf_text(render_single_label_pdf(colder)).split())
    assert "Store at ≤ −180 °C" in text and "−150" not in text
    zpl = render_zpl([colder])
    assert re.search(r"Store at <= -180 .C", zpl), "the resident printer font spells ≤ and − in Latin-1"
