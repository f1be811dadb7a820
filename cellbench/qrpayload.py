"""Signed QR payloads for kit labels, and the QR symbols that carry them.

A payload reads ``CB1:<kit number>:<Ed25519 signature, base32>``, for example
``CB1:3HJY-7F7J-W:MFRGG...`` (119 characters). Why this shape:

* It carries the kit number and nothing else. No arm, lot, donor or date goes in, and the
  function that makes it takes only the kit number and the key, so it *cannot* depend on the
  arm. Kit numbers have a fixed length and Ed25519 signatures are always 64 bytes, so every
  payload has the same length and structure.
* The signature lets any scanner with the public key refuse a label that cellbench did not
  issue, or a payload whose kit number was altered, offline.
* Upper-case base32 and ':' fit QR *alphanumeric* mode (5.5 bits a character). Measured for
  this payload: base32 in alphanumeric mode fits a version 5 symbol (37 x 37 modules) at error
  correction M; base64url needs byte mode and a version 6 symbol (41 x 41) at M. The smaller
  symbol prints larger modules on a vial label.
* Ed25519 signatures are deterministic: a reprinted label carries the identical symbol.

The signing key is derived from the application secret (HKDF-SHA256 with a fixed label), so
no key file has to be kept. Consequence: changing CELLBENCH_SECRET_KEY makes every label
printed before the change fail verification; rotate it only together with a relabelling.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
from functools import lru_cache

import qrcode
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from qrcode.constants import ERROR_CORRECT_M
from qrcode.util import MODE_ALPHA_NUM, QRData

from cellbench.identifiers import KIT_NUMBER_LENGTH, parse_kit_number

PAYLOAD_PREFIX = "CB1"
_SIGNATURE_BYTES = 64
_SIGNATURE_CHARS = 103  # base32 of 64 bytes without the '=' padding (not a QR alphanumeric char)
PAYLOAD_LENGTH = len(PAYLOAD_PREFIX) + 1 + KIT_NUMBER_LENGTH + 1 + _SIGNATURE_CHARS  # 119

# One symbol shape for every kit: version 5, error correction M (15 % of the symbol may be lost
# to frost or a scratch), mask 7. The mask is fixed because searching the best of eight is
# what makes qrcode slow (measured 2.7 s against 0.6-0.9 s per 500 codes); any mask decodes,
# and 7 is the Zebra ^BQ default, so the PDF label and the thermal label carry the same symbol.
QR_VERSION = 5
QR_ERROR_CORRECTION = "M"
QR_MASK = 7
QR_MODULES = 17 + 4 * QR_VERSION  # 37
QR_QUIET_ZONE = 4  # modules of white margin the QR standard requires around the symbol

_HKDF_INFO = b"cellbench/kit-label-qr/ed25519/CB1"
_PUBLIC_KEY_TAG = "CBPK1"
_VERSION_TAG = re.compile(r"CB(\d+):")


class PayloadRejected(ValueError):
    """A scanned or typed label code that must not be accepted.

    Messages never depend on the kit's contents: an active and a placebo kit with the same
    fault get the same message.
    """


# --- keys ------------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def signing_key(secret_key: str) -> Ed25519PrivateKey:
    """The label-signing key, derived from the application secret; the same secret always
    gives the same key."""
    if not secret_key:
        raise ValueError("a secret key is needed to sign label codes")
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret_key.encode("utf-8")
    )
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_bytes(secret_key: str) -> bytes:
    return signing_key(secret_key).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _fingerprint(raw_public_key: bytes) -> str:
    digest = base64.b32encode(hashlib.sha256(raw_public_key).digest()).decode()[:12]
    return "-".join(digest[i : i + 4] for i in range(0, 12, 4))


def public_key_text(secret_key: str) -> str:
    """The public key as a short block for the pharmacy manual.

    The key line is read back by `load_public_key`; the fingerprint lets two people compare a
    key over the phone, and is checked when present so that a mistyped key is noticed.
    """
    raw = public_key_bytes(secret_key)
    encoded = base64.b32encode(raw).decode().rstrip("=")  # 52 characters
    groups = " ".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))
    return (
        "cellbench kit-label signature key (Ed25519, label codes CB1)\n"
        f"{_PUBLIC_KEY_TAG} {groups}\n"
        f"Fingerprint: {_fingerprint(raw)}\n"
    )


def load_public_key(text: str) -> Ed25519PublicKey:
    """Read a public key block (or just its CBPK1 line) as printed by `public_key_text`."""
    upper = text.upper()
    start = upper.find(_PUBLIC_KEY_TAG)
    if start < 0:
        raise ValueError(f"no '{_PUBLIC_KEY_TAG}' key line found in the public key text")
    line = upper[start + len(_PUBLIC_KEY_TAG) :].splitlines()[0]
    encoded = "".join(line.split())
    try:
        raw = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
    except binascii.Error:
        raise ValueError("the public key line is damaged (not base32)") from None
    if len(raw) != 32:
        raise ValueError("the public key line is incomplete: it must have 13 groups of 4 characters")
    match = re.search(r"FINGERPRINT:\s*([A-Z2-7-]+)", upper)
    if match and match.group(1) != _fingerprint(raw):
        raise ValueError("the public key does not match its fingerprint: it was copied wrongly")
    return Ed25519PublicKey.from_public_bytes(raw)


def _verification_key(key: Ed25519PublicKey | Ed25519PrivateKey | str) -> Ed25519PublicKey:
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, Ed25519PrivateKey):
        return key.public_key()
    if _PUBLIC_KEY_TAG in key.upper():
        return load_public_key(key)
    return signing_key(key).public_key()


# --- payloads --------------------------------------------------------------------------------

def make_payload(kit_number: str, secret_key: str) -> str:
    """The QR payload for one kit. Takes nothing but the kit number and the key, by design."""
    kit = parse_kit_number(kit_number)
    message = f"{PAYLOAD_PREFIX}:{kit}"
    signature = signing_key(secret_key).sign(message.encode("ascii"))
    encoded = base64.b32encode(signature).decode("ascii").rstrip("=")
    payload = f"{message}:{encoded}"
    assert len(payload) == PAYLOAD_LENGTH
    return payload


def verify_payload(payload: str, key: Ed25519PublicKey | Ed25519PrivateKey | str) -> str:
    """Check a scanned label code and return its kit number ('XXXX-XXXX-C').

    `key` is the public key (object, or the text block from `public_key_text`) or the
    application secret. Raises `PayloadRejected` for anything that is not a complete, unaltered
    label code issued with that key.
    """
    # Scanners in keyboard mode add a newline, and with caps lock on send lower case: neither
    # changes what was printed, and the signature still covers the exact kit number.
    code = payload.strip().upper()
    if not code.startswith("CB"):
        raise PayloadRejected("this is not a cellbench kit label code")
    version = _VERSION_TAG.match(code)
    if version and version.group(0) != f"{PAYLOAD_PREFIX}:":
        raise PayloadRejected(
            f"label code version CB{version.group(1)} is not supported by this cellbench "
            f"(it reads {PAYLOAD_PREFIX}); do not use the kit and contact the supply manager"
        )
    parts = code.split(":")
    if len(code) != PAYLOAD_LENGTH or len(parts) != 3 or not version:
        raise PayloadRejected(
            "the label code is incomplete or damaged; scan it again, or type the kit number"
        )
    _, kit_text, encoded = parts
    try:
        kit = parse_kit_number(kit_text)
    except ValueError as error:
        raise PayloadRejected(f"the kit number in the label code is not valid: {error}") from None
    if kit != kit_text or len(encoded) != _SIGNATURE_CHARS:
        raise PayloadRejected("the label code is incomplete or damaged; scan it again")
    try:
        signature = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
    except binascii.Error:
        raise PayloadRejected("the label code is damaged; scan it again") from None
    try:
        _verification_key(key).verify(signature, f"{PAYLOAD_PREFIX}:{kit}".encode("ascii"))
    except InvalidSignature:
        raise PayloadRejected(
            f"kit {kit}: the label code's signature does not match. This label was not issued by "
            "this cellbench or was altered; do not use the kit and report it"
        ) from None
    return kit


# --- QR symbols ------------------------------------------------------------------------------

def qr_matrix(payload: str) -> list[list[bool]]:
    """The QR modules (True = dark) for a payload, without quiet zone: 37 x 37 for every kit.

    One alphanumeric segment, fixed version, error correction and mask: qrcode's automatic
    segment splitting and mask search are switched off so that every kit's symbol has the same
    structure and the run stays fast.
    """
    if len(payload) != PAYLOAD_LENGTH:
        raise ValueError(f"a label payload has {PAYLOAD_LENGTH} characters, got {len(payload)}")
    symbol = qrcode.QRCode(
        version=QR_VERSION, error_correction=ERROR_CORRECT_M, border=0, mask_pattern=QR_MASK
    )
    symbol.add_data(QRData(payload.encode("ascii"), mode=MODE_ALPHA_NUM, check_data=True))
    symbol.make(fit=False)
    return symbol.modules


def qr_png(payload: str, *, module_px: int = 8) -> bytes:
    """A black-and-white PNG of the payload's QR symbol with its 4-module quiet zone."""
    from PIL import Image

    matrix = qr_matrix(payload)
    side = QR_MODULES + 2 * QR_QUIET_ZONE
    image = Image.new("1", (side, side), 1)
    image.putdata(
        [0 if QR_QUIET_ZONE <= row < QR_MODULES + QR_QUIET_ZONE
         and QR_QUIET_ZONE <= col < QR_MODULES + QR_QUIET_ZONE
         and matrix[row - QR_QUIET_ZONE][col - QR_QUIET_ZONE] else 1
         for row in range(side) for col in range(side)]
    )
    if module_px > 1:
        image = image.resize((side * module_px, side * module_px), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
