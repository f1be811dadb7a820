"""Audit-trail benchmark: the cost of an audited write, and how fast `cellbench verify` checks the chain.

    python bench/audit.py [--events N] [--writes W] [--database-url URL] [--workers K (default 2)]

1. Writes. The same GMP-style change (rename a user: read the row through the ORM session, change
   one field, flush), W times, each in its own `db.write()` transaction (SQLite: BEGIN IMMEDIATE,
   synchronous=FULL commit; PostgreSQL: synchronous_commit as configured), once with its audit
   event (`audit.record`) and once without. The two kinds run interleaved in blocks, so the noise
   of a shared machine falls on both alike. Target: the audited write costs at most 2x the plain one.

2. Verify. The chain is filled up to N events (default one million). Going through `audit.record`
   would take many minutes, so the rows are generated with the same hashing code
   (`audit.event_hash` over `audit.HASHED_COLUMNS`, each linked to the previous hash) and
   bulk-inserted in one transaction, and the chain head is set. One event in seven is a kit's
   state change (kits issued, packaged, released, held, freed, held again, withdrawn: a kit row for
   each, in the state its events end at) and one in seven a signature signed or voided (a signature
   row for each, voided by the event after it, so its content is not re-read: there is no record
   behind it). `integrity.verify_chain()` (the chain alone, as before) and then `integrity.verify()`
   (the chain, the signatures matched both ways, the records replayed, custody counted, every
   signature's hashes) read and check every row for real. Target, for the whole verify with 2
   processes: at least 400,000 events/s (1 M in at most 2.5 s; issue 18); the single-process figure
   and the time of each part are printed beside it. Re-reading the content a standing signature covers is not
   in the figure (none stands here); the demo's cost per signature is printed beside it.

The default is a fresh SQLite database in a temporary folder. With --database-url, give an empty
database (e.g. `createdb -h 127.0.0.1 -U postgres cb_bench`): audit events cannot be deleted, so the
benchmark refuses a database that already holds any, and leaves N synthetic events behind. With
--keep FILE the SQLite database is built in FILE and kept; run again with the same FILE, it only
verifies (the build takes minutes).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from argon2 import PasswordHasher
from sqlalchemy import text

from cellbench import audit, checkpoints, integrity, kit_counts, signatures, users
from cellbench.checkpoints.store import install_key
from cellbench.config import normalise_url
from cellbench.db import Database, migrate
from cellbench.kits import STATE_LABELS
from cellbench.models import KitState, User, Visibility, utc_text

WRITE_TARGET = 2.0  # an audited write costs at most this many times the same write without its event
VERIFY_TARGET = 400_000  # events per second with 2 processes (1 M in at most 2.5 s; issue 18)
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
    # on the step, not the lot: the bench makes no lot rows, and lot events of lots with no row are
    # what verify looks at one by one (a deleted lot)
    ("material consumed", "lot_step", "material", None, "CryoStor CS10, supplier lot 2403117, expiry 2027-03-31",
     None),
    ("value corrected", "lot_step", "cell viability (%)", "92.1", "93.4",
     "Transcription error: the counter printout reads 93.4 %"),
    None,  # a signature signed, then voided (_signature)
    None,  # a kit's state change (_kit_move)
    ("kit assigned", "kit", "arm", None, "active", None),
)
_SIGNATURE, _KIT_MOVE = 4, 5
_PEOPLE = ((2, "Olivia Operator"), (3, "Oscar Operator"), (4, "Victor Verifier"), (5, "Quinn QC"))
# A kit's life in the synthetic chain: moves that carry no custody event, holds included.
_S = KitState
_LIFE = (("kit number issued", None, _S.planned), ("kit package", _S.planned, _S.packaged),
         ("kit release", _S.packaged, _S.released), ("kit quarantine", _S.released, _S.quarantined),
         ("kit lift quarantine", _S.quarantined, _S.released), ("kit quarantine", _S.released, _S.quarantined),
         ("kit withdraw", _S.quarantined, _S.withdrawn))
VOIDING_REASON = "Value corrected after signing: the step is signed again"


class Extras:
    """The rows the synthetic events speak of: kits in their last state, signatures as signed and voided."""

    def __init__(self, signer: tuple[int, str]) -> None:
        self.signer = signer
        self.kits: dict[str, KitState] = {}
        self.signatures: list[list] = []  # id, signer, name, at, meaning, type, entity, content, hashes, seq, voided
        self.open: list | None = None  # the signature signed and not yet voided
        self.moves = 0

    def kit_move(self) -> tuple[str, str, str, str, str | None, str, None]:
        n, self.moves = self.moves, self.moves + 1
        number = f"BK-{n // len(_LIFE):07d}"
        action, old, new = _LIFE[n % len(_LIFE)]
        self.kits[number] = new
        return (action, "kit", number, "state", STATE_LABELS[old] if old else None, STATE_LABELS[new], None)

    def signature(self, at: str, seq: int) -> tuple[str, str, str, str, str | None, str | None, str | None]:
        if self.open is None:
            sig_id = len(self.signatures) + 1
            content = "{}"
            content_hash = hashlib.sha256(content.encode()).hexdigest()
            fields = [sig_id, self.signer[0], self.signer[1], at, "performed", "step_entry", str(sig_id), content_hash]
            record_hash = signatures._hash_of_fields(*fields)
            self.open = [*fields[:7], content, content_hash, record_hash, seq, None, None]
            self.signatures.append(self.open)
            return ("signed", "step_entry", str(sig_id), "signature:performed", None, f"#{sig_id} {record_hash}", None)
        sig, self.open = self.open, None
        sig[11], sig[12] = at, VOIDING_REASON
        return ("signature invalidated", "step_entry", sig[6], "signature:performed", f"#{sig[0]}", None,
                VOIDING_REASON)


def _rows(first_seq: int, count: int, prev: str, start: datetime, extras: Extras | None = None):
    """Chained audit rows as tuples in `_COLUMNS` order, hashed with the application's own code; a
    signature left standing at the end is voided by one more event."""
    everyone, unblinded = Visibility.everyone.value, Visibility.unblinded.value
    extras = extras or Extras((1, "Olivia Operator"))
    second, prefix = None, ""
    seq = first_seq
    while seq < first_seq + count or extras.open is not None:
        user_id, name = _PEOPLE[seq % len(_PEOPLE)]
        # One event every 37 ms; the text is exactly what models.utc_text() writes.
        whole, milli = divmod(seq * 37, 1000)
        if whole != second:
            second, prefix = whole, (start + timedelta(seconds=whole)).strftime("%Y-%m-%dT%H:%M:%S.")
        at = f"{prefix}{milli:03d}000Z"
        kind = seq % len(_ACTIONS) if seq < first_seq + count else _SIGNATURE
        if kind == _SIGNATURE:
            action, etype, entity, field, old, new, reason = extras.signature(at, seq)
        elif kind == _KIT_MOVE:
            action, etype, entity, field, old, new, reason = extras.kit_move()
        else:
            action, etype, field, old, new, reason = _ACTIONS[kind]
            entity = (f"BK-{max(extras.moves - 1, 0) // len(_LIFE):07d}" if etype == "kit"  # the kit of the moment
                      else f"ASC-2026-{seq // 400:04d}/{seq % 40:02d}")
        content = [seq, at, user_id, name, action, etype, entity, field, old, new, reason,
                   unblinded if action == "kit assigned" else everyone]
        digest = audit.event_hash(prev, content)
        content += (prev, digest)
        prev = digest
        seq += 1
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
        signer = s.execute(text("SELECT id, full_name FROM app_user ORDER BY id")).first()
        if signer is None:  # a database with no users yet (the backup drill's): the signatures need a signer
            users.configure(12, 5, PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
            made = users.create_user(s, users.cli_actor(), "olivia.operator", "Olivia Operator",
                                     "correct horse battery", ["operator"])
            signer = (made.id, made.full_name)
        head = s.execute(text("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE" if not db.is_sqlite
                              else "SELECT seq, hash FROM audit_head WHERE id = 1")).one()
        added = max(0, events - head.seq)
        total = head.seq + added
        if added:
            start = datetime(2026, 1, 5, 7, 30, tzinfo=UTC)
            probe = next(_rows(12_345, 1, head.hash, start))
            assert probe[1] == utc_text(start + timedelta(milliseconds=37 * 12_345)), probe
            extras = Extras((signer[0], signer[1]))
            rows = _rows(head.seq + 1, added, head.hash, start, extras)
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
            # The head signed as audit.record signs it (unsigned with --unsigned: no key installed).
            key = checkpoints.installed()
            signature = key.sign(checkpoints.head_message(last[0], last[-1])) if key is not None else None
            s.execute(text("UPDATE audit_head SET seq = :seq, hash = :hash, signature = :signature WHERE id = 1"),
                      {"seq": last[0], "hash": last[-1], "signature": signature})
            total = last[0]
            _insert_records(s, extras)
    # A long-running database has had its WAL checkpointed / its tables vacuumed; so does this one.
    if db.is_sqlite:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("audit_event", "kit", "signature"):
                conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
    spent = time.perf_counter() - t0
    print(f"fill ({engine}): {_n(added)} events generated with audit.event_hash and bulk-inserted in one "
          f"transaction in {spent:.1f} s (not through audit.record; the verifier below re-reads and "
          f"re-hashes every one)")
    return total


def _insert_records(s, extras: Extras) -> None:
    """The rows the synthetic events speak of: a study for the kits, each kit in the state its events
    end at, each signature as signed and voided."""
    now = utc_text(datetime.now(UTC))
    study = {"code": "BENCH", "eu_ct_number": "2026-000000-00-00", "title": "Benchmark study", "short_title": "Bench",
             "sponsor_name": "-", "sponsor_address": "-", "sponsor_phone": "-", "emergency_contact": "-",
             "emergency_phone": "-", "emergency_email": "-", "treatments": 1, "interval_days": 0, "window_days": 0,
             "doses_per_treatment": 1, "label_languages": "en", "target_enrolment": 1,
             "quarantine_policy": "proportionate", "file_sha256": "0" * 64, "content": "{}", "loaded_at": now}
    s.execute(text(f"INSERT INTO study ({', '.join(study)}) VALUES ({', '.join(':' + k for k in study)})"), study)
    study_id = s.execute(text("SELECT id FROM study WHERE code = 'BENCH'")).scalar_one()
    held = KitState.quarantined
    kits = [{"number": number, "study": study_id, "state": state.value, "now": now,
             "before": KitState.released.value if state is held else None} for number, state in extras.kits.items()]
    for start in range(0, len(kits), 10_000):
        s.execute(text("INSERT INTO kit (number, study_id, state, state_before_quarantine, location, created_at, "
                       "row_version) VALUES (:number, :study, :state, :before, 'Cell bench', :now, 1)"),
                  kits[start:start + 10_000])
    kit_counts.refill(s)  # inserted behind the lifecycle's back: their running counts (which verify checks)
    names = ("id", "signer_id", "signer_name", "at", "meaning", "entity_type", "entity_id", "content", "content_hash",
             "record_hash", "audit_seq", "invalidated_at", "invalidated_reason")
    rows = [dict(zip(names, sig, strict=True)) for sig in extras.signatures]
    for start in range(0, len(rows), 10_000):
        s.execute(text(f"INSERT INTO signature ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"),
                  rows[start:start + 10_000])
    print(f"        with {_n(len(kits))} kits and {_n(len(rows))} signatures (signed and voided) they speak of")


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the verifier's workers): on a shared,
    noisy machine this says what the work cost when the wall-clock time says the cores were busy."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_verify(db: Database, events: int, engine: str, workers: int | None, runs: int = 3) -> bool:
    """The chain check alone (what verify was before it replayed anything), then the whole verify;
    the target is the whole verify's."""
    default_workers = workers or min(os.cpu_count() or 1, 4)
    processes = len(integrity._split(events, default_workers))  # the verifier runs small chains in one process
    many = f"{processes} worker{'s' if processes > 1 else ''}"
    ok = True
    plan = [("chain only", many, workers, runs), ("whole verify", many, workers, runs)]
    if processes > 1:
        plan.append(("whole verify", "1 worker", 1, 1))
    for what, label, k, repeat in plan:
        timings = []
        for _ in range(repeat):
            c0, t0 = _cpu(), time.perf_counter()
            report = integrity.verify_chain(db, k) if what == "chain only" else integrity.verify(db, k)
            timings.append((time.perf_counter() - t0, _cpu() - c0, report.timings))
            if not report.ok or report.events != events:
                print(f"verify {what} ({engine}, {label}): FAILED after {timings[-1][0]:.2f} s: {_n(report.events)} "
                      f"events of {_n(events)}, problems: {report.problems[:5]}")
                return False
        spent, used, parts = min(timings, key=lambda t: t[0])
        rate = events / spent
        head = f"verify {what:<12} ({engine}, {label}): {_n(events)} events in {spent:.2f} s = {_n(rate)} events/s"
        if what == "chain only":
            print(f"{head}   (the chain check alone, as verify was before the replay)   [CPU {used:.2f} s]")
        elif k == 1:
            print(f"{head}   (single process, for comparison)   [CPU {used:.2f} s]")
        else:
            passed = rate >= VERIFY_TARGET
            ok = ok and passed
            runs_text = ", ".join(f"{t:.2f}" for t, _, _ in timings)
            print(f"{head}   target ≥ {_n(VERIFY_TARGET)}/s with 2 processes (1 M in ≤ 2.5 s)   {_verdict(passed)}   "
                  f"[best of {repeat}: {runs_text} s; CPU {used:.2f} s]")
            print("    its parts: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in parts.items()
                                                if name != "total")
                  + f"; {_n(report.signatures)} signatures, {_n(report.replayed)} records replayed")
    return ok


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="audit events to verify (default 1,000,000)")
    parser.add_argument("--writes", type=int, default=2000, help="writes of each kind (default 2000)")
    parser.add_argument("--database-url", default="", help="an EMPTY database (default: SQLite in a temp folder)")
    parser.add_argument("--workers", type=int, default=2, help="verifier processes (default 2, as the target is "
                        "stated; 0: the verifier's default, one per core up to 4)")
    parser.add_argument("--keep", default="", metavar="FILE",
                        help="SQLite only: build the database in FILE (its checkpoint key beside it, FILE.key) and "
                        "keep it; when FILE already holds the chain, skip the writes and the fill and only verify "
                        "(the build takes minutes)")
    parser.add_argument("--unsigned", action="store_true", help="write without the checkpoint key (heads unsigned; "
                        "the server always signs): the signature's cost is the difference")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cellbench-bench-") as tmp:
        if args.keep and args.database_url:
            parser.error("--keep builds its own SQLite file: give it or --database-url, not both")
        kept = Path(args.keep).resolve() if args.keep else None
        url = (normalise_url(args.database_url) if args.database_url
               else f"sqlite:///{kept or Path(tmp) / 'bench.db'}")
        db = Database(url)
        engine = "SQLite" if db.is_sqlite else "PostgreSQL"
        try:
            migrate(db)
            with db.engine.connect() as conn:
                chain, people = conn.execute(text("SELECT (SELECT seq FROM audit_head WHERE id = 1), "
                                                  "(SELECT count(*) FROM app_user)")).one()
            reuse = kept is not None and chain >= args.events > 0
            if (chain or people) and not reuse:
                print("refusing: this database already has users or audit events; give an empty one "
                      "(audit events cannot be deleted).", file=sys.stderr)
                return 2
            # As the server does: every audited write signs the new chain head with the checkpoint key.
            key_path = Path(f"{kept}.key") if kept else Path(tmp) / "checkpoint.key"
            checkpoints.install(None if args.unsigned else install_key(key_path, create_missing=not reuse))
            print(f"chain heads {'NOT signed (--unsigned)' if args.unsigned else 'signed by the checkpoint key'}")
            print(f"cellbench audit benchmark on {engine}, {os.cpu_count()} CPUs (load average "
                  f"{os.getloadavg()[0]:.2f}), {_n(args.writes)} writes of each kind, "
                  f"{_n(args.events)} events to verify")
            if reuse:
                print(f"reusing {kept} ({_n(chain)} events, built before): the writes and the fill are skipped")
                ok = bench_verify(db, chain, engine, args.workers or None)
            else:
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
