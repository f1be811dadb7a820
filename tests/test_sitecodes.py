"""Signed codes the site prints itself: a participant card and a syringe label scan back to what
was printed; an altered, forged or other kind of code is refused, naming only what was scanned."""
from __future__ import annotations

import io

import pytest
import zxingcpp
from PIL import Image

from cellbench.qrpayload import PayloadRejected, make_payload, public_key_text
from cellbench.sitecodes import (
    CARD_PREFIX,
    SYRINGE_PREFIX,
    ParticipantCard,
    SyringeLabel,
    card_payload,
    qr_png,
    syringe_payload,
    verify_card,
    verify_syringe,
)

SECRET = "site-codes-test-secret-0123456789-abcdefghijklmnopqrstu"
OTHER_SECRET = "another-installation-secret-0123456789-abcdefghijklmn"
KIT = "3HJY-7F7J-W"
OTHER_KIT = "RMTC-6J34-7"
QR_ALPHANUMERIC = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def altered(payload: str, field: int, value: str) -> str:
    parts = payload.split(":")
    parts[field] = value
    return ":".join(parts)


def test_a_card_and_a_syringe_label_read_back_what_was_printed():
    card = card_payload("NCT07290946", "X-012", SECRET)
    assert card.startswith(f"{CARD_PREFIX}:NCT07290946:X-012:")
    assert verify_card(card, SECRET) == ParticipantCard("NCT07290946", "X-012")
    syringe = syringe_payload(KIT, 2, "X-012", SECRET)
    assert syringe.startswith(f"{SYRINGE_PREFIX}:{KIT}:2:X-012:")
    assert verify_syringe(syringe, SECRET) == SyringeLabel(KIT, 2, "X-012")


def test_a_keyboard_scanner_in_caps_lock_or_adding_a_newline_still_reads():
    card = card_payload("NCT07290946", "x-012", SECRET)  # numbers print in capitals
    assert verify_card(f"{card.lower()}\n", SECRET) == ParticipantCard("NCT07290946", "X-012")


def test_the_public_key_checks_them_as_it_checks_kit_labels():
    syringe = syringe_payload(KIT, 1, "X-012", SECRET)
    assert verify_syringe(syringe, public_key_text(SECRET)).dose == 1


def test_the_same_card_printed_twice_is_the_same_symbol():
    assert card_payload("NCT07290946", "X-012", SECRET) == card_payload("NCT07290946", "X-012", SECRET)


@pytest.mark.parametrize("field, value", [(1, "NCT06805448"), (2, "X-013")])
def test_a_card_with_an_altered_field_is_refused(field, value):
    forged = altered(card_payload("NCT07290946", "X-012", SECRET), field, value)
    with pytest.raises(PayloadRejected, match="participant card code's signature does not match"):
        verify_card(forged, SECRET)


@pytest.mark.parametrize("field, value", [(1, OTHER_KIT), (2, "1"), (3, "X-013")])
def test_a_syringe_label_with_an_altered_field_is_refused(field, value):
    forged = altered(syringe_payload(KIT, 2, "X-012", SECRET), field, value)
    with pytest.raises(PayloadRejected, match="syringe label code's signature does not match"):
        verify_syringe(forged, SECRET)


def test_a_code_signed_by_another_installation_is_refused():
    with pytest.raises(PayloadRejected, match="signature does not match"):
        verify_card(card_payload("NCT07290946", "X-012", OTHER_SECRET), SECRET)


def test_an_unsigned_or_damaged_code_is_refused():
    with pytest.raises(PayloadRejected, match="incomplete or damaged"):
        verify_card("CBP1:NCT07290946:X-012", SECRET)
    with pytest.raises(PayloadRejected, match="signature does not match"):
        verify_card("CBP1:NCT07290946:X-012:AAAA", SECRET)
    with pytest.raises(PayloadRejected, match="signature does not match"):
        verify_syringe("CBS1:3HJY-7F7J-W:1:X-012:not base32!", SECRET)
    with pytest.raises(PayloadRejected, match="too long"):
        verify_card("CBP1:" + "A" * 400, SECRET)


def test_a_kit_label_or_a_syringe_label_is_not_a_participant_card_and_back():
    with pytest.raises(PayloadRejected, match="this is not a cellbench participant card code"):
        verify_card(make_payload(KIT, SECRET), SECRET)
    with pytest.raises(PayloadRejected, match="this is not a cellbench participant card code"):
        verify_card(syringe_payload(KIT, 1, "X-012", SECRET), SECRET)
    with pytest.raises(PayloadRejected, match="this is not a cellbench syringe label code"):
        verify_syringe(card_payload("NCT07290946", "X-012", SECRET), SECRET)
    # the same signature under another prefix proves nothing either
    card = card_payload("NCT07290946", "X-012", SECRET)
    with pytest.raises(PayloadRejected):
        verify_syringe(card.replace(CARD_PREFIX, SYRINGE_PREFIX, 1), SECRET)


def test_what_cannot_be_printed_is_refused_before_signing():
    for study, number in (("NCT07290946", ""), ("NCT:1", "X-012"), ("NCT07290946", "X-012 ø"), ("N" * 41, "X")):
        with pytest.raises(ValueError):
            card_payload(study, number, SECRET)
    for dose in (0, 10):
        with pytest.raises(ValueError):
            syringe_payload(KIT, dose, "X-012", SECRET)
    with pytest.raises(ValueError):
        syringe_payload("3HJY-7F7J-X", 1, "X-012", SECRET)  # a wrong check character


def test_both_codes_use_only_qr_alphanumeric_characters_and_decode_from_their_png():
    for payload in (card_payload("NCT07290946", "X-012", SECRET), syringe_payload(KIT, 2, "X-012", SECRET)):
        assert set(payload) <= QR_ALPHANUMERIC
        found = [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(qr_png(payload))))]
        assert found == [payload]
        assert verify_card(found[0], SECRET) if payload.startswith(CARD_PREFIX) else verify_syringe(found[0], SECRET)


def test_two_participants_cards_differ_only_in_their_numbers():
    first, second = (card_payload("NCT07290946", n, SECRET) for n in ("X-012", "X-013"))
    assert len(first) == len(second) and first.split(":")[:2] == second.split(":")[:2]
