"""Every page at ten years of data: each GET page and API route, as each role that may open it.

    python bench/pages.py                                   # SQLite: full size, then one tenth
    python bench/pages.py --keep /tmp/pages                 # ... keeping the databases
    python bench/pages.py --keep /tmp/pages --reuse         # time again without rebuilding
    python bench/pages.py --database-url postgresql://postgres@127.0.0.1/EMPTY_DB
    python bench/pages.py --scale 0.1 --no-tenth --routes '^/lots' --roles qa,qp --requests 10
    # the two passes apart (e.g. at once on two cores), the growth taken from the tenth's JSON:
    python bench/pages.py --keep D --scale 0.1 --no-tenth --json D/tenth.json
    python bench/pages.py --keep D --no-tenth --against D/tenth.json --json D/full.json

The data (bench/tenyears.py): the demo, made through the service layer, then BULK-BUILT at the
row level (the service layer would take hours): at full size at least 500 lots with their batch
records, 100,000 kits, 20,000 participants' visits and 2,000,000 audit events (hash-chained with
audit.event_hash, the head signed). Cloned rows are the demo's own rows with new ids, numbers and
dates, so every page has real rows to show; the builder's docstring says what is not real.

Routes come from the app (GET only); who may open each from the gate's declarations (the
`require(...)` checks of its dependencies). Each role signs in once, as the demo's user for that
role (the first site's people: their scope covers the demo's own rows). Path parameters are filled
from the links of the role's own pages (a walk from home, one link per route), then from the values
other routes of the same kind used (API routes take the pages' lot, kit, shipment...), then from the
data (a study code, treatment 1); a route that cannot be filled is listed as skipped, with why.

Timed through TestClient in-process (the whole request: session check, reads, rendering): one
warm-up, then --requests requests (a cheap page more, until it has had a quarter of a second).
Targets: HTML and JSON p95 <= 50 ms; downloads (PDF, ZIP, CSV,
XML, PNG, ZPL) are timed apart with fewer requests and their own target, p95 <= 1000 ms (a PDF of a
whole record is not a 50 ms thing). With the tenth pass (default), growth = full median / tenth
median per route, target <= 1.5; the two passes run minutes apart, and on a machine whose speed
drifts the whole second pass shifts with it: bench/pagegrowth.py times both sizes side by side.
One line per (route, role), sorted by p95, then the routes that
answered other than 200 or were skipped, the summary, and one request of each of the five slowest
pages under cProfile with its SQL statement count (--profile N).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pagekeys  # bench/ is not a package: its modules are imported by name
import pagememory
import pageprofile
import pageroutes
import tenyears

from cellbench import checkpoints, demo, users
from cellbench.app import create_app
from cellbench.config import Settings, normalise_url
from cellbench.db import Database, migrate
from cellbench.models import Role

PAGE_TARGET_MS, FILE_TARGET_MS, GROWTH_TARGET = 50.0, 1000.0, 1.5
# A cheap page is timed until it has had SETTLE_SECONDS (at most MAX_REQUESTS requests): six requests
# of a 3 ms page make a p95 that is their slowest one and a median that one stray request moves, so
# its growth ratio scattered 0.5-4x from pass to pass; a 40 ms page still gets --requests.
SETTLE_SECONDS, MAX_REQUESTS = 0.25, 40
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
SECRET = "bench-pages-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
PAGE_TYPES = ("text/html", "application/json")
ANYONE = "(anyone)"  # the role of a public page's rows, and the key of the signed-out client


@dataclass
class Result:
    route: str
    role: str
    url: str = ""
    kind: str = "page"  # page | download
    status: int = 0
    median_ms: float = 0.0
    p95_ms: float = 0.0
    target_ms: float = PAGE_TARGET_MS
    bytes: int = 0
    requests: int = 0
    skipped: str = ""
    growth: float | None = None

    @property
    def passed(self) -> bool:
        return not self.skipped and self.status == 200 and self.p95_ms <= self.target_ms


@dataclass
class Pass:
    engine: str
    scale: float
    world: dict[str, Any] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)


# --- the database --------------------------------------------------------------------------------


def _is_built(db: Database) -> bool:
    with db.engine.connect() as conn:
        try:
            return bool(conn.execute(text("SELECT count(*) FROM lot")).scalar())
        except Exception:  # no tables yet
            return False


def build(db: Database, scale: float) -> dict[str, Any]:
    """The demo through the service layer, then tenyears.grow; what was built, with the times."""
    t0 = time.perf_counter()
    migrate(db)
    with db.write() as s:
        demo.seed(s, users.cli_actor())
    seeded = time.perf_counter() - t0
    world = tenyears.grow(db, scale)
    return {"lot_copies": world.lot_copies, "trial_copies": world.trial_copies, "counts": world.counts,
            "seconds": {"demo (service layer)": round(seeded, 1),
                        **{f"{k} (bulk)" if k != "analyze" else k: round(v, 1) for k, v in world.timings.items()}}}


def _pg_database(url: str, suffix: str) -> str:
    """The PostgreSQL database of a second pass: <name><suffix>, created when missing."""
    base, _, name = url.rpartition("/")
    engine = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name + suffix}).scalar():
            conn.execute(text(f'CREATE DATABASE "{name + suffix}"'))
    engine.dispose()
    return f"{base}/{name + suffix}"


# --- routes and who may open them ----------------------------------------------------------------


# --- timing ---------------------------------------------------------------------------------------


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, -(-len(ordered) * 95 // 100) - 1)]


def time_url(client: TestClient, result: Result, requests: int, budget: float) -> None:
    first = client.get(result.url, follow_redirects=False)  # the warm-up: templates compiled, caches filled
    result.status = first.status_code
    kind = first.headers.get("content-type", "").split(";")[0]
    if not kind.startswith(PAGE_TYPES) and first.status_code == 200:
        result.kind, result.target_ms = "download", FILE_TARGET_MS
        requests = max(1, min(requests, 5))
    result.bytes = len(first.content)
    times: list[float] = []
    began = time.perf_counter()
    while True:
        spent = time.perf_counter() - began
        if len(times) >= requests and (result.kind == "download" or spent >= SETTLE_SECONDS
                                       or len(times) >= MAX_REQUESTS):
            break
        if len(times) >= 3 and spent > budget:
            break  # a slow route: its figure is clear after three
        start = time.perf_counter()
        client.get(result.url, follow_redirects=False)
        times.append((time.perf_counter() - start) * 1000)
    result.requests = len(times)
    result.median_ms, result.p95_ms = statistics.median(times), _p95(times)


def time_pass(db: Database, engine: str, scale: float, args: argparse.Namespace, folder: Path) -> Pass:
    result = Pass(engine, scale)
    # A full pass takes longer than a page session's idle limit, and a role may wait its turn for most
    # of it: without a long limit, its later routes would be timed as the sign-in redirect (303/401).
    settings = Settings(database_url=db.url, secret_key=SECRET, data_dir=folder, session_idle_minutes=24 * 60)
    app = create_app(settings, password_hasher=FAST_HASHER, database=db)
    every = pageroutes.gated_routes(app)
    all_routes = [r for r, _ in every]
    chosen = [(r, a) for r, a in every if re.search(args.routes, r.path)]
    wanted = {r.strip() for r in args.roles.split(",") if r.strip()} or {r.value for r in Role}
    people = {role: user for role, user in pageroutes.role_users().items() if role in wanted}
    defaults = pageroutes.data_defaults(db)
    clients: dict[str, TestClient] = {}
    try:
        anonymous = clients.setdefault(ANYONE, TestClient(app).__enter__())
        for route, access in chosen:
            if access.public:
                row = Result(route.path, ANYONE, url=route.path)
                time_url(anonymous, row, args.requests, args.budget)
                result.results.append(row)
        links = pageroutes.discover(app, all_routes, people, clients, args.walk)
        # A served process freezes its start-up heap once (app.freeze_startup_heap); this pass's app
        # is the process's second, so its heap and the walk's leftovers are frozen here instead, or
        # every full collection walks them and stops one request in six for 0.2 s (the p95 "stalls").
        gc.collect()
        gc.freeze()
        for route, access in chosen:
            if access.public:
                continue
            for role in people:
                if not access.admits(Role(role)):
                    continue
                row = Result(route.path, role, skipped=pageroutes.NOT_TIMED.get(route.path, ""))
                if not row.skipped:
                    row.url, row.skipped = links.url(route, role, defaults)
                if not row.skipped:
                    time_url(clients[role], row, args.requests, args.budget)
                result.results.append(row)
        slowest = sorted((r for r in result.results if r.status == 200 and r.kind == "page"), key=lambda r: -r.p95_ms)
        for row in slowest[:args.profile]:
            pageprofile.profile(db, app, clients[row.role], row)
    finally:
        for client in clients.values():
            client.__exit__(None, None, None)
        gc.unfreeze()  # this pass's app may now be collected before the next pass builds its own
    return result


# --- output ---------------------------------------------------------------------------------------


def _verdict(row: Result) -> str:
    growth_ok = row.growth is None or row.growth <= GROWTH_TARGET or row.kind == "download"
    return "PASS" if row.passed and growth_ok else "FAIL"


def report(full: Pass, tenth: Pass | None) -> int:
    """Prints the table and the summary; 0 all pass, 1 a target missed, 2 a route answered an error."""
    if tenth is not None:
        small = {(r.route, r.role): r for r in tenth.results if not r.skipped and r.status == 200}
        for row in full.results:
            other = small.get((row.route, row.role))
            if other is not None and not row.skipped and other.median_ms > 0:
                row.growth = row.median_ms / other.median_ms
    timed = sorted((r for r in full.results if not r.skipped and r.status == 200), key=lambda r: -r.p95_ms)
    answered = [r for r in full.results if not r.skipped and r.status != 200]
    print(f"\n{full.engine}, scale {full.scale:g}: {len(timed)} (route, role) timed "
          f"[targets: pages and API p95 <= {PAGE_TARGET_MS:g} ms, downloads p95 <= {FILE_TARGET_MS:g} ms"
          + (f", growth (median at full / at {tenth.scale:g}) <= {GROWTH_TARGET:g}" if tenth else "") + "]")
    print(f"{'route':58s} {'role':15s} {'median':>9s} {'p95':>9s} {'target':>9s} {'growth':>7s}  verdict")
    for row in timed:
        growth = f"{row.growth:6.2f}x" if row.growth is not None else "      -"
        print(f"{row.route[:58]:58s} {row.role:15s} {row.median_ms:7.1f}ms {row.p95_ms:7.1f}ms "
              f"{'<=' + format(row.target_ms, 'g'):>7s}ms {growth}  {_verdict(row)}"
              + (f"  [{row.kind}, {row.bytes // 1024} KiB, {row.requests} requests]" if row.kind == "download"
                 else f"  [{row.requests} requests]" if row.requests < 10 else ""))
    if answered:
        print(f"\nnot timed against the target: answered other than 200 ({len(answered)}; the state of the data "
              "or a URL the bench could not make right; 5xx is an error):")
        for row in sorted(answered, key=lambda r: (r.route, r.role)):
            print(f"  HTTP {row.status}  {row.route} as {row.role}: GET {row.url}")
    skipped = [r for r in full.results if r.skipped]
    if skipped:
        print(f"\nskipped ({len(skipped)}): ")
        for row in sorted(skipped, key=lambda r: (r.route, r.role)):
            print(f"  {row.route} as {row.role}: {row.skipped}")
    verdicts = [_verdict(r) for r in timed]
    passing = verdicts.count("PASS")
    routes = {r.route for r in timed}
    failing_routes = {r.route for r, v in zip(timed, verdicts, strict=True) if v != "PASS"}
    print(f"\nsummary ({full.engine}, scale {full.scale:g}): {passing} of {len(timed)} (route, role) pass; "
          f"{len(routes) - len(failing_routes)} of {len(routes)} routes pass as every role; {len(skipped)} skipped; "
          f"{len(answered)} answered other than 200")
    print("slowest ten (p95): " + "; ".join(f"{r.route} as {r.role} {r.p95_ms:.0f} ms" for r in timed[:10]))
    if tenth is not None:
        grown = sorted((r for r in timed if r.growth is not None), key=lambda r: -(r.growth or 0))
        print("most grown ten: " + "; ".join(f"{r.route} as {r.role} {r.growth:.2f}x" for r in grown[:10]))
    if any(r.status >= 500 for r in answered):
        return 2
    return 0 if passing == len(timed) else 1


# --- main -----------------------------------------------------------------------------------------


def one_pass(url: str, scale: float, args: argparse.Namespace, folder: Path) -> Pass:
    db = Database(url)
    engine = "SQLite" if db.is_sqlite else "PostgreSQL"
    try:
        users.configure(12, 5, FAST_HASHER)
        info: dict[str, Any] = {"reused": True}
        reuse = args.reuse and _is_built(db)
        pagekeys.install(folder, db, built=reuse)  # the database's own key and log (pagekeys.py)
        if reuse:
            migrate(db)  # a kept database follows the schema (and indexes) of the code being timed
        else:
            if _is_built(db):
                raise SystemExit(f"{url} already holds data: give an empty database, or --reuse to time it again")
            t0 = time.perf_counter()
            info = build(db, scale)
            info["build seconds"] = round(time.perf_counter() - t0, 1)
        print(f"\n{engine} database at scale {scale:g}: {json.dumps(info)}")
        t0, refaults = time.perf_counter(), _refaults()
        files = [Path(db.sqlite_path() or "")] if args.hold_in_memory and db.is_sqlite else []
        with pagememory.held_all(files):
            result = time_pass(db, engine, scale, args, folder)
        info["file pages re-read"], info["held in memory"] = _refaults() - refaults, bool(files)
        result.world = info
        print(f"timed in {time.perf_counter() - t0:.0f} s, load average {os.getloadavg()[0]:.2f}; file pages "
              f"evicted and read again meanwhile: {info['file pages re-read']:,} (Linux's workingset_refault_file: "
              "a machine that pages out idle files, as these VMs do, shows it here; bench/pagememory.py)")
        return result
    finally:
        db.dispose()


def _refaults() -> int:
    """File pages this machine evicted and then read again, so far (0 where Linux does not say)."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("workingset_refault_file "):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _earlier(path: Path) -> Pass:
    """A pass read back from its --json file (the growth of this pass is taken against it)."""
    saved = json.loads(path.read_text())["passes"][0]
    return Pass(saved["engine"], saved["scale"], saved["world"], [Result(**r) for r in saved["results"]])


def _url(args: argparse.Namespace, folder: Path, scale: float, suffix: str) -> str:
    if args.database_url:
        url = normalise_url(args.database_url)
        return _pg_database(url, suffix) if suffix else url
    return f"sqlite:///{folder / f'pages-{scale:g}.db'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1 = ten years (500 lots, 100,000 kits...)")
    parser.add_argument("--against", type=Path, help="the --json of an earlier pass (e.g. --scale 0.1 --no-tenth): "
                        "growth is taken against it instead of running the tenth pass")
    parser.add_argument("--no-tenth", dest="tenth", action="store_false", help="skip the pass at scale / 10")
    parser.add_argument("--database-url", default="", help="an EMPTY PostgreSQL database (default: SQLite); "
                        "the tenth pass uses <name>_tenth, created when missing")
    parser.add_argument("--keep", type=Path, help="build the SQLite databases (and each one's checkpoint key "
                        "and log, in a folder named after it) here")
    parser.add_argument("--reuse", action="store_true", help="time the databases already built (with --keep)")
    parser.add_argument("--routes", default="", help="only routes whose path matches this regex")
    parser.add_argument("--roles", default="", help="only these roles (comma-separated)")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per route after one warm-up (at "
                        f"least; a cheap page goes on until {SETTLE_SECONDS:g} s or {MAX_REQUESTS} requests)")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per route after which it stops at "
                        "three requests or more (a slow route's figure is clear by then)")
    parser.add_argument("--walk", type=int, default=pageroutes.WALK_LIMIT, help="pages each role opens to find links "
                        f"(default {pageroutes.WALK_LIMIT})")
    parser.add_argument("--profile", type=int, default=5, help="cProfile one request of the N slowest pages "
                        "of each pass (default 5)")
    parser.add_argument("--hold-in-memory", action="store_true", help="SQLite: lock the database file in memory "
                        "while it is timed (bench/pagememory.py says why)")
    parser.add_argument("--exit-zero", action="store_true", help="exit 0 when targets are missed (errors exit 2)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    start_load = os.getloadavg()
    print(f"cellbench pages benchmark, {os.cpu_count()} CPUs, load average {start_load[0]:.2f} "
          f"{start_load[1]:.2f} {start_load[2]:.2f}")
    previous_key = checkpoints.installed()  # put back after: a test runs this in its own process
    with tempfile.TemporaryDirectory(prefix="cellbench-pages-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            tenth = _earlier(args.against) if args.against else one_pass(
                _url(args, folder, args.scale / 10, "_tenth"), args.scale / 10, args, folder) if args.tenth else None
            full = one_pass(_url(args, folder, args.scale, ""), args.scale, args, folder)
        finally:
            checkpoints.install(previous_key)
    status = report(full, tenth)
    end_load = os.getloadavg()
    print(f"load average at start {start_load[0]:.2f}, at end {end_load[0]:.2f} (wall-clock times: a busy "
          "machine makes them longer)")
    if args.json:
        args.json.write_text(json.dumps({"load_average": {"start": start_load, "end": end_load},
                                         "targets": {"page_p95_ms": PAGE_TARGET_MS, "download_p95_ms": FILE_TARGET_MS,
                                                     "growth": GROWTH_TARGET},
                                         "passes": [{**asdict(p), "results": [asdict(r) for r in p.results]}
                                                    for p in (full, tenth) if p]}, indent=1))
    return 0 if status == 1 and args.exit_zero else status


if __name__ == "__main__":
    sys.exit(main())
