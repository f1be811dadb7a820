"""The QR symbol of each kit as a PDF image, made once and kept, addressed by its content.

The image is written here directly, not through Pillow and fpdf2's image reader: one bit a
module (1 = light), each row of the symbol padded to whole bytes, the rows Flate-compressed.
That is the PDF image format itself (DeviceGray, 1 bit a component), and it costs a fifth of
the 8-bit grey image that went through Pillow and fpdf2 (0.32 ms a kit, most of a first
print's difference from a reprint: bench/labels.py), and is an eighth of its size in the PDF.

A kit's symbol never changes, and its outer label, its vial labels, a reprint and a second
download all carry the same one, so each is made once and kept here.

The key is a SHA-256 of everything the image follows from: the exact payload, the symbol's
version, error correction, mask and quiet zone, the pixels per module and the image encoding
(its format, zlib's version and compression level). A changed payload (another kit, another
signing key) or a changed parameter is therefore another key and can never meet a stale image.
The payload is the kit number and its signature only (qrpayload.make_payload), so nothing in
the key, and nothing in whether an image is found here, depends on the kit's arm.

In memory, bounded (least recently used out first), per process. Not on disk: an image file
that someone altered would be printed as it is (nothing short of re-making the image could
check it), every worker process would share files it did not make, and a miss costs only a
millisecond a kit, so a restart loses nothing that matters.
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

from fpdf import FPDF
from fpdf.image_datastructures import RasterImageInfo

from cellbench.qrpayload import QR_ERROR_CORRECTION, QR_MASK, QR_MODULES, QR_QUIET_ZONE, QR_VERSION, qr_pixels

from .kept import Kept

SIDE = QR_MODULES + 2 * QR_QUIET_ZONE  # pixels a side: one pixel per module, quiet zone included
ROW_BITS = -(-SIDE // 8) * 8  # a PDF image row of 1-bit pixels starts on a byte boundary
COMPRESSION = 6  # zlib's default: level 9 gains nothing measurable on 270 bytes
MAX_IMAGES = 10_000  # ten full runs (a kit's outer and vial labels share one); ~0.5 kB each: 5 MB at most
_TO_BITS = bytes.maketrans(b"\x00\xff", b"01")  # qr_pixels' dark 0 and light 255 as '0' and '1' bits


@dataclass(frozen=True)
class QrImage:
    name: str  # the name fpdf2 knows the image by in a document: its key
    info: RasterImageInfo  # the compressed pixels and how to read them; shared, so copied before use


def image_key(payload: str) -> str:
    """The content address: the payload and every parameter the image depends on."""
    parameters = (f"qr-image/1|version={QR_VERSION}|ec={QR_ERROR_CORRECTION}|mask={QR_MASK}|"
                  f"quiet={QR_QUIET_ZONE}|px-per-module=1|pdf-image=DeviceGray,bpc=1,light=1|"
                  f"zlib={zlib.ZLIB_RUNTIME_VERSION}|compression={COMPRESSION}|payload=")
    return hashlib.sha256((parameters + payload).encode("utf-8")).hexdigest()


class QrImageCache(Kept[QrImage]):
    """Made-once QR images, the least recently used dropped beyond `limit`."""

    def __init__(self, limit: int = MAX_IMAGES):
        super().__init__(limit)

    def image(self, payload: str) -> QrImage:
        key = image_key(payload)
        found = self.get(key)
        if found is None:
            found = _make(payload, key)  # unlocked: two threads making the same image make equal ones
            self.put(key, found)
        return found


def packed_rows(payload: str) -> bytes:
    """The symbol as PDF 1-bit image rows: a bit a module, 1 = light, each row padded with light
    bits to a whole number of bytes."""
    bits = qr_pixels(payload).translate(_TO_BITS).decode("ascii")
    padding = "1" * (ROW_BITS - SIDE)
    rows = "".join(bits[start : start + SIDE] + padding for start in range(0, SIDE * SIDE, SIDE))
    return int(rows, 2).to_bytes(ROW_BITS * SIDE // 8, "big")


def _make(payload: str, key: str) -> QrImage:
    # The fields fpdf2's own reader gives a 1-bit grey image, read back by its PDF writer
    # (output.OutputProducer._add_image); no predictor: the rows are compressed as they are.
    info = RasterImageInfo(data=zlib.compress(packed_rows(payload), COMPRESSION), w=SIDE, h=SIDE,
                           cs="DeviceGray", iccp=None, bpc=1, dpn=1, f="FlateDecode", inverted=False,
                           dp=f"/Predictor 1 /Colors 1 /Columns {SIDE}")
    return QrImage(f"cellbench-qr-{key}", info)


QR_IMAGES = QrImageCache()


def place_qr(pdf: FPDF, payload: str, x: float, y: float, side_mm: float) -> None:
    """Draw the payload's symbol (quiet zone included) with its top-left corner at x, y. Each
    distinct symbol is stored in the document once, however often it is drawn (a kit's vial labels)."""
    image = QR_IMAGES.image(payload)
    images = pdf.image_cache.images
    if image.name not in images:
        info = RasterImageInfo(image.info)  # this document's own numbering and use count
        info["i"], info["usages"], info["iccp_i"] = len(images) + 1, 0, None
        images[image.name] = info
    # A name found in the document's image cache is used as it is: nothing is read from a file.
    pdf.image(image.name, x, y, side_mm, side_mm)
