"""List-page benchmark: every list page and JSON list at 100,000 kits and 1,000,000 audit events.

    python bench/lists.py                       # builds the data in a temp folder (a few minutes)
    python bench/lists.py --db /tmp/lists.db    # builds once into that file, then reuses it
    python bench/lists.py --requests 50 --only kits

The data is bench/scan.py's `build(db, kits, events)`: one study and site, 100,000 kits at the
site (bulk-inserted) and a hash-chained audit trail of 1,000,000 events; this bench adds a QA
and an admin user. Lists other than kits and the audit trail hold the few rows the study sync
makes: their figures show the floor of a list page, not its growth.

Each route is timed through FastAPI's TestClient (session cookie, database reads, rendering,
whole response) as a role that may open it: its first page and, where it has one, the page its
"Next" link (or API `next` cursor) leads to. Printed: median and p95 per route, target <= 20 ms,
and the machine's load average before and after.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import sys
import tempfile
import time
from html import unescape
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from cellbench import users
from cellbench.app import create_app
from cellbench.config import Settings
from cellbench.db import Database, migrate
from cellbench.models import Role

HERE = Path(__file__).resolve().parent
TARGET_MS = 20.0
PASSWORD = "bench-password-123456"
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
# (who, url): each list a role may open, at the data's scale
ROUTES = [
    ("bench-supply", "/kits"),
    ("bench-supply", "/kits?state=at_site"),
    ("bench-supply", "/kits?page=1000"),  # before keyset pagination: a deep page by offset
    ("bench-pharmacist", "/kits"),
    ("bench-supply", "/api/v1/kits"),
    ("bench-qa", "/audit"),
    ("bench-qa", "/audit?entity_type=kit"),
    ("bench-qa", "/api/v1/audit"),
    ("bench-qa", "/lots"),
    ("bench-qa", "/api/v1/lots"),
    ("bench-qa", "/deviations"),
    ("bench-qa", "/api/v1/deviations"),
    ("bench-qa", "/donors"),
    ("bench-qa", "/api/v1/donors"),
    ("bench-qa", "/materials"),
    ("bench-qa", "/api/v1/material-lots"),
    ("bench-qa", "/equipment"),
    ("bench-qa", "/api/v1/equipment"),
    ("bench-supply", "/shipments"),
    ("bench-supply", "/api/v1/shipments"),
    ("bench-supply", "/supply/quarantines"),
    ("bench-supply", "/api/v1/supply/quarantines"),
    ("bench-pharmacist", "/participants"),
    ("bench-pharmacist", "/api/v1/participants"),
    ("bench-pharmacist", "/returns"),
    ("bench-admin", "/admin/users"),
    ("bench-admin", "/api/v1/users"),
    ("bench-supply", "/notifications"),
]
NEXT_LINK = re.compile(r'href="([^"]+)"[^>]*rel="next"')


def _scan_bench():
    spec = importlib.util.spec_from_file_location("bench_scan", HERE / "scan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(db: Database, kits: int, events: int) -> None:
    _scan_bench().build(db, kits, events)
    with db.write() as s:
        admin = users.cli_actor()
        users.create_user(s, admin, "bench-qa", "Bench QA", PASSWORD, [Role.qa.value])
        users.create_user(s, admin, "bench-admin", "Bench Admin", PASSWORD, [Role.admin.value])


def sign_in(client: TestClient, username: str) -> None:
    client.cookies.clear()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    answer = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text[:300]


def next_url(url: str, body: bytes, is_json: bool) -> str | None:
    """The second page's address: the page's Next link, or the API's `next` cursor."""
    if is_json:
        import json
        data = json.loads(body)
        cursor = data.get("next") if isinstance(data, dict) else None
        return f"{url}{'&' if '?' in url else '?'}after={cursor}" if cursor else None
    found = NEXT_LINK.search(body.decode())
    return unescape(found.group(1)) if found else None


def timed(client: TestClient, url: str, count: int) -> tuple[list[float], bytes, int]:
    times, body, status = [], b"", 0
    for _ in range(count):
        start = time.perf_counter()
        answer = client.get(url)
        times.append(time.perf_counter() - start)
        body, status = answer.content, answer.status_code
    return times, body, status


def report(label: str, times: list[float], status: int) -> bool:
    median = statistics.median(times) * 1000
    p95 = statistics.quantiles(times, n=20)[-1] * 1000 if len(times) >= 20 else max(times) * 1000
    ok = status == 200 and median <= TARGET_MS
    print(f"{label[:60]:60s} {median:7.2f}ms {p95:7.2f}ms   <= {TARGET_MS:g} ms  "
          f"{'PASS' if ok else 'FAIL'}{'' if status == 200 else f' (HTTP {status})'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, help="SQLite file: built if missing, reused if present")
    parser.add_argument("--kits", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40, help="requests per route (default 40)")
    parser.add_argument("--only", default="", help="time only the routes whose url contains this")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cellbench-lists-") as tmp:
        path = args.db or Path(tmp) / "lists.db"
        db = Database(f"sqlite:///{path}")
        users.configure(12, 5, FAST_HASHER)
        if not path.exists() or path.stat().st_size == 0:
            build(db, args.kits, args.events)
        migrate(db)  # a file built before a migration gets its indexes
        settings = Settings(database_url=db.url, secret_key="bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz",
                            data_dir=Path(tmp))
        app = create_app(settings, password_hasher=FAST_HASHER, database=db)
        print(f"cellbench list pages, {args.kits:,} kits and {args.events:,} audit events, SQLite, "
              f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.2f})")
        print(f"{'route (as who)':60s} {'median':>9s} {'p95':>9s}   target")
        failed = 0
        with TestClient(app) as client:
            who = None
            for user, url in ROUTES:
                if args.only not in url:
                    continue
                if user != who:
                    sign_in(client, user)
                    who = user
                timed(client, url, 3)  # warm-up: templates compiled, caches filled
                times, body, status = timed(client, url, args.requests)
                failed += not report(f"{url} ({user.removeprefix('bench-')})", times, status)
                second = next_url(url, body, url.startswith("/api/")) if status == 200 else None
                if second:
                    timed(client, second, 3)
                    times, _, status = timed(client, second, args.requests)
                    failed += not report("  its next page", times, status)
        print(f"load average after: {os.getloadavg()[0]:.2f}; {failed} route(s) over target or failing")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
