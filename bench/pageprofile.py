"""One request of a slow page under cProfile, for bench/pages.py: its SQL statements and where the
time goes."""
from __future__ import annotations

import asyncio
import collections
import cProfile
import io
import pstats
import re
from typing import Any

import anyio.to_thread
from fastapi.testclient import TestClient
from sqlalchemy import event

from cellbench.db import Database

PROFILE_LINES = 14  # lines of each profile printed


def profile(db: Database, app, client: TestClient, row: Any) -> None:
    """One request of a slow route under cProfile: its SQL statements and where the time goes. The
    request runs in this thread (cProfile sees one thread): the app called as ASGI with the role's
    cookies, its thread-pool calls made inline."""
    statements: list[str] = []

    path, _, query = row.url.partition("?")
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode())], "client": ("127.0.0.1", 1),
             "server": ("testserver", 80), "state": {}}

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: dict) -> None:
        return None

    async def request() -> None:
        await app(scope, receive, send)

    async def inline(func, *args, **_options):
        return func(*args)

    def count(_conn, _cursor, statement, *_rest) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    profiler, threaded = cProfile.Profile(), anyio.to_thread.run_sync
    anyio.to_thread.run_sync = inline
    try:
        profiler.runcall(asyncio.run, request())
    finally:
        anyio.to_thread.run_sync = threaded
        event.remove(db.engine, "before_cursor_execute", count)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    total = stats.total_tt * 1000  # type: ignore[attr-defined]
    shown = r"cellbench|jinja2|sqlalchemy/engine/base|sqlite3|psycopg"
    stats.sort_stats("cumulative").print_stats(shown, PROFILE_LINES)
    top = "\n".join("    " + line.rstrip() for line in out.getvalue().splitlines()
                    if re.match(r"\s*\d", line))
    common = collections.Counter(" ".join(s.split())[:90] for s in statements).most_common(3)
    print(f"\nprofile: GET {row.url} as {row.role}: {total:.0f} ms under the profiler, {len(statements)} SQL "
          f"statements (most repeated: {'; '.join(f'{n}x {sql}' for sql, n in common)})\n"
          f"    ncalls tottime percall cumtime percall (cumulative, cellbench / jinja2 / SQL only)\n{top}")
