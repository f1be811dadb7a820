"""Signed QR payloads for what the site prints itself: participant cards and syringe labels.

A kit label (`qrpayload`) proves a kit; at the bedside two more things must be proved before a dose
goes in: that this is the participant in the bed, and that this syringe was drawn up for that
participant and that gland. Both are printed at the site, so both carry a signature made with the
same Ed25519 key as the kit labels (one key to publish, one key to rotate), each with its own prefix
so that no payload of one kind can be read as another:

* participant card ``CBP1:<study code>:<randomisation number>:<signature>``
* syringe label   ``CBS1:<kit number>:<dose>:<randomisation number>:<signature>`` (dose 1 = the
  study's first dose site, 2 = the second)

Neither carries anything that depends on the arm: the syringe label of an active and of a placebo
dose differ only in their kit number, like the kit labels. Randomisation numbers and study codes
vary in length between studies, so these payloads are not fixed-length; within one study they are.
"""
from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

import qrcode
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from qrcode.constants import ERROR_CORRECT_M

from .identifiers import parse_kit_number
from .qrpayload import PayloadRejected, _verification_key, signing_key

CARD_PREFIX = "CBP1"
SYRINGE_PREFIX = "CBS1"
MAX_DOSES = 9  # one digit: a treatment has a dose per gland, two in both studies
_FIELD_MAX = 40


@dataclass(frozen=True)
class ParticipantCard:
    study: str
    randomisation_number: str


@dataclass(frozen=True)
class SyringeLabel:
    kit_number: str
    dose: int
    randomisation_number: str


def _field(value: str, name: str) -> str:
    text = (value or "").strip().upper()
    if not text or len(text) > _FIELD_MAX or ":" in text or not text.isascii() or not text.isprintable():
        raise ValueError(f"a {name} on a printed code is 1-{_FIELD_MAX} printable ASCII characters without ':'")
    return text


def _sign(message: str, secret_key: str) -> str:
    signature = signing_key(secret_key).sign(message.encode("ascii"))
    return f"{message}:{base64.b32encode(signature).decode('ascii').rstrip('=')}"


def card_payload(study_code: str, randomisation_number: str, secret_key: str) -> str:
    """The QR payload of a participant's identification card."""
    return _sign(f"{CARD_PREFIX}:{_field(study_code, 'study code')}:"
                 f"{_field(randomisation_number, 'randomisation number')}", secret_key)


def syringe_payload(kit_number: str, dose: int, randomisation_number: str, secret_key: str) -> str:
    """The QR payload of the label on the syringe drawn up for one dose (gland) of a kit."""
    if not 1 <= dose <= MAX_DOSES:
        raise ValueError(f"a dose is numbered 1-{MAX_DOSES}")
    return _sign(f"{SYRINGE_PREFIX}:{parse_kit_number(kit_number)}:{dose}:"
                 f"{_field(randomisation_number, 'randomisation number')}", secret_key)


def _verified(code: str, prefix: str, fields: int, what: str,
              key: Ed25519PublicKey | Ed25519PrivateKey | str) -> list[str]:
    """The fields of a signed payload of one kind; the message names only what was scanned."""
    text = (code or "").strip().upper()
    if len(text) > 300:
        raise PayloadRejected(f"this is not a cellbench {what} code (too long)")
    parts = text.split(":")
    if parts[0] != prefix:
        raise PayloadRejected(f"this is not a cellbench {what} code")
    if len(parts) != fields + 2:
        raise PayloadRejected(f"the {what} code is incomplete or damaged; scan it again")
    encoded = parts[-1]
    try:
        signature = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
        _verification_key(key).verify(signature, ":".join(parts[:-1]).encode("ascii"))
    except (binascii.Error, ValueError, InvalidSignature):
        raise PayloadRejected(f"the {what} code's signature does not match: it was not issued by this "
                              "cellbench or was altered; do not use it and report it") from None
    return parts[1:-1]


def verify_card(code: str, key: Ed25519PublicKey | Ed25519PrivateKey | str) -> ParticipantCard:
    study, number = _verified(code, CARD_PREFIX, 2, "participant card", key)
    return ParticipantCard(study, number)


def verify_syringe(code: str, key: Ed25519PublicKey | Ed25519PrivateKey | str) -> SyringeLabel:
    kit, dose, number = _verified(code, SYRINGE_PREFIX, 3, "syringe label", key)
    if not dose.isdigit() or not 1 <= int(dose) <= MAX_DOSES:
        raise PayloadRejected("the syringe label code is damaged; scan it again")
    return SyringeLabel(kit, int(dose), number)


def qr_png(payload: str, *, box_size: int = 4) -> bytes:
    """A QR symbol (error correction M, quiet zone of 4 modules) as PNG bytes, for PDFs and pages."""
    symbol = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box_size, border=4)
    symbol.add_data(payload)
    symbol.make(fit=True)
    out = io.BytesIO()
    symbol.make_image().save(out, format="PNG")
    return out.getvalue()
