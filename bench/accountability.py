"""Accountability benchmark: the balance pages at 10,000, 100,000 and (with --million) 1,000,000 kits.

    python bench/accountability.py                    # 10k and 100k kits, SQLite in a temp folder
    python bench/accountability.py --million          # and 1M kits (builds for a few minutes)
    python bench/accountability.py --database-url postgresql://postgres@127.0.0.1/EMPTY_DB
    python bench/accountability.py --million --keep D           # keep the SQLite files in D ...
    python bench/accountability.py --million --keep D --reuse   # ... and time them again unbuilt

Setup (not timed), per size: one study (NCT07290946) with its two sites, 20 blinded lots, and the
kits bulk-inserted (core INSERTs, as bench/scan.py's builder does: the service layer would take
hours) in a fixed mix of states at the bench, in transit and at the sites; then the running counts
are filled from the rows (kit_counts.refill), as migration 0026 does for an existing database.
The number of blinded lots and sites stays the same at every size, so that what grows is the
number of kits alone.

Timed, through FastAPI's TestClient, each request whole, taking turns:
  GET /accountability?study=...          as the supply manager and as the pharmacist
  GET /api/v1/accountability?study=...   as the supply manager and as the pharmacist
  GET /                                   the home page (work queues) as both
median and p95 per route and size, target <= 20 ms, and the ratio of the largest size to 10k
(target: flat, <= 1.5).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import text

from cellbench import identifiers, studies, users
from cellbench.app import create_app
from cellbench.clock import utcnow
from cellbench.config import Settings, normalise_url
from cellbench.db import Database, migrate
from cellbench.models import BlindedLot, Role, Site, utc_text

try:  # the running counts; without them (the code before them) the pages count the kit rows
    from cellbench import kit_counts
except ImportError:  # pragma: no cover - for a before/after run on an older checkout
    kit_counts = None  # type: ignore[assignment]

TARGET_MS, TARGET_RATIO = 20.0, 1.5
PASSWORD = "bench-password-123456"
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
LOTS = 20
# Where the kits are, in shares of 100: (state, at a site?)
MIX = [("released", False)] * 10 + [("packaged", False)] * 2 + [("in_transit", False)] * 3 + \
      [("at_site", True)] * 25 + [("allocated", True)] * 2 + [("administered", True)] * 40 + \
      [("returned", True)] * 5 + [("destroyed", True)] * 8 + [("damaged", True)] + [("quarantined", True)] * 2 + \
      [("missing", False)] * 2


def build(db: Database, kits: int) -> tuple[str, float]:
    """People, the study, its blinded lots and `kits` kits; returns the study code and seconds taken."""
    t0 = time.perf_counter()
    users.configure(12, 5, FAST_HASHER)
    migrate(db)
    with db.write() as s:
        admin = users.cli_actor()
        supply = users.create_user(s, admin, "supply", "Bench Supply", PASSWORD, [Role.supply_manager.value])
        pharmacist = users.create_user(s, admin, "pharmacist", "Bench Pharmacist", PASSWORD, [Role.pharmacist.value])
        study = studies.sync_from_files(s, users.actor(s, supply))[0]
        site_ids = [site.id for site, _ in studies.sites_of(s, study)]
        first_site = s.get(Site, site_ids[0])
        users.link(s, admin, pharmacist, site=first_site.code)
        users.link(s, admin, pharmacist, study=study.code)
        expiry = utcnow().date() + timedelta(days=700)
        lots = [BlindedLot(code=f"XB26-{n:03d}", study_id=study.id, expiry=expiry, created_at=utcnow())
                for n in range(LOTS)]
        s.add_all(lots)
        s.flush()
        study_id, study_code, lot_ids = study.id, study.code, [lot.id for lot in lots]
    rng = random.Random(18)
    now = utc_text(utcnow())
    insert = text("INSERT INTO kit (number, study_id, blinded_lot_id, state, location, site_id, created_at, "
                  "row_version) VALUES (:n, :st, :b, :state, :loc, :site, :at, 1)")
    issued: set[str] = set()
    for start in range(0, kits, 50_000):
        numbers = identifiers.new_kit_numbers(min(50_000, kits - start), issued)
        issued.update(numbers)
        rows = []
        for number in numbers:
            state, at_site = rng.choice(MIX)
            site = rng.choice(site_ids) if at_site else None
            rows.append({"n": number, "st": study_id, "b": rng.choice(lot_ids), "state": state,
                         "loc": "pharmacy" if site else "cell bench", "site": site, "at": now})
        with db.write() as s:
            s.execute(insert, rows)
    if kit_counts is not None:
        with db.write() as s:
            kit_counts.refill(s)
    with db.write() as s:
        s.execute(text("ANALYZE"))
    return study_code, time.perf_counter() - t0


def sign_in(client: TestClient, username: str) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token},
                           follow_redirects=False)
    assert response.status_code == 303, response.text


def measure(db: Database, data_dir: Path, study: str, requests: int) -> dict[str, list[float]]:
    settings = Settings(database_url=db.url, secret_key="bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz",
                        data_dir=data_dir)
    routes = [f"/accountability?study={study}", f"/api/v1/accountability?study={study}", "/"]
    times: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        clients = {}
        for who in ("supply", "pharmacist"):
            client = stack.enter_context(TestClient(create_app(settings, password_hasher=FAST_HASHER, database=db)))
            sign_in(client, who)
            clients[who] = client
        for _ in range(5):  # warm-up: templates compiled, pools filled
            for client in clients.values():
                for url in routes:
                    assert client.get(url).status_code == 200
        for _ in range(requests):  # taking turns, so that a busy machine weighs on all alike
            for who, client in clients.items():
                for url in routes:
                    started = time.perf_counter()
                    response = client.get(url)
                    times.setdefault(f"GET {url.split('?')[0]} as {who}", []).append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text[:300]
    return times


def _built(db: Database) -> str | None:
    """The study code of a database this benchmark built before (--reuse), brought to the code's schema."""
    migrate(db)
    with db.engine.connect() as conn:
        return conn.execute(text("SELECT s.code FROM study s WHERE EXISTS "
                                 "(SELECT 1 FROM kit k WHERE k.study_id = s.id)")).scalar()


def _database(url: str | None, folder: Path, kits: int, reuse: bool = False) -> Database:
    if url is None:
        path = folder / f'accountability-{kits}.db'
        if path.exists() and not reuse:
            path.unlink()  # a kept file of an earlier run is rebuilt unless --reuse says otherwise
        return Database(f"sqlite:///{path}")
    db = Database(normalise_url(url))
    with db.engine.begin() as conn:  # an empty database for each size
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    return db


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--million", action="store_true", help="also 1,000,000 kits (a few minutes to build)")
    parser.add_argument("--sizes", type=int, nargs="*", help="kit counts to measure instead of the default")
    parser.add_argument("--requests", type=int, default=60, help="requests per route and size (default 60)")
    parser.add_argument("--database-url", help="an EMPTY PostgreSQL database (its public schema is dropped)")
    parser.add_argument("--keep", type=Path, help="SQLite: build the databases in this folder and keep them")
    parser.add_argument("--reuse", action="store_true", help="with --keep: time the kept databases, not rebuilt")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([10_000, 100_000, 1_000_000] if args.million else [10_000, 100_000])
    engine = "PostgreSQL" if args.database_url else "SQLite"
    print(f"cellbench accountability benchmark on {engine}, Python {platform.python_version()}, {os.cpu_count()} "
          f"CPUs (load average {os.getloadavg()[0]:.2f}); running counts: {'yes' if kit_counts else 'no'}")
    results: dict[int, dict[str, list[float]]] = {}
    if args.reuse and (args.keep is None or args.database_url):
        parser.error("--reuse needs --keep (SQLite only)")
    with tempfile.TemporaryDirectory(prefix="cellbench-bench-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for kits in sizes:
            db = _database(args.database_url, folder, kits, args.reuse)
            kept = _built(db) if args.reuse else None
            study, built = (kept, 0.0) if kept else build(db, kits)
            results[kits] = measure(db, folder, study, args.requests)
            db.engine.dispose()
            print(f"{kits:,} kits " + ("reused" if kept else f"built in {built:.1f} s (not timed)")
                  + f"; load average {os.getloadavg()[0]:.2f}")
    first, last = sizes[0], sizes[-1]
    print(f"{'route':42s} " + " ".join(f"{f'{k:,} median/p95':>24s}" for k in sizes) + f"  {'ratio':>6s}  target")
    failed = False
    for route in results[first]:
        cells, worst = [], 0.0
        for kits in sizes:
            values = sorted(results[kits][route])
            median, p95 = statistics.median(values) * 1000, values[int(len(values) * 0.95) - 1] * 1000
            worst = max(worst, median)
            cells.append(f"{median:9.2f} / {p95:7.2f} ms")
        ratio = statistics.median(results[last][route]) / statistics.median(results[first][route])
        ok = worst <= TARGET_MS and ratio <= TARGET_RATIO
        failed |= not ok
        print(f"{route:42s} " + " ".join(f"{c:>24s}" for c in cells) +
              f"  {ratio:6.2f}  <= {TARGET_MS:g} ms, ratio <= {TARGET_RATIO:g}  {'PASS' if ok else 'FAIL'}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
