"""Batch record benchmark: the executed batch record of a complete ASC lot, as a page and as a PDF.

    python bench/batch_record.py [--requests 200] [--pdfs 10] [--save DIR]

Setup (not timed), on SQLite in a temporary folder: the demo data (`demo.seed`: users, approved
specifications, released materials, calibrated equipment, eligible donations and lots), then one
more ASC lot of realistic volume recorded through the step services as the lab would: 3 passages,
10 vials filled and every one placed in storage (10 storage entries), a transport temperature out
of its limits with the operator's comment (which opens a deviation), and a lipoaspirate mass
corrected after both signatures (which voids them, so the step is signed again).

Timed, through FastAPI's TestClient signed in as QA, each request whole (session check, database
reads, rendering, response):
  GET /lots/<n>/record       median of --requests after a warm-up   target ≤ 8 ms (issue 18; was < 12)
  GET /account               what any signed-in page costs through the same client (the page floor)
  the record's own share     the medians' difference, record minus /account      target ≤ 5 ms
  GET /lots/<n>/record.pdf   median of --pdfs                       target < 1 s

The page and /account take turns, request by request, so that a busy machine weighs on both alike;
the share is what the record's reading and rendering cost above the floor every signed-in page pays.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import event, select

from cellbench import demo, lots, reports, steps, users
from cellbench.app import create_app
from cellbench.clock import utcnow
from cellbench.config import Settings
from cellbench.db import Database, migrate
from cellbench.demo.manufacturing import store_every_vial
from cellbench.models import Donation, Lot
from cellbench.specifications import versions as spec_versions

PAGE_TARGET_MS = 8.0  # issue 18
SHARE_TARGET_MS = 5.0  # the record's own work: the page minus /account (a floor of ≤ 3 ms)
PDF_TARGET_S = 1.0
PASSAGES, VIALS = 3, 14  # 14 filled: 2 pulled for QC, 2 retained, 10 placed (one storage entry each)
# Signing re-enters the password; argon2 at its real cost would only slow the untimed setup.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def _sign(session, lot: Lot, step, index: int) -> None:
    steps.perform(session, users.by_username(session, "operator"), demo.DEMO_PASSWORD, lot, step.code, index, None)
    if step.verify:
        steps.verify(session, users.by_username(session, "verifier"), demo.DEMO_PASSWORD, lot, step.code, index, None)


def build_lot(db: Database) -> str:
    """The demo data, then a complete ASC lot of realistic volume with an OOS value and a correction."""
    with db.write() as session:
        demo.seed(session, users.cli_actor(), release=False)
    with db.write() as session:
        first = session.scalars(select(Lot).where(Lot.donation_id.is_not(None)).order_by(Lot.id)).first()
        identifier = session.get(Donation, first.donation_id).identifier
        lot = lots.start_lot(session, users.actor(session, users.by_username(session, "operator")), "asc-cs10",
                             identifier)
        spec = spec_versions.parsed(lots.spec_of(session, lot))
        now = utcnow()
        for step in spec.steps:
            if step.code == "storage_transfer":  # QC and retained vials scanned out, then one entry per vial left
                store_every_vial(session, lot, step, "asc", lambda index, step=step: demo.asc_values(
                    step.code, index, now, lot, identifier))
                continue
            repeats = {"expansion_passage": PASSAGES}.get(step.code, 1)
            for index in range(1, repeats + 1):
                values = demo.asc_values(step.code, index, now, lot, identifier)  # the demo's plausible values
                if step.code == "fill":
                    values["vials_filled"] = str(VIALS)
                comments = {}
                if step.code == "tissue_receipt":
                    values["transport_temperature"] = "8.9"
                    comments["transport_temperature"] = ("logger peak during the courier hand-over; "
                                                         "tissue cold on receipt")
                demo.run_step(session, lot, step, values, comments)
                if step.code == "tissue_receipt":
                    entry = steps.entries_of(session, lot)[step.code][0]
                    mass = steps.current_values(session, entry)["tissue_mass"]
                    steps.correct_value(session, users.actor(session, users.by_username(session, "operator")), lot,
                                        mass.id, "156", "digits transposed; the balance printout reads 156 g")
                    _sign(session, lot, step, index)
        assert lot.expiry is not None, f"lot {lot.number} is not complete: {lot.state}"
        return lot.number


def sign_in(client: TestClient, username: str, password: str) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                           follow_redirects=False)
    assert response.status_code == 303, response.text


CPU: dict[str, list[float]] = {}  # url -> the process's CPU seconds per request (every thread: client and app)


def timed(client: TestClient, urls: list[str], count: int) -> tuple[list[list[float]], list[bytes]]:
    """Each url `count` times, taking turns, so that a busy machine weighs on them alike. The CPU
    time of each request goes into CPU: less swayed by other work on the machine than the clock."""
    times: list[list[float]] = [[] for _ in urls]
    bodies = [b""] * len(urls)
    for _ in range(count):
        for index, url in enumerate(urls):
            start, cpu = time.perf_counter(), time.process_time()
            response = client.get(url)
            times[index].append(time.perf_counter() - start)
            CPU.setdefault(url, []).append(time.process_time() - cpu)
            assert response.status_code == 200, response.text[:500]
            bodies[index] = response.content
    return times, bodies


def statements_during(db: Database, work) -> int:
    seen = []

    def count(_conn, _cursor, statement, *_rest) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        work()
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    return len(seen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="page requests timed (default 200, at least 50)")
    parser.add_argument("--pdfs", type=int, default=10, help="PDF requests timed (default 10)")
    parser.add_argument("--save", type=Path, help="write the page and the PDF into this folder, to look at them")
    args = parser.parse_args(argv)
    args.requests = max(args.requests, 50)

    with tempfile.TemporaryDirectory(prefix="cellbench-bench-") as tmp, contextlib.ExitStack() as stack:
        db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            users.configure(12, 5, FAST_HASHER)
            migrate(db)
            start = time.perf_counter()
            number = build_lot(db)
            setup_s = time.perf_counter() - start
            settings = Settings(database_url=db.url, secret_key="bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz",
                                data_dir=Path(tmp))
            app = create_app(settings, password_hasher=FAST_HASHER, database=db)
            # As a context manager the client keeps one event loop for all requests, as a server does.
            client = stack.enter_context(TestClient(app))
            sign_in(client, "qa", demo.DEMO_PASSWORD)
            page_url, pdf_url = f"/lots/{number}/record", f"/lots/{number}/record.pdf"

            with db.read() as session:
                record = reports.batch_record(session, number)
            entries = sum(len(s.entries) for s in record.steps)
            values = sum(len(line.rows) for s in record.steps for e in s.entries for line in e.lines)
            sigs = sum(len(e.signatures) for s in record.steps for e in s.entries)
            print(f"cellbench batch record benchmark on SQLite, Python {platform.python_version()}, {os.cpu_count()} "
                  f"CPUs (load average {os.getloadavg()[0]:.2f})")
            print(f"lot {number}: {len(record.steps)} steps, {entries} step entries, {values} values "
                  f"({len(record.corrections)} changed after first entry, {len(record.out_of_limits)} out of limits), "
                  f"{sigs} signatures ({record.invalidated_signatures} invalidated), "
                  f"{sum(len(e.materials) + len(e.equipment) for s in record.steps for e in s.entries)} material and "
                  f"equipment uses, {len(record.deviations)} deviations, {len(record.vials)} vials "
                  f"(setup {setup_s:.1f} s, not timed)")

            timed(client, [page_url, "/account"], 10)  # warm-up: templates compiled, spec parsed, pools filled
            CPU.clear()
            # /account: the same client and sign-in on a page that reads no lot, what every page pays.
            (page_times, base_times), (page, _) = timed(client, [page_url, "/account"], args.requests)
            statements = statements_during(db, lambda: client.get(page_url))

            def read_record() -> None:
                with db.read() as session:
                    reports.batch_record(session, number)

            record_statements = statements_during(db, read_record)
            (pdf_times,), (pdf,) = timed(client, [pdf_url], max(args.pdfs, 1))
            pages = len(PdfReader(io.BytesIO(pdf)).pages)

            page_ms = statistics.median(page_times) * 1000
            pdf_s = statistics.median(pdf_times)
            base_ms = statistics.median(base_times) * 1000
            share_ms = page_ms - base_ms
            page_ok, share_ok, pdf_ok = page_ms <= PAGE_TARGET_MS, share_ms <= SHARE_TARGET_MS, pdf_s < PDF_TARGET_S
            p90 = statistics.quantiles(page_times, n=10)[-1] * 1000
            print(f"{'what':44s} {'median':>9s} {'p90':>9s} {'first':>9s}   target")
            print(f"{'GET ' + page_url:44s} {page_ms:7.2f}ms {p90:7.2f}ms {page_times[0] * 1000:7.2f}ms   "
                  f"≤ {PAGE_TARGET_MS:g} ms  {'PASS' if page_ok else 'FAIL'}  "
                  f"[{args.requests} requests, {len(page) // 1024} KiB, {statements} SQL statements each, "
                  f"{record_statements} of them reading the record]")
            print(f"{'GET /account (the floor: no lot read)':44s} {base_ms:7.2f}ms "
                  f"{statistics.quantiles(base_times, n=10)[-1] * 1000:7.2f}ms "
                  f"{base_times[0] * 1000:7.2f}ms   (the page floor's own target: ≤ 3 ms)")
            share = "the record's own share (record - /account)"
            print(f"{share:44s} {share_ms:7.2f}ms {'':9s} {'':9s}   "
                  f"≤ {SHARE_TARGET_MS:g} ms  {'PASS' if share_ok else 'FAIL'}")
            cpu_page, cpu_base = (statistics.median(CPU[url]) * 1000 for url in (page_url, "/account"))
            print(f"{'CPU time (median, all threads)':44s} record {cpu_page:.2f} ms, /account {cpu_base:.2f} ms, "
                  f"the record's own share {cpu_page - cpu_base:.2f} ms")
            pdf_p90 = statistics.quantiles(pdf_times, n=10)[-1] if len(pdf_times) > 1 else pdf_times[0]
            pdf_cpu = statistics.median(CPU[pdf_url]) * 1000
            print(f"{'GET ' + pdf_url:44s} {pdf_s * 1000:7.0f}ms {pdf_p90 * 1000:7.0f}ms {pdf_times[0] * 1000:7.0f}ms"
                  f"   < {PDF_TARGET_S * 1000:g} ms  {'PASS' if pdf_ok else 'FAIL'}  "
                  f"[{len(pdf_times)} requests, {pages} A4 pages, {len(pdf) // 1024} KiB, {pdf_cpu:.0f} ms CPU]")
            print(f"load average at the end: {os.getloadavg()[0]:.2f} (wall-clock times on a machine others may "
                  "be using)")
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                (args.save / f"{number}.html").write_bytes(page)
                (args.save / f"{number}.pdf").write_bytes(pdf)
                print(f"saved {args.save / number}.html and .pdf")
        finally:
            db.dispose()
    return 0 if page_ok and share_ok and pdf_ok else 1


if __name__ == "__main__":
    sys.exit(main())
