"""Scan benchmark: the pharmacy's scan endpoint under load, over HTTP, against `cellbench serve`.

A database with 100,000 kits and 1,000,000 audit events is built first (kits and events
bulk-inserted; the events hash-chained with audit.event_hash, as bench/audit.py does). Then
`cellbench serve` runs on it (one worker, or --workers N on PostgreSQL; no access log) and a separate process drives
`POST /api/v1/scan` with signed label codes of random kits from 16 concurrent keep-alive
connections, each scan a verified payload, a kit lookup, a custody insert and an audit event.
It prints scans per second and p50/p99 latency with the targets beside them, and first the
statements a scan sends on its write path (a group of 1 and of 16, counted in-process): a figure the
machine's load does not move, where the rate on a shared 2-core machine moves with every neighbour.

    python bench/scan.py                                  # SQLite in a temp folder
    python bench/scan.py --database-url postgresql://postgres@127.0.0.1/EMPTY_DB
    python bench/scan.py --database-url postgresql://postgres@127.0.0.1/EMPTY_DB --workers 2
    python bench/scan.py --database-url postgresql://postgres@127.0.0.1/SAME_DB --reuse --workers 1,2

--reuse runs on a database this benchmark built before (it makes a new token for the same pharmacist
and reads the kits back), so before and after can be compared in the same minute without the
build; --workers takes a comma-separated list and runs one server after the other on the same data.

Targets (issues 6 and 18): at least 600 scans/s with p99 under 40 ms at 16 clients, on one SQLite
worker and on PostgreSQL with one and with two workers.
The load generator shares the machine's cores with the server, as a scanner station would not:
the figure is a floor.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select, text

from cellbench import checkpoints, identifiers, kit_counts, qrpayload, studies, users
from cellbench.clock import utcnow
from cellbench.config import normalise_url
from cellbench.db import Database, migrate
from cellbench.errors import NotFound
from cellbench.models import BlindedLot, Role, Site, utc_text

HERE = Path(__file__).resolve().parent
TARGET_RATE, TARGET_P99_MS = 600, 40.0
SECRET = "bench-scan-secret-key-0123456789-abcdefghijkl"
BLINDED_CODE = "XB26-901"  # the blinded lot of the scanned kits (the audit fill makes kits of its own)


def _audit_bench():
    """bench/audit.py's chain filler (one implementation of a valid bulk chain)."""
    spec = importlib.util.spec_from_file_location("bench_audit", HERE / "audit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(db: Database, kits: int, events: int) -> tuple[str, list[str]]:
    """The data: a pharmacist with an API token, one study and site, `kits` kits at the site and
    an audit chain of `events` events. Returns the token and the kit numbers."""
    users.configure(12, 5, None)
    migrate(db)
    with db.write() as s:
        admin = users.cli_actor()
        pharmacist = users.create_user(s, admin, "bench-pharmacist", "Bench Pharmacist", "bench-password-123456",
                                       [Role.pharmacist.value])
        supply = users.create_user(s, admin, "bench-supply", "Bench Supply", "bench-password-123456",
                                   [Role.supply_manager.value])
        token = users.create_token(s, users.actor(s, pharmacist), pharmacist, "bench scanner")
        study = studies.sync_from_files(s, users.actor(s, supply))[0]
        site = s.scalars(select(Site)).first()
        expiry = utcnow().date().replace(year=utcnow().year + 2)
        blinded = BlindedLot(code=BLINDED_CODE, study_id=study.id, expiry=expiry, created_at=utcnow())
        s.add(blinded)
        s.flush()
        study_id, site_id, blinded_id = study.id, site.id, blinded.id
    t0 = time.perf_counter()
    numbers = identifiers.new_kit_numbers(kits)
    now = utc_text(utcnow())
    rows = [(n, study_id, blinded_id, "at_site", f"{site.code} · Freezer 1", site_id, now, 1) for n in numbers]
    with db.write() as s:
        s.execute(text("INSERT INTO kit (number, study_id, blinded_lot_id, state, location, site_id, created_at, "
                       "row_version) VALUES (:n, :st, :b, :state, :loc, :site, :at, :v)"),
                  [dict(zip(("n", "st", "b", "state", "loc", "site", "at", "v"), row, strict=False)) for row in rows])
    with db.write() as s:
        kit_counts.refill(s)  # kits inserted behind the lifecycle's back: their running counts from the rows
    print(f"data: {kits:,} kits inserted in {time.perf_counter() - t0:.1f} s")
    _audit_bench().fill(db, events, "SQLite" if db.is_sqlite else "PostgreSQL")
    return token, numbers


def reuse(db: Database) -> tuple[str, list[str]]:
    """The data of an earlier build: a new token for its pharmacist, and its kits."""
    users.configure(12, 5, None)
    with db.write() as s:
        try:
            pharmacist = users.by_username(s, "bench-pharmacist")
        except NotFound:
            raise SystemExit("--reuse: this database holds no data of bench/scan.py; build it first") from None
        token = users.create_token(s, users.cli_actor(), pharmacist, "bench scanner")
        numbers = list(s.scalars(text("SELECT kit.number FROM kit JOIN blinded_lot ON blinded_lot.id = "
                                      "kit.blinded_lot_id WHERE blinded_lot.code = :code"), {"code": BLINDED_CODE}))
    return token, numbers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _client(port: int, token: str, bodies: list[bytes], stop_at: float, record_from: float,
                  latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST /api/v1/scan HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n").encode()
    while (started := time.perf_counter()) < stop_at:
        body = random.choice(bodies)
        writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        if started >= record_from:
            latencies.append(time.perf_counter() - started)
            if not status_line.startswith(b"HTTP/1.1 200"):
                errors.append(status_line.decode().strip())
    writer.close()


def _load(port: int, token: str, bodies: list[bytes], clients: int, warmup: float, seconds: float, out) -> None:
    """Runs in its own process: `clients` connections scanning for warmup + seconds."""
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()

    async def main() -> None:
        await asyncio.gather(*(_client(port, token, bodies, start + warmup + seconds, start + warmup, latencies,
                                       errors) for _ in range(clients)))

    asyncio.run(main())
    out.send((latencies, errors[:5], len(errors)))


def _wait_for(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"cellbench serve exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("cellbench serve did not start")


def run(url: str, args: argparse.Namespace, key_path: Path) -> bool:
    if not key_path.exists():
        checkpoints.create(key_path)
    db = Database(url)
    engine = "SQLite" if db.is_sqlite else "PostgreSQL"
    try:
        token, numbers = reuse(db) if args.reuse else build(db, args.kits, args.events)
    finally:
        db.dispose()
    print(statements_per_scan(url, numbers))
    sample = random.Random(7).sample(numbers, min(len(numbers), 20_000))
    bodies = [json.dumps({"code": qrpayload.make_payload(n, SECRET), "station": "bench"}).encode() for n in sample]
    ok = True
    for workers in args.workers:
        ok = measure(url, engine, token, bodies, workers, args, key_path) and ok
    return ok


def statements_per_scan(url: str, numbers: list[str]) -> str:
    """The statements a scan sends on its write path (scanning.scan_group in its transaction, as
    GroupCommit runs it: a write_connection on SQLite, a pipelined one on PostgreSQL), counted in
    this process for a group of 1 and of 16: a figure the machine's load does not move. On
    PostgreSQL the round trips they take are counted too. The gate's token lookup (one read a
    request) is not in it."""
    from sqlalchemy import event

    from cellbench import pipelined
    from cellbench.custody.scanning import ScanRequest, scan_group

    db = Database(url)
    sent = [0]

    def count(*_: object) -> None:
        sent[0] += 1

    try:
        with db.read() as s:
            actor = users.actor(s, users.by_username(s, "bench-pharmacist"))
        event.listen(db.engine, "before_cursor_execute", count)
        event.listen(db.engine, "commit", count)
        figures = []
        for size in (1, 16):
            sent[0] = 0
            group = [ScanRequest(actor, qrpayload.make_payload(n, SECRET), "bench")
                     for n in random.Random(size).sample(numbers, size)]
            if db.is_sqlite:
                with db.write_connection() as conn:
                    scan_group(conn, group, SECRET)
                figures.append(f"group of {size}: {sent[0]} ({sent[0] / size:.2f} a scan)")
                continue
            with pipelined.write(db) as tx:
                scan_group(tx, group, SECRET)
            figures.append(f"group of {size}: {tx.statements} ({tx.statements / size:.2f} a scan) in "
                           f"{tx.round_trips} round trips")
    finally:
        db.dispose()
    return "statements on a scan's write path, BEGIN and COMMIT included: " + "; ".join(figures)


def measure(url: str, engine: str, token: str, bodies: list[bytes], workers: int, args: argparse.Namespace,
            key_path: Path) -> bool:
    """One server with `workers` processes on the built data, driven for warm-up + seconds."""
    port = _free_port()
    load_before = os.getloadavg()[0]
    # `cellbench serve`, started through the interpreter: started as the console script, its worker
    # processes (--workers 2) died at start here, each of them, before and after this change alike.
    server_cmd = [sys.executable, "-c", "from cellbench.cli import app; app()"]
    env = {**os.environ, "CELLBENCH_DATABASE_URL": url, "CELLBENCH_SECRET_KEY": SECRET, "CELLBENCH_DEMO": "false",
           "CELLBENCH_CHECKPOINT_KEY": str(key_path)}  # every scan signs the chain head, as in production
    server = subprocess.Popen([*server_cmd, "serve", "--port", str(port), "--no-access-log", "--workers", str(workers)],
                              env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(port, server)
        receiver, sender = multiprocessing.Pipe(duplex=False)
        loader = multiprocessing.get_context("spawn").Process(
            target=_load, args=(port, token, bodies, args.clients, args.warmup, args.seconds, sender))
        loader.start()
        latencies, first_errors, error_count = receiver.recv()
        loader.join()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    if not latencies:
        print(f"{engine}: no scans completed", file=sys.stderr)
        return False
    rate = len(latencies) / args.seconds
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    ok = rate >= TARGET_RATE and p99 < TARGET_P99_MS and not error_count
    print(f"scan ({engine}, {workers} worker{'s' if workers > 1 else ''}, {args.clients} clients, "
          f"{args.seconds:.0f} s after {args.warmup:.0f} s warm-up): "
          f"{rate:,.0f} scans/s (target ≥ {TARGET_RATE}), p50 {p50:.1f} ms, p99 {p99:.1f} ms "
          f"(target < {TARGET_P99_MS:.0f} ms), {error_count} errors{' ' + str(first_errors) if first_errors else ''}"
          f"  {'PASS' if ok else 'MISS'}  (load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after)")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kits", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--database-url", default="", help="an EMPTY PostgreSQL database (default: SQLite)")
    parser.add_argument("--workers", default="1", help="server processes, comma-separated for several runs: 1,2 "
                        "(more than 1 on PostgreSQL only)")
    parser.add_argument("--reuse", action="store_true", help="run on a database this benchmark built before")
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",")]
    print(f"cellbench scan benchmark, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="cellbench-scan-") as tmp:
        url = normalise_url(args.database_url) if args.database_url else f"sqlite:///{Path(tmp) / 'scan.db'}"
        ok = run(url, args, Path(tmp) / "checkpoint.key")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
