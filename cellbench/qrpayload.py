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
from functools import cache, lru_cache

import qrcode
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from qrcode.base import gexp, glog, rs_blocks
from qrcode.constants import ERROR_CORRECT_M
from qrcode.util import ALPHA_NUM, MODE_ALPHA_NUM, length_in_bits

from cellbench.identifiers import KIT_NUMBER_LENGTH, parse_kit_number

PAYLOAD_PREFIX = "CB1"
_SIGNATURE_CHARS = 103  # base32 of a 64-byte signature, without the '=' padding (not QR alphanumeric)
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

_BLOCKS = rs_blocks(QR_VERSION, ERROR_CORRECT_M)  # 2 blocks of 43 data + 24 correction codewords
_DATA_CAPACITY = sum(block.data_count for block in _BLOCKS)
_TOTAL_BITS = 8 * sum(block.total_count for block in _BLOCKS)
_TO_GREY = bytes.maketrans(b"01", b"\xff\x00")


# qrcode's Reed-Solomon step divides polynomial objects recursively and took three quarters
# of the 1.3 ms a symbol cost (0.65 s per 500-label run). This table does the same division
# byte by byte, with the remainder held in one integer.


@cache
def _rs_table(ec_count: int) -> tuple[int, ...]:
    generator = [1]  # coefficients, highest power first: prod (x - a^i), i < ec_count
    for i in range(ec_count):
        product = [0] * (len(generator) + 1)
        for j, coefficient in enumerate(generator):
            product[j] ^= coefficient
            product[j + 1] ^= _gf_mul(coefficient, gexp(i))
        generator = product
    return tuple(
        int.from_bytes(bytes(_gf_mul(factor, g) for g in generator[1:]), "big")
        for factor in range(256)
    )


def _gf_mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else gexp(glog(a) + glog(b))


def _rs_remainder(data: bytes, ec_count: int) -> bytes:
    table = _rs_table(ec_count)
    shift, mask = 8 * (ec_count - 1), (1 << (8 * ec_count)) - 1
    remainder = 0
    for byte in data:
        remainder = ((remainder << 8) & mask) ^ table[(remainder >> shift) ^ byte]
    return remainder.to_bytes(ec_count, "big")


def qr_codewords(payload: str) -> list[int]:
    """Data and error-correction codewords, interleaved, for the label symbol."""
    if len(payload) != PAYLOAD_LENGTH:
        raise ValueError(f"a label payload has {PAYLOAD_LENGTH} characters, got {len(payload)}")
    try:
        values = [ALPHA_NUM.index(char) for char in payload.encode("ascii")]
    except ValueError:
        raise ValueError("a label payload uses only QR alphanumeric characters") from None
    bits, length = MODE_ALPHA_NUM, 4
    count_bits = length_in_bits(MODE_ALPHA_NUM, QR_VERSION)
    bits, length = (bits << count_bits) | len(values), length + count_bits
    for i in range(0, len(values) - 1, 2):
        bits, length = (bits << 11) | (values[i] * 45 + values[i + 1]), length + 11
    if len(values) % 2:
        bits, length = (bits << 6) | values[-1], length + 6
    terminator = min(4, 8 * _DATA_CAPACITY - length)
    bits, length = bits << terminator, length + terminator
    bits, length = bits << (-length % 8), length + (-length % 8)
    data = bits.to_bytes(length // 8, "big")
    data += bytes((0xEC, 0x11) * _DATA_CAPACITY)[: _DATA_CAPACITY - len(data)]

    data_blocks, ec_blocks, offset = [], [], 0
    for block in _BLOCKS:
        chunk = data[offset : offset + block.data_count]
        offset += block.data_count
        data_blocks.append(chunk)
        ec_blocks.append(_rs_remainder(chunk, block.total_count - block.data_count))
    interleaved = [
        blk[i] for i in range(max(map(len, data_blocks))) for blk in data_blocks if i < len(blk)
    ]
    interleaved += [
        blk[i] for i in range(max(map(len, ec_blocks))) for blk in ec_blocks if i < len(blk)
    ]
    return interleaved


@lru_cache(maxsize=1)
def _placement() -> tuple[str, tuple[int, ...], int]:
    """How codeword bits land in the symbol, learnt once from qrcode itself.

    Every symbol shares its finder, timing and alignment patterns and its format information
    (version, error correction and mask are fixed); only the data modules differ. Two symbols
    from all-zero and all-one codewords tell the data modules apart (they differ there), and
    the all-zero one gives the mask bit of each. The placement order is the standard zig-zag
    of column pairs from the right, alternately upwards and downwards, skipping the vertical
    timing column. qrcode spends ~1 ms a symbol evaluating the mask function per module;
    placing through this table costs a few hundredths of that.
    """
    n, total = QR_MODULES, sum(block.total_count for block in _BLOCKS)

    def flat_symbol(codewords: list[int]) -> str:
        symbol = qrcode.QRCode(version=QR_VERSION, error_correction=ERROR_CORRECT_M, border=0,
                               mask_pattern=QR_MASK)
        symbol.data_cache = codewords
        symbol.make(fit=False)
        return "".join("1" if cell else "0" for row in symbol.modules for cell in row)

    zeros, ones = flat_symbol([0] * total), flat_symbol([0xFF] * total)
    order: list[int] = []
    row, step = n - 1, -1
    for col in range(n - 1, 0, -2):
        col = col - 1 if col <= 6 else col
        while 0 <= row < n:
            order += [row * n + c for c in (col, col - 1) if zeros[row * n + c] != ones[row * n + c]]
            row += step
        row, step = row - step, -step
    assert len(order) == 8 * total, "unexpected QR layout"
    mask = int("".join(zeros[i] for i in order), 2)
    # Gather map: each module either takes a bit from the data string or keeps its template value.
    source = {cell: index for index, cell in enumerate(order)}
    gather = tuple(source.get(cell, len(order) + cell) for cell in range(n * n))
    return zeros, gather, mask


def _dark_cells(payload: str) -> str:
    """'1' for each dark module, row by row, no quiet zone."""
    template, gather, mask = _placement()
    bits = int.from_bytes(bytes(qr_codewords(payload)), "big") ^ mask
    combined = format(bits, f"0{_TOTAL_BITS}b") + template
    return "".join(map(combined.__getitem__, gather))


def qr_matrix(payload: str) -> list[list[bool]]:
    """The QR modules (True = dark) for a payload, without quiet zone: 37 x 37 for every kit.

    One alphanumeric segment, fixed version, error correction and mask, so every kit's symbol
    has the same structure. It equals qrcode's own symbol for the same settings
    (tests/test_qrpayload.py compares them) and costs about a tenth of the time.
    """
    dark = _dark_cells(payload)
    return [[cell == "1" for cell in dark[row * QR_MODULES : (row + 1) * QR_MODULES]]
            for row in range(QR_MODULES)]


def qr_pixels(payload: str) -> bytes:
    """8-bit grey pixels, one per module, quiet zone included (0 = dark, 255 = light)."""
    dark, quiet = _dark_cells(payload), "0" * QR_QUIET_ZONE
    margin = "0" * (QR_QUIET_ZONE * (QR_MODULES + 2 * QR_QUIET_ZONE))
    rows = [quiet + dark[i : i + QR_MODULES] + quiet for i in range(0, len(dark), QR_MODULES)]
    return (margin + "".join(rows) + margin).encode("ascii").translate(_TO_GREY)


def qr_png(payload: str, *, module_px: int = 8) -> bytes:
    """A black-and-white PNG of the payload's QR symbol, quiet zone included."""
    from PIL import Image

    side = QR_MODULES + 2 * QR_QUIET_ZONE
    image = Image.frombytes("L", (side, side), qr_pixels(payload)).convert("1")
    if module_px > 1:
        image = image.resize((side * module_px, side * module_px), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
