"""Backup-and-restore drill benchmark: how long the whole drill takes on a large chain.

    python bench/backup_drill.py [--events N]                                   # SQLite in a temp folder
    python bench/backup_drill.py --database-url postgresql://postgres@127.0.0.1/EMPTY_A \\
                                 --target-url postgresql://postgres@127.0.0.1/EMPTY_B

A migrated database gets N audit events (default 1,000,000; generated and bulk-inserted with the
same hashing as bench/audit.py, not through audit.record). Then `backups.backup` writes the backup and
its signed checkpoint, and `backups.restore` restores it into the empty target and proves it: the
file's SHA-256, both signatures, `verify` over the whole chain, the head against the checkpoint, the
rows of every table. Prints each phase's wall-clock time and the whole drill's beside the target.

Target (set here, issue 17 names none): the whole drill of a 1,000,000-event database within 60 s on
this machine, so that running it monthly costs nobody anything.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

from cellbench import backups, checkpoints
from cellbench.config import Settings, normalise_url
from cellbench.db import Database, migrate

HERE = Path(__file__).resolve().parent
TARGET_SECONDS = 60.0  # the whole drill (backup + restore + proof) of 1 M events


def _bench_audit():
    spec = importlib.util.spec_from_file_location("bench_audit", HERE / "audit.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="", help="an EMPTY database to fill (default: SQLite, temp folder)")
    parser.add_argument("--target-url", default="", help="an EMPTY database to restore into (PostgreSQL)")
    args = parser.parse_args(argv)
    if bool(args.database_url) != bool(args.target_url):
        print("give both --database-url and --target-url (two empty databases), or neither", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="cellbench-drill-") as tmp:
        folder = Path(tmp)
        source_url = normalise_url(args.database_url) if args.database_url else f"sqlite:///{folder / 'live.db'}"
        target_url = normalise_url(args.target_url) if args.target_url else f"sqlite:///{folder / 'restored.db'}"
        key = checkpoints.create(folder / "checkpoint.key")
        checkpoints.install(key)  # the bulk-filled chain's head is signed with it, as the server's writes are
        db = Database(source_url)
        engine = "SQLite" if db.is_sqlite else "PostgreSQL"
        print(f"cellbench backup drill on {engine}, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.2f}), "
              f"{args.events:,} events")
        try:
            migrate(db)
            _bench_audit().fill(db, args.events, engine)
            backup = folder / "cellbench.backup"
            t0 = time.perf_counter()
            written = backups.backup(db, backup, key)
            t1 = time.perf_counter()
        finally:
            db.dispose()
        size = written.manifest.size
        print(f"backup: {t1 - t0:.1f} s for {size / 1e6:.0f} MB ({size / 1e6 / (t1 - t0):.0f} MB/s), "
              f"head {written.contents.head_seq:,}, checkpoint {written.checkpoint_path.name}")
        settings = Settings(database_url=target_url, checkpoint_key=key.path, data_dir=folder)
        t2 = time.perf_counter()
        restored = backups.restore(settings, backup, None, None)
        t3 = time.perf_counter()
        for check in restored.checks:
            print(f"  {'OK' if check.ok else 'FAILED'}  {check.name}: {check.detail or '; '.join(check.problems)}")
        total = t3 - t0
        ok = restored.ok and total <= TARGET_SECONDS * max(1.0, args.events / 1_000_000)
        print(f"restore and proof: {t3 - t2:.1f} s")
        print(f"whole drill: {total:.1f} s (target: at most {TARGET_SECONDS:.0f} s per million events) "
              f"{'PASS' if ok else 'FAIL'}; load average at the end {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
