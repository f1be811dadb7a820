"""Supply simulation benchmark: 1,000 trial runs of MESRIX-more (NCT07290946) with the defaults its
study file and the specifications give, as the simulation page runs them.

Run: python bench/simulate.py [--runs 1000] [--repeat 3] [--seed 15]

Target (issue 15): 1,000 trial runs in under 10 s on this machine (2 cores, shared). Each run is
timed whole: enrolment and visits drawn, the day-by-day supply loop, the figures gathered. The
figures of the first run are printed so a change to the model that moves them shows here too.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cellbench.simulation import defaults, simulate  # noqa: E402
from cellbench.simulation.figures import duration_text, rows  # noqa: E402
from cellbench.studies import load_study_file  # noqa: E402

TARGET_S = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    definition, _ = load_study_file(ROOT / "specs" / "studies" / "NCT07290946.toml")
    params = replace(defaults(definition), runs=args.runs, seed=args.seed)
    print(f"cellbench supply simulation bench: {params.study}, {args.runs} trial runs, seed {args.seed}, "
          f"Python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs "
          f"(load average {os.getloadavg()[0]:.2f})")
    times, first = [], None
    for _ in range(args.repeat):
        start = time.perf_counter()
        result = simulate(params)
        times.append(time.perf_counter() - start)
        first = first or result
    assert first is not None
    print(f"\n{'figure':44s} " + " ".join(f"{arm.code:>16s}" for arm in params.arms))
    for row in rows(first):
        print(f"{row.label:44s} " + " ".join(f"{value:>16s}" for value in row.values))
    print(f"trial length: {duration_text(first)}")
    best, median = min(times), statistics.median(times)
    met = "met" if median < TARGET_S else "MISSED"
    print(f"\n{args.runs} trial runs: first {times[0]:.2f} s, median {median:.2f} s, best {best:.2f} s"
          f"   target < {TARGET_S:.0f} s: {met}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (wall-clock times on a shared machine)")
    return 0 if met == "met" else 1


if __name__ == "__main__":
    raise SystemExit(main())
