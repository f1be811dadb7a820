"""Signed label codes: issued labels scan, forged, altered or damaged ones are refused."""
from __future__ import annotations

import inspect
import io
import re

import pytest
import qrcode
import zxingcpp
from PIL import Image
from qrcode.constants import ERROR_CORRECT_M
from qrcode.util import MODE_ALPHA_NUM, QRData, create_data

from cellbench.identifiers import kit_check_character, new_kit_numbers
from cellbench.qrpayload import (
    PAYLOAD_LENGTH,
    QR_MODULES,
    QR_QUIET_ZONE,
    PayloadRejected,
    load_public_key,
    make_payload,
    public_key_text,
    qr_codewords,
    qr_matrix,
    qr_png,
    verify_payload,
)

SECRET = "label-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
OTHER_SECRET = "another-installation-secret-0123456789-abcdefghijklmn"
KIT = "3HJY-7F7J-W"
OTHER_KIT = "RMTC-6J34-7"
PAYLOAD_SHAPE = re.compile(r"CB1:[34679ACEFHJKMPRTWXY]{4}-[34679ACEFHJKMPRTWXY]{4}-[34679ACEFHJKMPRTWXY]:[A-Z2-7]{103}")
QR_ALPHANUMERIC = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def decode(png: bytes) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


def assert_refused(payload: str, key: str = SECRET) -> str:
    with pytest.raises(PayloadRejected) as refused:
        verify_payload(payload, key)
    message = str(refused.value)
    for arm_word in ("placebo", "active", "arm", "saline", "asc"):
        assert arm_word not in message.lower(), message
    return message


def test_a_payload_carries_the_kit_number_and_a_signature_in_qr_alphanumeric_characters():
    payload = make_payload(KIT, SECRET)
    assert PAYLOAD_SHAPE.fullmatch(payload) and len(payload) == PAYLOAD_LENGTH == 119
    assert payload.startswith(f"CB1:{KIT}:")
    assert set(payload) <= QR_ALPHANUMERIC


def test_payloads_are_deterministic_so_a_reprinted_label_is_identical():
    assert make_payload(KIT, SECRET) == make_payload(KIT.lower().replace("-", ""), SECRET)


def test_payloads_of_any_two_kits_have_the_same_length_and_structure():
    payloads = [make_payload(kit, SECRET) for kit in new_kit_numbers(200)]
    assert {len(p) for p in payloads} == {PAYLOAD_LENGTH}
    shapes = {re.sub(r"[A-Z0-9]", "x", p[3:]) for p in payloads}  # separators at the same places
    assert len(shapes) == 1
    assert all(PAYLOAD_SHAPE.fullmatch(p) for p in payloads)


def test_the_payload_can_only_depend_on_the_kit_number_and_the_key():
    assert list(inspect.signature(make_payload).parameters) == ["kit_number", "secret_key"]


def test_an_issued_payload_verifies_with_the_secret_the_public_key_text_and_the_key_object():
    payload = make_payload(KIT, SECRET)
    text = public_key_text(SECRET)
    assert verify_payload(payload, SECRET) == KIT
    assert verify_payload(payload, text) == KIT
    assert verify_payload(payload, load_public_key(text)) == KIT


def test_scanner_noise_such_as_a_trailing_newline_or_caps_lock_is_tolerated():
    payload = make_payload(KIT, SECRET)
    assert verify_payload(payload.lower() + "\r\n", SECRET) == KIT


def test_a_label_signed_by_another_installation_is_refused():
    forged = make_payload(KIT, OTHER_SECRET)
    assert "signature does not match" in assert_refused(forged)


def test_a_kit_number_swapped_into_a_genuine_payload_is_refused():
    genuine = make_payload(KIT, SECRET)
    assert "signature does not match" in assert_refused(genuine.replace(KIT, OTHER_KIT))


def test_a_mistyped_kit_number_in_the_payload_is_refused_by_its_check_character():
    genuine = make_payload(KIT, SECRET)
    assert "check character" in assert_refused(genuine.replace(KIT, "3HJY-7F7K-W"))


def test_a_signature_with_one_character_changed_is_refused():
    genuine = make_payload(KIT, SECRET)
    position = len(genuine) - 10
    altered = genuine[:position] + ("A" if genuine[position] != "A" else "B") + genuine[position + 1:]
    assert "signature does not match" in assert_refused(altered)


@pytest.mark.parametrize("damage", [
    lambda p: p[:-1],
    lambda p: p[:60],
    lambda p: p + "A",
    lambda p: p.replace(":", ";", 1),
    lambda p: p[:16] + "!" + p[17:],
    lambda p: "",
    lambda p: "https://example.org/kit/3HJY-7F7J-W",
    lambda p: "CB1:" + KIT,
])
def test_truncated_or_malformed_payloads_are_refused(damage):
    assert_refused(damage(make_payload(KIT, SECRET)))


def test_a_payload_of_another_format_version_is_refused_by_name():
    payload = "CB2" + make_payload(KIT, SECRET)[3:]
    assert "version CB2" in assert_refused(payload)


def test_the_public_key_text_is_short_and_checked_against_its_fingerprint():
    text = public_key_text(SECRET)
    assert len(text.splitlines()) == 3 and "CBPK1 " in text and "Fingerprint:" in text
    assert text != public_key_text(OTHER_SECRET)
    key_line = text.splitlines()[1]
    mistyped = key_line[:12] + ("A" if key_line[12] != "A" else "B") + key_line[13:]
    with pytest.raises(ValueError, match="fingerprint"):
        load_public_key(text.replace(key_line, mistyped))
    with pytest.raises(ValueError):
        load_public_key("CBPK1 ABCD")


def test_the_qr_png_decodes_with_a_real_decoder_to_a_verifiable_payload():
    for kit in [KIT, *new_kit_numbers(20)]:
        payload = make_payload(kit, SECRET)
        assert decode(qr_png(payload)) == [payload]
        assert verify_payload(decode(qr_png(payload, module_px=3))[0], public_key_text(SECRET)) == kit


def test_every_kit_gets_a_symbol_of_the_same_size():
    sizes = {Image.open(io.BytesIO(qr_png(make_payload(k, SECRET), module_px=2))).size
             for k in new_kit_numbers(30)}
    side = 2 * (QR_MODULES + 2 * QR_QUIET_ZONE)
    assert sizes == {(side, side)}


def qrcode_reference_symbol(payload: str) -> list[list[bool]]:
    symbol = qrcode.QRCode(version=5, error_correction=ERROR_CORRECT_M, border=0, mask_pattern=7)
    symbol.add_data(QRData(payload.encode(), mode=MODE_ALPHA_NUM))
    symbol.make(fit=False)
    return symbol.modules


def test_the_fast_symbol_path_equals_qrcodes_own_encoder():
    for kit in new_kit_numbers(40):
        payload = make_payload(kit, SECRET)
        assert qr_codewords(payload) == create_data(5, ERROR_CORRECT_M, [QRData(payload.encode(), mode=MODE_ALPHA_NUM)])
        assert qr_matrix(payload) == qrcode_reference_symbol(payload)


def test_qr_functions_refuse_text_that_is_not_a_label_payload():
    with pytest.raises(ValueError):
        qr_codewords("CB1:short")
    with pytest.raises(ValueError):
        qr_codewords("cb1" + make_payload(KIT, SECRET)[3:])  # lower case is not QR alphanumeric


def test_kit_check_character_helper_agrees_with_sample_kit():
    assert kit_check_character(KIT.replace("-", "")[:8]) == KIT[-1]
