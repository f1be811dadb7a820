"""Label run benchmark: 500 kits as an A4 PDF sheet and as ZPL, then every QR code scanned back.

Run: python bench/labels.py [--kits 500] [--repeat 3]

Target (DESIGN.md / performance-facts.md): 500 labels, QR codes included, in under 1.5 s.
The timed PDF run starts from the kit numbers: it signs each payload, builds each QR symbol
and lays out and writes the PDF. Scanning is checked on the PDF's own pages, rasterised with
pdftoppm (poppler-utils) when it is installed, else on the QR images embedded in the PDF.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pypdf  # noqa: E402
import qrcode  # noqa: E402
import zxingcpp  # noqa: E402
from PIL import Image  # noqa: E402
from qrcode.util import MODE_8BIT_BYTE, MODE_ALPHA_NUM, QRData  # noqa: E402

from cellbench.identifiers import new_kit_numbers  # noqa: E402
from cellbench.labels import (  # noqa: E402
    KitLabel,
    LabelKind,
    LabelStudy,
    render_label_sheet_pdf,
    render_single_label_pdf,
    render_zpl,
)
from cellbench.qrpayload import PayloadRejected, make_payload, qr_png, verify_payload  # noqa: E402

SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGH"
TARGET_S = 1.5
QR_ONLY = zxingcpp.BarcodeFormat.QRCode  # looking for other symbologies triples the scan time
STUDY = LabelStudy(
    trial_code="NCT07290946", eu_ct_number="2025-522559-25-00", sponsor_name="Rigshospitalet",
    sponsor_address="Blegdamsvej 9, 2100 København Ø, Danmark", sponsor_phone="+45 35 45 35 45",
    emergency_phone="+45 23 31 25 52", cells_per_vial="25 × 10⁶", volume_per_vial_ml="1.5",
)


def timed(function, repeat: int) -> tuple[float, float, object]:
    """(first run, median of all runs, result). The first run includes font loading and layout."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times), result


def label_run(kits: list[str], kind: LabelKind, render):
    labels = [KitLabel(STUDY, kit, make_payload(kit, SECRET), "BL-2025-014", date(2026, 3, 31))
              for kit in kits]
    return render(labels, kind)


def scan_pdf_pages(pdf: bytes) -> tuple[list[str], str]:
    if shutil.which("pdftoppm"):
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "run.pdf").write_bytes(pdf)
            # Plain PGM: pdftoppm's PNG encoder takes ~0.7 s a page, rendering itself ~0.05 s.
            subprocess.run(["pdftoppm", "-r", "200", "-gray", f"{folder}/run.pdf", f"{folder}/page"], check=True)
            texts = []
            for page in sorted(Path(folder).glob("page*.pgm")):
                texts += [r.text for r in zxingcpp.read_barcodes(Image.open(page), formats=QR_ONLY)]
            return texts, "PDF pages rasterised at 200 dpi by pdftoppm"
    texts = []
    for page in pypdf.PdfReader(io.BytesIO(pdf)).pages:
        for image in page.images:
            big = image.image.resize((image.image.width * 6, image.image.height * 6))
            texts += [r.text for r in zxingcpp.read_barcodes(big, formats=QR_ONLY)]
    return texts, "QR images embedded in the PDF (pdftoppm not installed: apt-get install poppler-utils)"


def payload_encodings() -> list[str]:
    """Why base32 in alphanumeric mode: the symbol it needs against base64url in byte mode."""
    import base64

    signature = bytes(range(64))
    lines = []
    for name, text, mode in [
        ("base32, alphanumeric mode", "CB1:3HJY-7F7J-W:" + base64.b32encode(signature).decode().rstrip("="), MODE_ALPHA_NUM),
        ("base64url, byte mode", "CB1:3HJY-7F7J-W:" + base64.urlsafe_b64encode(signature).decode().rstrip("="), MODE_8BIT_BYTE),
    ]:
        symbol = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
        symbol.add_data(QRData(text.encode(), mode=mode))
        symbol.make(fit=True)
        lines.append(f"  {name:27s} {len(text):3d} chars -> QR version {symbol.version} "
                     f"({symbol.modules_count} x {symbol.modules_count} modules) at error correction M")
    return lines


def qrcode_png(payload: str, mask: int | None) -> bytes:
    """The plain qrcode package path, for comparison."""
    symbol = qrcode.QRCode(version=5, error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=4,
                           mask_pattern=mask)
    symbol.add_data(QRData(payload.encode(), mode=MODE_ALPHA_NUM))
    symbol.make(fit=False)
    buffer = io.BytesIO()
    symbol.make_image().save(buffer)
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kits", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    kits = new_kit_numbers(args.kits)
    print(f"cellbench label bench: {args.kits} kits, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}")
    print("Payload encoding (measured):")
    print("\n".join(payload_encodings()))

    start = time.perf_counter()
    payloads = [make_payload(kit, SECRET) for kit in kits]
    sign_s = time.perf_counter() - start
    print(f"\nSign {args.kits} payloads (Ed25519): {sign_s:.3f} s")
    print(f"QR PNG images for {args.kits} kits (timed on 50, scaled):")
    for name, make_png in [
        ("qrcode, its own mask search", lambda p: qrcode_png(p, mask=None)),
        ("qrcode, fixed mask 7", lambda p: qrcode_png(p, mask=7)),
        ("cellbench.qrpayload.qr_png (fixed mask, table placement)", lambda p: qr_png(p, module_px=4)),
    ]:
        start = time.perf_counter()
        for payload in payloads[:50]:
            make_png(payload)
        print(f"  {name:58s} {(time.perf_counter() - start) * args.kits / 50:6.3f} s")

    print(f"\n{'what':48s} {'first':>7s} {'median':>7s}   target")
    results = {}
    for name, kind, render, target in [
        ("A4 sheet PDF, outer kit labels", LabelKind.OUTER, render_label_sheet_pdf, TARGET_S),
        ("A4 sheet PDF, vial labels", LabelKind.VIAL, render_label_sheet_pdf, TARGET_S),
        ("single-label PDF pages, outer", LabelKind.OUTER, render_single_label_pdf, TARGET_S),
        ("ZPL II, outer kit labels", LabelKind.OUTER, render_zpl, None),
        ("ZPL II, vial labels", LabelKind.VIAL, render_zpl, None),
    ]:
        first, median, output = timed(lambda: label_run(kits, kind, render), args.repeat)
        results[name] = output
        verdict = ""
        if target is not None:
            verdict = f"< {target:.1f} s for {args.kits} labels, QR codes included: " \
                      f"{'met' if first < target and median < target else 'MISSED'}"
        size = f"{len(output) / 1e6:.2f} MB" if isinstance(output, bytes) else f"{len(output.encode()) / 1e6:.2f} MB"
        print(f"{name:48s} {first:6.3f}s {median:6.3f}s   {verdict}  [{size}]")

    print()
    for name in ("A4 sheet PDF, outer kit labels", "A4 sheet PDF, vial labels"):
        pdf = results[name]
        start = time.perf_counter()
        texts, source = scan_pdf_pages(pdf)
        scan_s = time.perf_counter() - start
        verified = []
        for text in texts:
            try:
                verified.append(verify_payload(text, SECRET))
            except PayloadRejected:
                pass
        pages = len(pypdf.PdfReader(io.BytesIO(pdf)).pages)
        ok = sorted(verified) == sorted(kits)
        print(f"{name}: {pages} pages; decoded {len(texts)}/{len(kits)} QR codes, "
              f"{len(verified)} verified, every kit exactly once: {ok} ({scan_s:.1f} s; {source})")
        if not ok:
            return 1
    zpl = results["ZPL II, outer kit labels"]
    blocks_ok = zpl.count("^XA") == zpl.count("^XZ") == len(kits)
    in_zpl = sum(payload in zpl for payload in payloads)
    print(f"ZPL: {zpl.count('^XA')} ^XA...^XZ blocks, well formed: {blocks_ok}; "
          f"payloads present: {in_zpl}/{len(kits)}")
    return 0 if blocks_ok and in_zpl == len(kits) else 1


if __name__ == "__main__":
    sys.exit(main())
