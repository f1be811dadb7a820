"""Page floor benchmark: what a signed-in page costs when it reads (almost) nothing.

    python bench/floor.py [--requests 300] [--http] [--profile]

Setup (not timed), on SQLite in a temporary folder: the demo users and batch records
(`demo.seed(release=False)`, as bench/batch_record.py), with the pharmacist linked to a site
so that its scope is read as a site user's is. Then, signed in as QA, a pharmacist and an
operator (one client each, so each has its own page session), timed through FastAPI's TestClient,
each request whole (gate, session check, navigation, rendering, security headers); beside
the wall-clock median and p90, the median CPU time of the process per request (steadier on a
shared machine: others' load lengthens the wall clock more than the work):

  GET /account        a page that reads nothing but the caller's API tokens   target <= 3 ms (median)
  GET /search         the search form with no query: anyone signed in         (no target)
  GET /               the role's home page: its work queues                   (no target)

Beside them, the SQL statements and the thread-pool hops of one request of each.
--http also times the same requests over real HTTP against `cellbench serve`'s app run by uvicorn
in a child process (one worker), with a keep-alive connection; --profile prints cProfile's top
functions for /account as QA.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import http.client
import os
import platform
import pstats
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from argon2 import PasswordHasher
from batch_record import statements_during  # bench/ beside this file: the same count of SQL statements
from fastapi.testclient import TestClient

from cellbench import demo, demo_marker, users
from cellbench.app import create_app
from cellbench.config import Settings
from cellbench.db import Database, migrate
from cellbench.models import Site

ACCOUNT_TARGET_MS = 3.0
ROLES = ("qa", "pharmacist", "operator")
URLS = ("/account", "/search", "/")
SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
# Signing in checks a password; argon2 at its real cost would only slow the untimed setup.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def build(db: Database) -> None:
    """The demo users and records, marked as the demo's (for --http); the pharmacist works for a site."""
    with db.write() as session:
        demo.seed(session, users.cli_actor(), release=False)
        demo_marker.mark(session, users.cli_actor())
    with db.write() as session:
        session.add(Site(code="BENCH-SITE", name="Bench site"))
        session.flush()
        users.link(session, users.cli_actor(), users.by_username(session, "pharmacist"), site="BENCH-SITE")


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no sign-in form"
    return found.group(1)


def sign_in(client: TestClient, username: str) -> None:
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"username": username, "password": demo.DEMO_PASSWORD,
                                           "csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303, response.text[:300]


Get = Callable[[str], int]


Samples = dict[tuple[str, str], list[tuple[float, float]]]


def timed(gets: dict[str, Get], count: int) -> Samples:
    """Every (role, url) `count` times, taking turns, so that a busy machine weighs on them alike.
    Each sample: wall-clock seconds, and the CPU seconds of this process (every thread: the
    client's and the app's), which others' load on a shared machine changes far less."""
    times: Samples = {(role, url): [] for role in gets for url in URLS}
    for _ in range(count):
        for role, get in gets.items():
            for url in URLS:
                cpu, start = time.process_time(), time.perf_counter()
                status = get(url)
                times[role, url].append((time.perf_counter() - start, time.process_time() - cpu))
                assert status == 200, f"{role} GET {url}: {status}"
    return times


def report(title: str, times: Samples) -> bool:
    print(f"\n{title}")
    print(f"{'role':12s} {'what':12s} {'median':>9s} {'p90':>9s} {'CPU med':>9s}   target (median)")
    ok = True
    for (role, url), samples in times.items():
        wall = [w for w, _ in samples]
        median = statistics.median(wall) * 1000
        p90 = statistics.quantiles(wall, n=10)[-1] * 1000
        cpu = statistics.median(c for _, c in samples) * 1000
        target = ""
        if url == "/account":
            passed = median <= ACCOUNT_TARGET_MS
            ok &= passed
            target = f"<= {ACCOUNT_TARGET_MS:g} ms  {'PASS' if passed else 'FAIL'}"
        print(f"{role:12s} GET {url:8s} {median:7.2f}ms {p90:7.2f}ms {cpu:7.2f}ms   {target}")
    return ok


async def asgi_get(app: Callable[..., Any], path: str, cookie: str) -> int:
    """One GET straight into the ASGI app, no client library between (for the profile)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode())],
             "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def profile(app: Callable[..., Any], cookies: dict[str, str], count: int) -> None:
    """cProfile of /account with the app in this thread: the ASGI app called in one event loop,
    and the thread pool's work run in place, so that the profile sees all of it."""
    import anyio.to_thread

    cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())

    async def inline(func: Callable[..., object], *args: object, **_kwargs: object) -> object:
        return func(*args)

    async def run() -> None:
        for _ in range(10):
            assert await asgi_get(app, "/account", cookie) == 200
        profiler.enable()
        for _ in range(count):
            await asgi_get(app, "/account", cookie)
        profiler.disable()

    profiler = cProfile.Profile()
    original, anyio.to_thread.run_sync = anyio.to_thread.run_sync, inline  # type: ignore[assignment]
    try:
        asyncio.run(run())
    finally:
        anyio.to_thread.run_sync = original  # type: ignore[assignment]
    print(f"\ncProfile of {count} x GET /account as QA, in one thread (cumulative ms per request, "
          "profiler overhead included):")
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][3])  # type: ignore[attr-defined]
    calls = sum(row[1][1] for row in rows)
    print(f"  Python function calls per request: {calls / count:.0f}")
    for (filename, line, name), (_cc, _nc, _tt, cumulative, _callers) in rows[:80]:
        print(f"  {cumulative / count * 1000:7.3f} ms  {Path(filename).name}:{line} {name}")


def hops_during(work: Callable[[], object]) -> int:
    """How many times the app handed work to the thread pool while `work` ran."""
    import anyio.to_thread

    count = 0
    original = anyio.to_thread.run_sync

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        return await original(*args, **kwargs)

    anyio.to_thread.run_sync = counted  # type: ignore[assignment]
    try:
        work()
    finally:
        anyio.to_thread.run_sync = original  # type: ignore[assignment]
    return count


# --- over real HTTP ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HttpClient:
    """One keep-alive connection with its own cookies, as one browser tab."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, url: str, body: str | None = None) -> tuple[int, str]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, url, body=body, headers=headers)
        response = self.conn.getresponse()
        text = response.read().decode()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key] = rest.split(";")[0]
        return response.status, text

    def get(self, url: str) -> int:
        return self.request("GET", url)[0]

    def sign_in(self, username: str) -> None:
        from urllib.parse import urlencode

        token = csrf_of(self.request("GET", "/login")[1])
        status, _ = self.request("POST", "/login", urlencode({"username": username, "password": demo.DEMO_PASSWORD,
                                                              "csrf_token": token}))
        assert status == 303, status


@contextlib.contextmanager
def served(tmp: Path, db_url: str) -> contextlib.AbstractContextManager[int]:  # type: ignore[misc]
    port = free_port()
    env = {**os.environ, "CELLBENCH_DATABASE_URL": db_url, "CELLBENCH_DATA_DIR": str(tmp),
           "CELLBENCH_DEMO": "1", "CELLBENCH_SECRET_KEY": SECRET, "PYTHONPATH": str(Path(__file__).parents[1])}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "cellbench.app:create_app",
                                "--port", str(port), "--log-level", "warning", "--no-access-log"], env=env)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per role and page (default 300)")
    parser.add_argument("--http", action="store_true", help="also over real HTTP against uvicorn")
    parser.add_argument("--profile", action="store_true", help="cProfile /account as QA")
    args = parser.parse_args(argv)
    count = max(args.requests, 20)

    with tempfile.TemporaryDirectory(prefix="cellbench-floor-") as folder, contextlib.ExitStack() as stack:
        tmp = Path(folder)
        db = Database(f"sqlite:///{tmp / 'bench.db'}")
        stack.callback(db.dispose)
        users.configure(12, 5, FAST_HASHER)
        migrate(db)
        build(db)
        settings = Settings(database_url=db.url, secret_key=SECRET, data_dir=tmp)
        app = create_app(settings, password_hasher=FAST_HASHER, database=db)
        print(f"cellbench page floor benchmark on SQLite, Python {platform.python_version()}, {os.cpu_count()} CPUs "
              f"(load average {os.getloadavg()[0]:.2f})")
        gets: dict[str, Get] = {}
        qa_client: TestClient | None = None
        for role in ROLES:
            # As a context manager the client keeps one event loop for all requests, as a server does.
            client = stack.enter_context(TestClient(app))
            sign_in(client, role)
            qa_client = client if role == "qa" else qa_client
            gets[role] = lambda url, client=client: client.get(url).status_code
        timed(gets, 10)  # warm-up: templates compiled, pools filled
        ok = report(f"TestClient, {count} requests each (in turns)", timed(gets, count))
        print("\nSQL statements per request (BEGIN not counted):")
        for role, get in gets.items():
            print(f"  {role:12s} " + "   ".join(f"{url} {statements_during(db, lambda url=url, get=get: get(url))}"
                                                 for url in URLS))
        print("\nThread-pool hops per request (anyio.to_thread.run_sync):")
        for role, get in gets.items():
            print(f"  {role:12s} " + "   ".join(f"{url} {hops_during(lambda url=url, get=get: get(url))}"
                                                 for url in URLS))
        if args.profile:
            profile(app, dict(qa_client.cookies), count)  # type: ignore[union-attr]
        if args.http:
            port = stack.enter_context(served(tmp, db.url))
            clients = {role: HttpClient(port) for role in ROLES}
            for role, client in clients.items():
                client.sign_in(role)
            http_gets: dict[str, Get] = {role: client.get for role, client in clients.items()}
            timed(http_gets, 10)
            report(f"HTTP, uvicorn (1 worker, keep-alive), {count} requests each (in turns); CPU: the client alone",
                   timed(http_gets, count))
        print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (wall-clock times on a machine others may be "
              "using)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
