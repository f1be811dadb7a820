"""Adversarial blinding benchmark: the simulated trial of tests/adversary run once, then every
predictor's arm guesses scored against the sealed truth, printed beside the target.

    PYTHONPATH=. python bench/adversary.py                       # SQLite in a temp folder, product's selection
    PYTHONPATH=. python bench/adversary.py --selection ordered   # the old rule: assignment order must leak
    PYTHONPATH=. python bench/adversary.py --selection random    # a uniform draw patched in: all must hold
    PYTHONPATH=. python bench/adversary.py --database-url postgresql://postgres@127.0.0.1/EMPTY_DB

Target (issue 12): every channel's accuracy consistent with chance, an exact two-sided binomial
test at p > 0.01 over at least 200 guesses; the whole trial in under 60 s on SQLite.
"""
from __future__ import annotations

import argparse
import contextlib
import pickle
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cellbench import sealed, users  # noqa: E402
from cellbench.config import normalise_url  # noqa: E402
from cellbench.db import Database, migrate  # noqa: E402
from tests.adversary import predictors  # noqa: E402
from tests.adversary.simulation import Trial  # noqa: E402
from tests.adversary.test_adversary import ordered_assignment  # noqa: E402
from tests.adversary.world import Plan, trial_app  # noqa: E402
from tests.blinding_support import populate  # noqa: E402
from tests.conftest import FAST_HASHER  # noqa: E402

TARGET_SECONDS = 60


@contextlib.contextmanager
def uniform_assignment(seed: int) -> Iterator[None]:
    """What issue 12 asks of sealed.assign_kit, patched around today's door: every kit the door
    would give is collected (excluding those seen), then one is drawn uniformly."""
    original, rng = sealed.assign_kit, random.Random(seed)

    def draw(session, actor, study, number, site_id, **options):
        excluded, offered = list(options.pop("exclude", ())), []
        while (kit := original(session, actor, study, number, site_id, exclude=excluded, **options)) is not None:
            offered.append(kit)
            excluded.append(kit.id)
        return rng.choice(offered) if offered else None

    sealed.assign_kit = draw
    try:
        yield
    finally:
        sealed.assign_kit = original


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="", help="an empty database (default: SQLite in a temp folder)")
    parser.add_argument("--selection", choices=("product", "ordered", "random"), default="product")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the trial's participants")
    parser.add_argument("--seed", type=int, default=Plan().seed)
    parser.add_argument("--keep", help="pickle what was seen and the truth to this file, to score again with --load")
    parser.add_argument("--load", help="score a kept trial instead of running one")
    args = parser.parse_args()
    if args.load:
        seen, truth = pickle.loads(Path(args.load).read_bytes())
        return report(seen, truth)
    users.configure(12, 5, FAST_HASHER)
    with tempfile.TemporaryDirectory() as folder:
        url = normalise_url(args.database_url) if args.database_url else f"sqlite:///{folder}/adversary.db"
        db = Database(url)
        migrate(db)
        populate(db)
        plan = Plan(seed=args.seed) if args.scale == 1.0 else Plan(seed=args.seed).scaled(args.scale)
        patch = {"ordered": ordered_assignment, "random": lambda: uniform_assignment(args.seed)}.get(
            args.selection, contextlib.nullcontext)
        started = time.perf_counter()
        with patch():
            trial = Trial(db, trial_app(db), plan)
            seen, truth = trial.run()
        seconds = time.perf_counter() - started
        db.dispose()
    assigned = sum(1 for a in seen.attempts if a.kit)
    print(f"adversarial blinding test, kit selection: {args.selection}, database: {url.split(':')[0]}")
    print(f"trial: {len(truth.participant_arm)} participants, {len(truth.kit_arm)} kits, {assigned} assignments, "
          f"{len(seen.attempts) - assigned} refusals ({trial.one_arm_refusals} with usable kits at the site), "
          f"{seen.requests()} requests by blinded roles, {seconds:.1f} s (target < {TARGET_SECONDS} s)")
    if args.keep:
        Path(args.keep).write_bytes(pickle.dumps((seen, truth)))
    return report(seen, truth)


def report(seen, truth) -> int:
    results = predictors.run_all(seen, truth)
    for result in results:
        print("  " + result.line())
    return 0 if all(r.holds for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
