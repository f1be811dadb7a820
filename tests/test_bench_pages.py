"""bench/pages.py runs: at a tiny scale, on the demo's batch records, a handful of routes (no timed
assertion: the figures are the benchmark's business, not a test's)."""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from cellbench import checkpoints
from cellbench.checkpoints import store

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


def test_each_database_has_its_own_checkpoint_log_and_an_old_shared_one_is_split_on_reuse(
        demo_trial_world, checkpoint_key, tmp_path):
    """One key and its log serve one database: the tenth and the full database each get a folder
    of their own; a --keep folder of before, with one log for both, is split on reuse."""
    pagekeys, db = _bench("pagekeys"), demo_trial_world
    for _ in range(2):
        store.issue(db, "manual", checkpoint_key)  # kept in the database, logged beside the test's key
    ours = [line for _, line in store.logged(store.log_path(checkpoint_key))]
    assert len(ours) >= 2
    keep = tmp_path / "keep"
    shared = checkpoints.create(keep / checkpoints.KEY_FILE_NAME)
    other = checkpoints.make(shared, 1, "f" * 64)  # a line of the other database's chain
    foreign = json.dumps({**dataclasses.asdict(other), "why": "hourly"}, sort_keys=True)
    (keep / store.LOG_NAME).write_text("".join(f"{line}\n" for line in [ours[0], foreign, *ours[1:]]))
    try:
        key = pagekeys.install(keep, db, built=True)
        own = pagekeys.folder_of(keep, db.url)
        assert key.path == own / checkpoints.KEY_FILE_NAME
        assert key.path.read_bytes() == (keep / checkpoints.KEY_FILE_NAME).read_bytes()
        assert [line for _, line in store.logged(own / store.LOG_NAME)] == ours
        assert pagekeys.install(keep, db, built=True).path == key.path  # split once, then its own
        fresh = pagekeys.install(tmp_path / "new", db, built=False)  # a new build: a key of its own
        assert fresh.path.parent == pagekeys.folder_of(tmp_path / "new", db.url)
    finally:
        checkpoints.install(checkpoint_key)


@pytest.mark.skipif(bool(PG_URL), reason="a smoke test of a benchmark: SQLite's is enough, PostgreSQL's takes minutes")
def test_the_growth_benchmark_times_each_route_at_both_sizes_in_turn(demo_world, tmp_path):
    """bench/pagegrowth.py, with the demo as both sizes: each (route, role) asked for is found by the
    walk and timed on both sides (no timed assertion)."""
    growth = _bench("pagegrowth")
    previous_key = checkpoints.installed()
    args = argparse.Namespace(routes=r"^/(account|lots|lots/\{number\})$", roles="qa,qp", walk=10)
    side = growth.open_side(demo_world.url, tmp_path, args)
    try:
        rows = growth.compare(side, side, 2)
        # each side's requests are signed with its own database's key (one key per process)
        other = dataclasses.replace(side, key=checkpoints.create(tmp_path / "other" / checkpoints.KEY_FILE_NAME))
        for turn in (other, side, other):
            growth._once(turn, "qa", "/account")
            assert checkpoints.installed() is turn.key
    finally:
        for client in side.clients.values():
            client.__exit__(None, None, None)
        checkpoints.install(previous_key)
    assert {(route, role) for route, role, _, _ in rows} == {
        (route, role) for route in ("/account", "/lots", "/lots/{number}") for role in ("qa", "qp")}
    assert all(small > 0 and large > 0 for _, _, small, large in rows)
