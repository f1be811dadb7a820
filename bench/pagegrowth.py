"""Growth from a tenth to ten years, each route timed at both sizes side by side: one process, the
two databases' apps open together, requests alternating tenth, full, tenth, full...

    python bench/pagegrowth.py --keep D                 # the SQLite pair pages.py --keep D built
    python bench/pagegrowth.py --keep D --database-url postgresql://postgres@127.0.0.1/NAME
    python bench/pagegrowth.py --keep D --routes '^/kits' --roles qa --requests 30

Why apart from pages.py: pages.py times the tenth, then the full size minutes later. On the machines
this project is measured on, the same code runs up to 40 % faster or slower from one minute to the
next (bench/scan.py, run four times in a row, gave 493-730 scans/s; 2026-12-07), and a whole pass
shifts with it: the median growth over all pages was 1.23 in one SQLite pass, 1.60 in the next and
0.85 on PostgreSQL, while pages in a fresh process did not grow. Alternating request by request
puts the machine's drift on both sizes alike, so the ratio is the code's. Only the growth target
(<= 1.5, issue 18) is judged here; p95 is pages.py's.

URLs are each database's own, found as pages.py finds them (a walk from each role's home). Downloads
are left out: their size grows with the data by design.
"""
from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pagekeys  # bench/ is not a package: its modules are imported by name
import pageroutes
import pages

from cellbench import checkpoints, users
from cellbench.app import create_app
from cellbench.config import Settings, normalise_url
from cellbench.db import Database, migrate
from cellbench.models import Role


@dataclass
class Side:
    """One database's app, its checkpoint key, its signed-in clients and the URL of each (route, role)."""

    db: Database
    key: checkpoints.Key
    app: object
    clients: dict[str, TestClient]
    urls: dict[tuple[str, str], str]


def open_side(url: str, folder: Path, args: argparse.Namespace) -> Side:
    db = Database(url)
    key = pagekeys.install(folder, db, built=True)
    migrate(db)
    settings = Settings(database_url=db.url, secret_key=pages.SECRET, data_dir=folder, session_idle_minutes=24 * 60)
    app = create_app(settings, password_hasher=pages.FAST_HASHER, database=db)
    every = pageroutes.gated_routes(app)
    routes = [r for r, _ in every]
    wanted = {r.strip() for r in args.roles.split(",") if r.strip()} or {r.value for r in Role}
    people = {role: user for role, user in pageroutes.role_users().items() if role in wanted}
    defaults = pageroutes.data_defaults(db)
    clients: dict[str, TestClient] = {}
    links = pageroutes.discover(app, routes, people, clients, args.walk)
    urls: dict[tuple[str, str], str] = {}
    for route, access in every:
        if access.public or route.path in pageroutes.NOT_TIMED or not re.search(args.routes, route.path):
            continue
        for role in people:
            if access.admits(Role(role)) and (link := links.url(route, role, defaults)[0]):
                urls[(route.path, role)] = link
    return Side(db, key, app, clients, urls)


def _once(side: Side, role: str, url: str) -> tuple[float, int, str]:
    # The key that signs the chain head is one per process: each database's writes (a logged read,
    # a session touch) must be signed with its own, or its chain would carry the other's signature.
    checkpoints.install(side.key)
    client = side.clients[role]
    start = time.perf_counter()
    response = client.get(url, follow_redirects=False)
    return (time.perf_counter() - start) * 1000, response.status_code, response.headers.get("content-type", "")


def compare(tenth: Side, full: Side, requests: int) -> list[tuple[str, str, float, float]]:
    """(route, role, tenth median, full median) for each pair both sides answer with a page."""
    rows = []
    for key in sorted(tenth.urls.keys() & full.urls.keys()):
        route, role = key
        _, s1, kind1 = _once(tenth, role, tenth.urls[key])  # warm-ups
        _, s2, kind2 = _once(full, role, full.urls[key])
        if s1 != 200 or s2 != 200 or not (kind1.startswith(pages.PAGE_TYPES) and kind2.startswith(pages.PAGE_TYPES)):
            continue
        a: list[float] = []
        b: list[float] = []
        for _ in range(requests):
            a.append(_once(tenth, role, tenth.urls[key])[0])
            b.append(_once(full, role, full.urls[key])[0])
        rows.append((route, role, statistics.median(a), statistics.median(b)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="the folder pages.py --keep built")
    parser.add_argument("--database-url", default="", help="PostgreSQL: the full database (the tenth is <name>_tenth)")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--routes", default="", help="only routes whose path matches this regex")
    parser.add_argument("--roles", default="", help="only these roles (comma-separated)")
    parser.add_argument("--requests", type=int, default=15, help="requests per size, alternating")
    parser.add_argument("--walk", type=int, default=pageroutes.WALK_LIMIT)
    args = parser.parse_args(argv)
    if args.keep is None:  # CI runs every bench/*.py bare: say what this one needs, and stop
        print("bench/pagegrowth.py times databases that bench/pages.py --keep DIR built (ten years take "
              "minutes to build): give --keep DIR. Nothing timed.")
        return 0
    load = os.getloadavg()
    users.configure(12, 5, pages.FAST_HASHER)
    if args.database_url:
        url = normalise_url(args.database_url)
        pair = (f"{url}_tenth", url)
    else:
        pair = tuple(f"sqlite:///{args.keep / f'pages-{s:g}.db'}" for s in (args.scale / 10, args.scale))
    previous_key = checkpoints.installed()  # put back after: a test runs this in its own process
    sides = [open_side(u, args.keep, args) for u in pair]
    gc.collect()
    gc.freeze()  # as pages.py: the two apps' heaps and the walks' leftovers, out of every collection
    try:
        rows = compare(sides[0], sides[1], args.requests)
    finally:
        for side in sides:
            for client in side.clients.values():
                client.__exit__(None, None, None)
            side.db.dispose()
        checkpoints.install(previous_key)
    engine = "SQLite" if not args.database_url else "PostgreSQL"
    print(f"\n{engine}: growth (median at {args.scale:g} / at {args.scale / 10:g}), alternating requests, "
          f"{args.requests} at each size [target <= {pages.GROWTH_TARGET:g}]")
    print(f"{'route':58s} {'role':15s} {'tenth':>8s} {'full':>8s} {'growth':>7s}")
    for route, role, small, large in sorted(rows, key=lambda r: -(r[3] / r[2])):
        verdict = "PASS" if large / small <= pages.GROWTH_TARGET else "FAIL"
        print(f"{route[:58]:58s} {role:15s} {small:6.1f}ms {large:6.1f}ms {large / small:6.2f}x  {verdict}")
    passing = sum(1 for _, _, small, large in rows if large / small <= pages.GROWTH_TARGET)
    ratios = [large / small for _, _, small, large in rows]
    print(f"\nsummary ({engine}): {passing} of {len(rows)} (route, role) grow <= {pages.GROWTH_TARGET:g}x; "
          f"median growth {statistics.median(ratios) if ratios else 0:.2f}x; load average {load[0]:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
