"""bench/pages.py runs: at a tiny scale, on the demo's batch records, a handful of routes (no timed
assertion: the figures are the benchmark's business, not a test's)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from .conftest import PG_URL

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _bench(name: str):
    sys.path.insert(0, str(BENCH))  # bench/pages.py imports bench/tenyears.py by name
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


# The bench's SQL is the app's and the builder's copies are plain INSERT ... SELECT; on PostgreSQL the
# same test takes minutes (a demo seed and the copies), for a smoke test of a benchmark run by hand.
@pytest.mark.skipif(bool(PG_URL), reason="a smoke test of a benchmark: SQLite's is enough, PostgreSQL's takes minutes")
def test_the_pages_benchmark_grows_the_demo_and_prints_a_line_per_route_and_role(demo_world, capsys):
    tenyears, pages = _bench("tenyears"), _bench("pages")
    lots = tenyears.count(demo_world)["lot"]
    world = tenyears.grow(demo_world, 0.1, events=5_000)  # a tenth's lot copies; few events, to stay quick
    assert world.lot_copies == 4 and world.counts["lot"] == 4 * lots
    assert world.counts["audit_event"] == 5_000

    status = pages.main(["--database-url", demo_world.url, "--reuse", "--no-tenth", "--exit-zero", "--requests", "2",
                         "--walk", "10", "--routes", r"^/(account|lots|lots/\{number\}|api/v1/lots/\{number\})$",
                         "--roles", "qa,qp"])

    out = capsys.readouterr().out
    assert status == 0, out
    for route in ("/account", "/lots", "/lots/{number}", "/api/v1/lots/{number}"):
        for role in ("qa", "qp"):
            assert any(line.startswith(route + " ") and f" {role} " in line for line in out.splitlines()), (route, role)
    assert "summary (" in out and "load average at start" in out
