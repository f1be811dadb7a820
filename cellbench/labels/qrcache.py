"""The QR symbol of each kit as a PDF image, made once and kept, addressed by its content.

Making a kit's symbol image costs a third of a millisecond (codewords, placement, then fpdf2's
Flate compression of the pixels): a quarter of a 500-label sheet before issue 18. A kit's symbol never
changes, and its outer label, its vial labels, a reprint and a second download all carry the
same one, so each is made once and kept here.

The key is a SHA-256 of everything the image follows from: the exact payload, the symbol's
version, error correction, mask and quiet zone, the pixels per module and the image encoding
(fpdf2's version, filter and compression level). A changed payload (another kit, another
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
import threading
from collections import OrderedDict
from dataclasses import dataclass

import fpdf
from fpdf import FPDF
from fpdf.image_datastructures import ImageCache, RasterImageInfo
from fpdf.image_parsing import SETTINGS, preload_image
from PIL import Image

from cellbench.qrpayload import QR_ERROR_CORRECTION, QR_MASK, QR_MODULES, QR_QUIET_ZONE, QR_VERSION, qr_pixels

SIDE = QR_MODULES + 2 * QR_QUIET_ZONE  # pixels a side: one grey pixel per module, quiet zone included
MAX_IMAGES = 10_000  # ten full runs (a kit's outer and vial labels share one); 1.4 kB each: 14 MB at most


@dataclass(frozen=True)
class QrImage:
    name: str  # fpdf2's own name for these pixels (their MD5), so the PDF is the same bytes as without the cache
    info: RasterImageInfo  # the compressed pixels and how to read them; shared, so copied before use


def image_key(payload: str) -> str:
    """The content address: the payload and every parameter the image depends on."""
    parameters = (f"qr-image/1|version={QR_VERSION}|ec={QR_ERROR_CORRECTION}|mask={QR_MASK}|"
                  f"quiet={QR_QUIET_ZONE}|px-per-module=1|mode=L|fpdf2={fpdf.__version__}|"
                  f"compression={SETTINGS.compression_level}|payload=")
    return hashlib.sha256((parameters + payload).encode("utf-8")).hexdigest()


class QrImageCache:
    """Made-once QR images, the least recently used dropped beyond `limit`. Thread-safe: label runs
    of several requests may render at once."""

    def __init__(self, limit: int = MAX_IMAGES):
        self.limit = limit
        self._images: OrderedDict[str, QrImage] = OrderedDict()
        self._lock = threading.Lock()
        self.made = 0  # images made, not found (for tests and the bench)

    def image(self, payload: str) -> QrImage:
        key = image_key(payload)
        with self._lock:
            found = self._images.get(key)
            if found is not None:
                self._images.move_to_end(key)
                return found
        made = _make(payload)  # outside the lock: two threads making the same image make equal ones
        with self._lock:
            self.made += 1
            self._images[key] = made
            while len(self._images) > self.limit:
                self._images.popitem(last=False)
        return made

    def clear(self) -> None:
        with self._lock:
            self._images.clear()
            self.made = 0

    def __len__(self) -> int:
        return len(self._images)


def _make(payload: str) -> QrImage:
    # fpdf2 itself reads and compresses the image, exactly as pdf.image() would, into a scratch cache
    pixels = Image.frombytes("L", (SIDE, SIDE), qr_pixels(payload))
    name, _, info = preload_image(ImageCache(), pixels)
    assert isinstance(info, RasterImageInfo)
    return QrImage(name, info)


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
