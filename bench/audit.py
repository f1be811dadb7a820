"""Audit-trail benchmark: the cost of an audited write, and how fast `cellbench verify` checks the chain.

    python bench/audit.py [--events N] [--writes W] [--database-url URL] [--workers K]

1. Writes. The same GMP-style change (rename a user: read the row through the ORM session, change
   one field, flush), W times, each in its own `db.write()` transaction (SQLite: BEGIN IMMEDIATE,
   synchronous=FULL commit; PostgreSQL: synchronous_commit as configured), once with its audit
   event (`audit.record`) and once without. The two kinds run interleaved in blocks, so the noise
   of a shared machine falls on both alike. Target: the audited write costs at most 2x the plain one.

2. Verify. The chain is filled up to N events (default one million). Going through `audit.record`
   would take many minutes, so the rows are generated with the same hashing code
   (`audit.event_hash` over `audit.HASHED_COLUMNS`, each linked to the previous hash) and
   bulk-inserted in one transaction, and the chain head is set. `integrity.verify_chain()` then
   reads and re-hashes every row for real. Target: at least 250,000 events/s (1 M in at most 4 s).

The default is a fresh SQLite database in a temporary folder. With --database-url, give an empty
database (e.g. `createdb -h 127.0.0.1 -U postgres cb_bench`): audit events cannot be deleted, so the
benchmark refuses a database that already holds any, and leaves N synthetic events behind.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from argon2 import PasswordHasher
from sqlalchemy import text

from cellbench import audit, checkpoints, integrity, users
from cellbench.config import normalise_url
from cellbench.db import Database, migrate
from cellbench.models import User, Visibility, utc_text

WRITE_TARGET = 2.0  # an audited write costs at most this many times the same write without its event
VERIFY_TARGET = 250_000  # events per second (1 M in at most 4 s)
BLOCK = 100  # writes per block; plain and audited blocks alternate


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# --- 1. writes ------------------------------------------------------------------------------


def rename(session, by: audit.Actor, user_id: int, new_name: str, *, audited: bool) -> None:
    """A service-function-shaped change of one field; the only difference is the audit call."""
    user = session.get(User, user_id)
    old = user.full_name
    user.full_name = new_name
    if audited:
        audit.record(session, by, "printed name changed", "user", user.username, field="full_name",
                     old=old, new=new_name, reason="Name corrected to match the training record")
    session.flush()


def bench_writes(db: Database, writes: int, engine: str) -> bool:
    by = users.cli_actor()
    # Cheap argon2 costs: the password hash is not what is measured here.
    users.configure(12, 5, PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    with db.write() as s:
        user = users.create_user(s, by, "olivia.operator", "Olivia Operator", "correct horse battery",
                                 ["operator"])
        user_id = user.id

    def block(audited: bool, start: int, count: int) -> float:
        t0 = time.perf_counter()
        for i in range(start, start + count):
            with db.write() as s:
                rename(s, by, user_id, f"Olivia Operator ({'a' if audited else 'p'}{i})", audited=audited)
        return time.perf_counter() - t0

    block(False, -BLOCK, BLOCK // 2)  # warm up connections, statement caches, the page cache
    block(True, -BLOCK, BLOCK // 2)
    spent = {False: 0.0, True: 0.0}
    done = 0
    while done < writes:
        count = min(BLOCK, writes - done)
        order = (False, True) if (done // BLOCK) % 2 == 0 else (True, False)
        for audited in order:
            spent[audited] += block(audited, done, count)
        done += count
    plain, audited = writes / spent[False], writes / spent[True]
    ratio = spent[True] / spent[False]
    print(f"write without audit ({engine}): {_n(writes)} writes in {spent[False]:.2f} s = {_n(plain)} writes/s")
    print(f"write with audit    ({engine}): {_n(writes)} writes in {spent[True]:.2f} s = {_n(audited)} writes/s")
    ok = ratio <= WRITE_TARGET
    print(f"audited write cost  ({engine}): {ratio:.2f}× the plain write   "
          f"target ≤ {WRITE_TARGET:.1f}×   {_verdict(ok)}")
    return ok


# --- 2. verify ------------------------------------------------------------------------------

_ACTIONS = (
    # (action, entity_type, field, old, new, reason) — shaped like batch-record entries
    ("value recorded", "lot_step", "viable cell count (x10^6 cells/mL)", None, "1.84", None),
    ("value recorded", "lot_step", "incubator temperature (°C)", None, "37.0", None),
    ("material consumed", "lot", "material", None, "CryoStor CS10, supplier lot 2403117, expiry 2027-03-31", None),
    ("value corrected", "lot_step", "cell viability (%)", "92.1", "93.4",
     "Transcription error: the counter printout reads 93.4 %"),
    ("step verified", "lot_step", "verified_by", None, "Victor Verifier", None),
    ("kit scanned", "kit", "state", "in_transit", "received", None),
    ("kit assigned", "kit", "arm", None, "active", None),
)
_PEOPLE = ((2, "Olivia Operator"), (3, "Oscar Operator"), (4, "Victor Verifier"), (5, "Quinn QC"))


def _rows(first_seq: int, count: int, prev: str, start: datetime):
    """Chained audit rows as tuples in `_COLUMNS` order, hashed with the application's own code."""
    everyone, unblinded = Visibility.everyone.value, Visibility.unblinded.value
    second, prefix = None, ""
    for seq in range(first_seq, first_seq + count):
        action, etype, field, old, new, reason = _ACTIONS[seq % len(_ACTIONS)]
        user_id, name = _PEOPLE[seq % len(_PEOPLE)]
        # One event every 37 ms; the text is exactly what models.utc_text() writes.
        whole, milli = divmod(seq * 37, 1000)
        if whole != second:
            second, prefix = whole, (start + timedelta(seconds=whole)).strftime("%Y-%m-%dT%H:%M:%S.")
        content = [
            seq, f"{prefix}{milli:03d}000Z", user_id, name, action, etype,
            f"K{seq * 7919 % 999983:06d}X" if etype == "kit" else f"ASC-2026-{seq // 400:04d}/{seq % 40:02d}",
            field, old, new, reason, unblinded if action == "kit assigned" else everyone,
        ]
        digest = audit.event_hash(prev, content)
        content += (prev, digest)
        prev = digest
        yield tuple(content)


_COLUMNS = (*audit.HASHED_COLUMNS, "prev_hash", "hash")
# `_rows` builds the content in this order; if the hashed columns ever change, so must it.
assert audit.HASHED_COLUMNS == ("seq", "at", "user_id", "user_name", "action", "entity_type", "entity_id",
                                "field", "old_value", "new_value", "reason", "visibility")


def fill(db: Database, events: int, engine: str) -> int:
    """Bring the chain to `events` rows in one transaction; returns the chain's length after."""
    t0 = time.perf_counter()
    added = 0
    with db.write() as s:
        head = s.execute(text("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE" if not db.is_sqlite
                              else "SELECT seq, hash FROM audit_head WHERE id = 1")).one()
        added = max(0, events - head.seq)
        total = head.seq + added
        if added:
            start = datetime(2026, 1, 5, 7, 30, tzinfo=UTC)
            probe = next(_rows(12_345, 1, head.hash, start))
            assert probe[1] == utc_text(start + timedelta(milliseconds=37 * 12_345)), probe
            rows = _rows(head.seq + 1, added, head.hash, start)
            raw = s.connection().connection.driver_connection
            last = None
            if db.is_sqlite:
                cur = raw.cursor()
                sql = (f"INSERT INTO audit_event ({', '.join(_COLUMNS)}) "
                       f"VALUES ({', '.join('?' for _ in _COLUMNS)})")
                cur.execute("PRAGMA cache_size=-262144")  # 256 MiB: the entity index takes random inserts
                chunk: list[tuple] = []
                for last in rows:
                    chunk.append(last)
                    if len(chunk) == 50_000:
                        cur.executemany(sql, chunk)
                        chunk.clear()
                if chunk:
                    cur.executemany(sql, chunk)
                cur.execute("PRAGMA cache_size=-2000")  # back to the default
                cur.close()
            else:
                with raw.cursor() as cur, cur.copy(f"COPY audit_event ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
                    for last in rows:
                        copy.write_row(last)
            s.execute(text("UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1"),
                      {"seq": last[0], "hash": last[-1]})
    # A long-running database has had its WAL checkpointed / its tables vacuumed; so does this one.
    if db.is_sqlite:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE audit_event")
    spent = time.perf_counter() - t0
    print(f"fill ({engine}): {_n(added)} events generated with audit.event_hash and bulk-inserted in one "
          f"transaction in {spent:.1f} s (not through audit.record; the verifier below re-reads and "
          f"re-hashes every one)")
    return total


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the verifier's workers): on a shared,
    noisy machine this says what the work cost when the wall-clock time says the cores were busy."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_verify(db: Database, events: int, engine: str, workers: int | None, runs: int = 3) -> bool:
    default_workers = workers or min(os.cpu_count() or 1, 4)
    processes = len(integrity._split(events, default_workers))  # the verifier runs small chains in one process
    ok = True
    plan = [(f"{processes} worker{'s' if processes > 1 else ''}", workers, runs)]
    if processes > 1:
        plan.append(("1 worker", 1, 1))
    for label, k, repeat in plan:
        timings = []
        for _ in range(repeat):
            c0, t0 = _cpu(), time.perf_counter()
            report = integrity.verify_chain(db, k)
            timings.append((time.perf_counter() - t0, _cpu() - c0))
            if not report.ok or report.events != events:
                print(f"verify ({engine}, {label}): FAILED after {timings[-1][0]:.2f} s: {_n(report.events)} "
                      f"events of {_n(events)}, problems: {report.problems}")
                return False
        spent, used = min(timings)
        rate = events / spent
        if k == 1:
            print(f"verify ({engine}, {label}): {_n(events)} events in {spent:.2f} s = {_n(rate)} events/s   "
                  f"(single process, for comparison)   [CPU {used:.2f} s]")
        else:
            passed = rate >= VERIFY_TARGET
            ok = ok and passed
            runs_text = ", ".join(f"{t:.2f}" for t, _ in timings)
            print(f"verify ({engine}, {label}): {_n(events)} events in {spent:.2f} s = {_n(rate)} events/s   "
                  f"target ≥ {_n(VERIFY_TARGET)}/s (1 M in ≤ 4 s)   {_verdict(passed)}   "
                  f"[best of {repeat}: {runs_text} s; CPU {used:.2f} s]")
    return ok


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="audit events to verify (default 1,000,000)")
    parser.add_argument("--writes", type=int, default=2000, help="writes of each kind (default 2000)")
    parser.add_argument("--database-url", default="", help="an EMPTY database (default: SQLite in a temp folder)")
    parser.add_argument("--workers", type=int, default=0, help="verifier processes (0: the verifier's default)")
    parser.add_argument("--unsigned", action="store_true", help="write without the checkpoint key (heads unsigned; "
                        "the server always signs): the signature's cost is the difference")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cellbench-bench-") as tmp:
        url = normalise_url(args.database_url) if args.database_url else f"sqlite:///{Path(tmp) / 'bench.db'}"
        db = Database(url)
        engine = "SQLite" if db.is_sqlite else "PostgreSQL"
        try:
            migrate(db)
            with db.engine.connect() as conn:
                used = conn.execute(text("SELECT (SELECT seq FROM audit_head WHERE id = 1) + "
                                         "(SELECT count(*) FROM app_user)")).scalar()
            if used:
                print("refusing: this database already has users or audit events; give an empty one "
                      "(audit events cannot be deleted).", file=sys.stderr)
                return 2
            # As the server does: every audited write signs the new chain head with the checkpoint key.
            checkpoints.install(None if args.unsigned else checkpoints.create(Path(tmp) / "checkpoint.key"))
            print(f"chain heads {'NOT signed (--unsigned)' if args.unsigned else 'signed by the checkpoint key'}")
            print(f"cellbench audit benchmark on {engine}, {os.cpu_count()} CPUs (load average "
                  f"{os.getloadavg()[0]:.2f}), {_n(args.writes)} writes of each kind, "
                  f"{_n(args.events)} events to verify")
            ok = bench_writes(db, args.writes, engine)
            if args.events:
                total = fill(db, args.events, engine)
                ok = bench_verify(db, total, engine, args.workers or None) and ok
            print(f"load average at the end: {os.getloadavg()[0]:.2f} (the figures above are wall-clock times on "
                  f"a machine others may be using)")
        finally:
            db.dispose()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
