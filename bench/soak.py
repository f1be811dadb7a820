"""Soak benchmark: minutes of mixed load on `cellbench serve` over SQLite, watching the WAL and the
server's memory.

A fresh demo database (`cellbench demo`) gets a pharmacist with an API token, 20,000 kits in stock
at a site and 1,500 shipments of 40 kits in transit to it. Then `cellbench serve` runs on it (one
worker, no access log) and client threads drive, all at once:

- receipt scans: each receiver thread takes shipments in turn and scans every kit out of the dry
  shipper (POST /api/v1/shipments/N/receipt-scans), as a pharmacy unpacking deliveries does;
- stock scans: signed labels of kits in stock (POST /api/v1/scan, a sighting on record);
- page reads: kit and shipment pages and their JSON (GET /kits/N, /shipments/N, /api/v1/...).

Every minute it prints the WAL file's size, the server's RSS (VmRSS of /proc/PID/status) and the
requests done; at the end, the largest WAL seen (sampled every second) and the RSS growth after
the first minute, beside their targets (issue 17): WAL ≤ 64 MB, RSS growth ≤ 10 %.

    python bench/soak.py               # 5 minutes
    python bench/soak.py --minutes 2

SQLite only: the WAL is SQLite's. The load generator shares the machine's cores with the server.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import select, text

from cellbench import identifiers, qrpayload, users
from cellbench.clock import utcnow
from cellbench.db import Database
from cellbench.models import BlindedLot, Role, Site, Study, utc_text

TARGET_WAL_MB, TARGET_RSS_GROWTH = 64.0, 0.10
SECRET = "bench-soak-secret-key-0123456789-abcdefghijkl"
SITE, STUDY = "RH-ENT", "NCT07290946"


def _cellbench() -> str:
    return shutil.which("cellbench", path=str(Path(sys.executable).parent)) or "cellbench"


def build(url: str, env: dict, stock: int, shipments: int, per_shipment: int) -> tuple[str, list[str], list[tuple]]:
    """The demo data plus the soak's: returns the pharmacist's token, the kits in stock and the
    shipments in transit as (number, [kit numbers])."""
    t0 = time.perf_counter()
    subprocess.run([_cellbench(), "demo"], env=env, check=True, stdout=subprocess.DEVNULL)
    print(f"data: demo database in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    users.configure(12, 5, None)
    db = Database(url)
    try:
        with db.write() as s:
            admin = users.cli_actor()
            pharmacist = users.create_user(s, admin, "soak-pharmacist", "Soak Pharmacist", "soak-password-123456",
                                           [Role.pharmacist.value])
            users.link(s, admin, pharmacist, site=SITE, study=STUDY)
            token = users.create_token(s, users.actor(s, pharmacist), pharmacist, "soak scanner")
            site = s.scalars(select(Site).where(Site.code == SITE)).one()
            study = s.scalars(select(Study).where(Study.code == STUDY)).one()
            blinded = BlindedLot(code="XB26-977", study_id=study.id, created_at=utcnow(),
                                 expiry=utcnow().date().replace(year=utcnow().year + 2))
            s.add(blinded)
            s.flush()
            site_id, study_id, blinded_id, user_id = site.id, study.id, blinded.id, pharmacist.id
        now = utc_text(utcnow())
        in_stock = identifiers.new_kit_numbers(stock)
        travelling = identifiers.new_kit_numbers(shipments * per_shipment)
        kit = text("INSERT INTO kit (number, study_id, blinded_lot_id, state, location, site_id, created_at, "
                   "row_version) VALUES (:n, :study, :lot, :state, :loc, :site, :at, 1)")
        with db.write() as s:
            common = {"study": study_id, "lot": blinded_id, "site": site_id, "at": now}
            s.execute(kit, [{**common, "n": n, "state": "at_site", "loc": f"{SITE} · Freezer 1"} for n in in_stock])
            s.execute(kit, [{**common, "n": n, "state": "in_transit", "loc": "In transit"} for n in travelling])
            ids = dict(s.execute(text("SELECT number, id FROM kit WHERE state = 'in_transit'")).all())
            numbers = [f"SK-{i:06d}" for i in range(shipments)]
            s.execute(text("INSERT INTO shipment (number, study_id, site_id, state, created_by, created_at, "
                           "dispatched_by, dispatched_at, row_version) VALUES (:n, :study, :site, 'in_transit', "
                           ":user, :at, :user, :at, 1)"),
                      [{"n": n, "study": study_id, "site": site_id, "user": user_id, "at": now} for n in numbers])
            shipment_ids = dict(s.execute(text("SELECT number, id FROM shipment WHERE number LIKE 'SK-%'")).all())
            manifests = [(n, travelling[i * per_shipment:(i + 1) * per_shipment]) for i, n in enumerate(numbers)]
            s.execute(text("INSERT INTO shipment_kit (shipment_id, kit_id, packed_at) VALUES (:s, :k, :at)"),
                      [{"s": shipment_ids[n], "k": ids[k], "at": now} for n, kits in manifests for k in kits])
    finally:
        db.dispose()
    print(f"data: {stock:,} kits in stock and {shipments:,} shipments of {per_shipment} kits in transit "
          f"in {time.perf_counter() - t0:.1f} s")
    return token, in_stock, manifests


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def size_mb(path: Path) -> float:
    try:
        return path.stat().st_size / 1e6
    except FileNotFoundError:
        return 0.0


class Load:
    """The client threads and their counts."""

    def __init__(self, port: int, token: str, in_stock: list[str], manifests: list[tuple], stop: threading.Event):
        self.port, self.stop = port, stop
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.in_stock = in_stock
        self.manifests = list(manifests)
        self.received: list[tuple] = []  # shipments scanned through, for the page readers
        self.lock = threading.Lock()
        self.done: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.write_times: list[float] = []  # since the last minute's line: the pauses a WAL truncation causes

    def minute_latency(self) -> str:
        with self.lock:
            times, self.write_times = sorted(self.write_times), []
        if not times:
            return "no writes"
        return (f"write p50 {times[len(times) // 2] * 1000:.0f} ms, p99 {times[int(len(times) * 0.99)] * 1000:.0f} ms, "
                f"max {times[-1] * 1000:.0f} ms")

    def _request(self, conn: http.client.HTTPConnection, kind: str, method: str, path: str, body: dict | None = None,
                 ok: tuple[int, ...] = (200,)) -> None:
        started = time.perf_counter()
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=self.headers)
        response = conn.getresponse()
        response.read()
        took = time.perf_counter() - started
        with self.lock:
            self.done[kind] += 1
            if method == "POST":
                self.write_times.append(took)
            if response.status not in ok:
                self.errors[f"{kind} {response.status}"] += 1

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def _label(self, number: str) -> str:
        return qrpayload.make_payload(number, SECRET)

    def stock_scanner(self) -> None:
        conn, rng = self._connection(), random.Random()
        while not self.stop.is_set():
            self._request(conn, "stock scan", "POST", "/api/v1/scan",
                          {"code": self._label(rng.choice(self.in_stock)), "station": "soak pharmacy"})

    def receiver(self) -> None:
        conn = self._connection()
        while not self.stop.is_set():
            with self.lock:
                if not self.manifests:
                    break
                number, kits = self.manifests.pop()
            for kit in kits:
                if self.stop.is_set():
                    return
                self._request(conn, "receipt scan", "POST", f"/api/v1/shipments/{number}/receipt-scans",
                              {"code": self._label(kit)})
            with self.lock:
                self.received.append((number, kits))
        if not self.stop.is_set():  # every shipment received: go on scanning stock
            self.stock_scanner()

    def reader(self) -> None:
        conn, rng = self._connection(), random.Random()
        while not self.stop.is_set():
            with self.lock:
                shipment = rng.choice(self.received) if self.received else None
            kit = rng.choice(self.in_stock)
            choice = rng.randrange(4)
            if choice == 0:
                self._request(conn, "page read", "GET", f"/kits/{kit}")
            elif choice == 1:
                self._request(conn, "page read", "GET", f"/api/v1/kits/{kit}")
            elif shipment is not None and choice == 2:
                self._request(conn, "page read", "GET", f"/shipments/{shipment[0]}")
            elif shipment is not None:
                self._request(conn, "page read", "GET", f"/api/v1/shipments/{shipment[0]}")
            else:
                self._request(conn, "page read", "GET", "/shipments")

    def run_forever(self, target) -> threading.Thread:
        def guarded() -> None:
            try:
                target()
            except Exception as exc:  # a client that fails stops; its error is counted
                with self.lock:
                    self.errors[f"{target.__name__}: {type(exc).__name__}: {exc}"[:120]] += 1
        thread = threading.Thread(target=guarded, daemon=True)
        thread.start()
        return thread


def soak(args: argparse.Namespace, folder: Path) -> bool:
    path = folder / "soak.db"
    wal = Path(f"{path}-wal")
    url = f"sqlite:///{path}"
    env = {**os.environ, "CELLBENCH_DATABASE_URL": url, "CELLBENCH_SECRET_KEY": SECRET, "CELLBENCH_DEMO": "false",
           "CELLBENCH_DATA_DIR": str(folder)}
    token, in_stock, manifests = build(url, env, args.stock, args.shipments, args.per_shipment)
    print(f"database: {size_mb(path):.1f} MB, WAL {size_mb(wal):.1f} MB")
    port = _free_port()
    log_path = folder / "server.log"
    server_log = log_path.open("wb")
    server = subprocess.Popen([_cellbench(), "serve", "--port", str(port), "--no-access-log"], env=env,
                              stdout=server_log, stderr=subprocess.STDOUT)
    stop = threading.Event()
    rss: list[float] = []
    wal_max = 0.0
    try:
        _wait_for(port, server)
        load = Load(port, token, in_stock, manifests, stop)
        threads = ([load.run_forever(load.receiver) for _ in range(args.receivers)]
                   + [load.run_forever(load.stock_scanner) for _ in range(args.scanners)]
                   + [load.run_forever(load.reader) for _ in range(args.readers)])
        print(f"load: {args.receivers} receivers, {args.scanners} stock scanners, {args.readers} page readers "
              f"for {args.minutes:g} min")
        start = time.monotonic()
        for minute in range(1, int(args.minutes) + 1):
            while (elapsed := time.monotonic() - start) < minute * 60:
                wal_max = max(wal_max, size_mb(wal))
                if server.poll() is not None:
                    raise RuntimeError("the server stopped")
                time.sleep(1)
            rss.append(rss_mb(server.pid))
            with load.lock:
                done, errors = dict(load.done), sum(load.errors.values())
            print(f"minute {minute}: WAL {size_mb(wal):6.1f} MB (largest so far {wal_max:.1f}), "
                  f"database {size_mb(path):.1f} MB, server RSS {rss[-1]:.1f} MB, "
                  f"requests {done} ({sum(done.values()) / elapsed:.0f}/s), {load.minute_latency()}, errors {errors}, "
                  f"load average {os.getloadavg()[0]:.2f}", flush=True)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        stop.set()
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        server_log.close()
        said = log_path.read_text(errors="replace").splitlines()[1:]  # after "cellbench on http://..."
        warnings = [line for line in said if not line.startswith("INFO:")]
        print(f"server log: {len(warnings)} warnings or errors" + "".join(f"\n  {w}" for w in warnings[:8]))
    if load.errors:
        print(f"errors: {dict(load.errors.most_common(5))}")
    wal_ok = wal_max <= TARGET_WAL_MB
    print(f"WAL: largest {wal_max:.1f} MB over the run (target ≤ {TARGET_WAL_MB:.0f} MB)  "
          f"{'PASS' if wal_ok else 'MISS'}")
    if len(rss) < 2:
        print("RSS growth: needs at least 2 minutes")
        return wal_ok and not load.errors
    growth = (rss[-1] - rss[0]) / rss[0]
    rss_ok = growth <= TARGET_RSS_GROWTH
    print(f"RSS: {rss[0]:.1f} MB after the first minute, {rss[-1]:.1f} MB at the end: growth {growth:+.1%} "
          f"(target ≤ {TARGET_RSS_GROWTH:.0%})  {'PASS' if rss_ok else 'MISS'}")
    return wal_ok and rss_ok and not load.errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--receivers", type=int, default=3)
    parser.add_argument("--scanners", type=int, default=3)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--stock", type=int, default=20_000)
    parser.add_argument("--shipments", type=int, default=1_500)
    parser.add_argument("--per-shipment", type=int, default=40)
    parser.add_argument("--keep", action="store_true", help="keep the database folder (printed)")
    args = parser.parse_args(argv)
    print(f"cellbench soak benchmark, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    folder = Path(tempfile.mkdtemp(prefix="cellbench-soak-"))
    try:
        ok = soak(args, folder)
    finally:
        if args.keep:
            print(f"kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
