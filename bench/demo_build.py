"""Demo build benchmark: `cellbench demo` (what `cellbench serve --demo` runs first) into an empty
data folder, timed from the command's start to its exit, three times.

Run: python bench/demo_build.py [--repeat 3] [--statements]

Target (issue 18): at most 10 s on the 2-core reference machine, and the README states the figure.
Each build is a fresh process (imports, migrations, the demo's key, the whole story of both trials,
the notifications sent), as a newcomer's first `serve --demo` is. The CPU seconds beside the wall
clock are the build's own: on a shared machine the wall clock also counts other processes' turns.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 10.0


def build_once(folder: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `cellbench demo` into the empty `folder`."""
    env = {**os.environ, "CELLBENCH_DATA_DIR": str(folder), "PYTHONPATH": str(ROOT)}
    for name in ("CELLBENCH_DATABASE_URL", "CELLBENCH_DEMO"):  # the data folder's own SQLite file, as a newcomer's
        env.pop(name, None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cellbench.cli", "demo"], env=env, check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def count_statements(folder: Path) -> int:
    """The SQL statements one build sends (in this process): a figure the machine's load does not move."""
    os.environ["CELLBENCH_DATA_DIR"] = str(folder)
    for name in ("CELLBENCH_DATABASE_URL", "CELLBENCH_DEMO"):
        os.environ.pop(name, None)
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from cellbench.cli import server

    sent = [0]

    def count(*_: object) -> None:
        sent[0] += 1

    event.listen(Engine, "before_cursor_execute", count)
    with contextlib.redirect_stdout(io.StringIO()):
        server.demo()
    return sent[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--statements", action="store_true",
                        help="also count the SQL statements of one more build (34,407 before issue 18's changes)")
    args = parser.parse_args()
    print(f"cellbench demo build: {args.repeat} builds into empty data folders, {os.cpu_count()} CPUs")
    walls, cpus = [], []
    for n in range(1, args.repeat + 1):
        with tempfile.TemporaryDirectory(prefix="cellbench-demo-") as folder:
            wall, cpu = build_once(Path(folder) / "data")
        walls.append(wall)
        cpus.append(cpu)
        print(f"  build {n}: {wall:6.2f} s wall, {cpu:6.2f} s CPU")
    median = statistics.median(walls)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"median {median:.2f} s wall ({statistics.median(cpus):.2f} s CPU)   target <= {TARGET_S:.0f} s (issue 18): "
          f"{'met' if median <= TARGET_S else 'MISSED'}   load average {load} (1, 5, 15 min)")
    if args.statements:
        with tempfile.TemporaryDirectory(prefix="cellbench-demo-") as folder:
            print(f"SQL statements of one build: {count_statements(Path(folder) / 'data'):,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
