"""`cellbench verify`: the audit chain, every signature both ways, and the records replayed from
their audit events; every problem named.

Parts: `chain` (each event's hash and link, in parallel ranges: it names the first break; `proof`
proves a sound range quickly with the database writing each event's canonical JSON, and hands any
doubt to the reference check, and `gathered` collects the signature events as the ranges are read),
`signed` (every "signed" and "signature invalidated" event matched to its signature row and back),
`signatures.verify_all` (each signature's hashes and, while it stands, the content it signed; the
signature rows are read once, in the snapshot, for both),
`kit_counts.recount` (the running kit counts that accountability reads, against the kit rows),
`pharmacy.counts.recount` (the visit counts of the pharmacy's work lines, against the visit rows),
`replay` (lot, kit, shipment, visit, deviation and kit quarantine states and key dates replayed
from their events and compared with the rows), `handover` (custody events against the kit moves
they go with). The last three read through `source`, in one snapshot, mostly SQL aggregates: their
cost follows the number of records and signatures, not of audit events. That snapshot also gives
the chain's end: the ranges stop there, so the events gathered are the ones that snapshot holds.
"""
from __future__ import annotations

import importlib
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from .. import kit_counts, signatures
from ..audit import GENESIS_HASH
from ..checkpoints import verification
from ..db import Database
from ..pharmacy import counts as visit_counts
from . import handover, replay, signed, source
from .chain import BROKEN_LINK, Problem, Report, _check_range, _Range
from .gathered import Gathered

__all__ = ["BROKEN_LINK", "SIGNING_MODULES", "Problem", "Report", "_split", "verify", "verify_chain"]

# The modules that register what their signatures cover, by dotted path under cellbench.
SIGNING_MODULES = ("audit_review", "specifications.versions", "lots", "steps", "deviations", "donors", "qc",
                   "release", "sealed", "supply.quarantine", "custody", "unblinding", "accountability",
                   "accountability.destruction", "study_data",
                   "accountability.verification")


_PARALLEL_FROM = 200_000  # below this, starting processes costs more than it saves


# One statement, one snapshot: under READ COMMITTED two statements could see different chains.
_HEAD_SQL = ("SELECT h.seq, h.hash, (SELECT min(seq) FROM audit_event), (SELECT max(seq) FROM audit_event) "
             "FROM audit_head h WHERE h.id = 1")


def verify_chain(db: Database, workers: int | None = None, meanwhile: Callable[[], None] | None = None) -> Report:
    """The chain, in parallel ranges. `meanwhile` runs in this process while the worker processes
    hash: this process only waits for them otherwise. It runs in any case, once, even when the
    chain cannot be checked."""
    with db.engine.connect() as conn:
        head = conn.exec_driver_sql(_HEAD_SQL).first()
    return _chain(db, head, workers, meanwhile, gather=False)[0]


def _chain(db: Database, head: Sequence[Any] | None, workers: int | None, meanwhile: Callable[[], None] | None,
           gather: bool) -> tuple[Report, Gathered | None]:
    """The chain up to `head` (the chain head, the first and the last event, as read in one
    snapshot); with `gather`, every range's signature events too (None when no range was read)."""
    ran = False

    def once() -> None:
        nonlocal ran
        if meanwhile is not None and not ran:
            ran = True
            meanwhile()

    report = Report()
    results = _ranges(db, head, workers, once, gather, report)
    once()
    if results is None:
        return report, None
    events = Gathered()
    for part in results:
        if part.events is not None:
            events.add(part.events)
    _stitch(results, report)
    return report, events if gather else None


def _ranges(db: Database, head: Sequence[Any] | None, workers: int | None, meanwhile: Callable[[], None],
            gather: bool, report: Report) -> list[_Range] | None:
    """Each range checked (in worker processes while `meanwhile` runs here); None, with the problem
    in the report, when the chain is not there to be read."""
    if head is None:
        report.problems.append("the audit chain head is missing: the database was not initialised by cellbench")
        return None
    report.head_seq, report.head_hash = head[0], head[1]
    lo: int | None = head[2]
    hi: int | None = head[3]
    if lo is None or hi is None:
        if report.head_seq != 0:
            report.problems.append(f"audit events 1 to {report.head_seq} are missing: the table was emptied")
        return None
    if lo != 1:
        report.problems.append(str(Problem(1, f"is missing (the chain starts at {lo}): rows were deleted")))
        return None

    ranges = _split(hi, workers or min(os.cpu_count() or 1, 4))
    url = db.engine.url.render_as_string(hide_password=False)
    if len(ranges) == 1:
        return [_check_range(url, *ranges[0], gather)]
    ctx = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    with ProcessPoolExecutor(len(ranges), mp_context=ctx) as pool:
        pending = [pool.submit(_check_range, url, lo, hi, gather) for lo, hi in ranges]
        meanwhile()
        return [future.result() for future in pending]


def _stitch(results: list[_Range], report: Report) -> None:
    """The ranges joined at their borders, and the chain's end against the recorded head."""
    hi = results[-1].hi
    expected_prev: str | None = GENESIS_HASH
    for part in results:
        report.events += part.count
        if part.first_prev is not None and part.first_prev != expected_prev:
            part.problem = Problem(part.lo, BROKEN_LINK)
        if part.problem:
            report.problems.append(str(part.problem))
            return
        expected_prev = part.last_hash
    if (hi, expected_prev) != (report.head_seq, report.head_hash):
        if hi > report.head_seq:
            report.problems.append(str(Problem(report.head_seq + 1,
                                               "was added outside cellbench: it lies beyond the recorded chain head")))
        elif hi < report.head_seq:
            missing = f"is missing: the chain head records events up to {report.head_seq}"
            report.problems.append(str(Problem(hi + 1, missing)))
        else:
            report.problems.append(str(Problem(hi, "does not match the recorded chain head")))


def _split(hi: int, workers: int) -> list[tuple[int, int]]:
    if hi < _PARALLEL_FROM or workers < 2:
        return [(1, hi)]
    size = -(-hi // workers)
    return [(lo, min(lo + size - 1, hi)) for lo in range(1, hi + 1, size)]


def verify(db: Database, workers: int | None = None, **checkpoints: Any) -> Report:
    """The whole check: the chain (the first break), then every signature against its content and
    its events, then every replayed record against its row (all mismatches), then the signed head and
    every checkpoint (checkpoints.verification: `given=`, `public_key=`, `logs=`)."""
    # The modules that register what their signatures cover; the command line imports none of them.
    for name in SIGNING_MODULES:
        importlib.import_module(f"cellbench.{name}")
    started = time.perf_counter()
    found: dict[str, list[str]] = {}
    timings: dict[str, float] = {}
    counts: dict[str, int] = {}

    def timed(name: str, check: Callable[[], tuple[int, list[str]]]) -> None:
        mark = time.perf_counter()
        counts[name], found[name] = check()
        timings[name] = time.perf_counter() - mark

    with source.reading(db) as reader:
        # The chain's end read in the snapshot every other check reads: the events up to it are
        # the ones the signature rows and the records are checked against (events are only appended).
        heads = reader.rows(_HEAD_SQL)
        head = heads[0] if heads else None
        prepared: list[signed.Prepared] = []

        def the_rest() -> None:
            """Everything that needs no audit event the chain check gathers, run while it hashes."""
            sigs: list[tuple[Any, ...]] = []

            def prepare() -> tuple[int, list[str]]:
                sigs.extend(reader.rows(signed.SIGNATURES_SQL))  # read once for `signed` and `contents`
                prepared.append(signed.prepare(sigs))
                return 0, []

            timed("signed", prepare)
            with db.read() as session:
                # The rows as read in the snapshot; a standing signature's content is read in the session.
                timed("contents", lambda: signatures.verify_all(session, events_matched=True, rows=sigs))
                # Accountability reads running counts: a count edited behind cellbench's back is named here.
                timed("counts", lambda: (0, kit_counts.recount(session) + visit_counts.recount(session)))
            timed("replay", lambda: replay.check(reader))
            timed("custody", lambda: handover.check(reader))

        report, events = _chain(db, head, workers, the_rest, gather=True)
        reading = timings["signed"]
        timed("signed", lambda: (0, signed.check(reader, prepared[0], events)))
        timings["signed"] += reading
    report.timings.update(timings)
    report.replayed, report.custody, report.signatures = counts["replay"], counts["custody"], counts["contents"]
    report.problems += found["contents"] + found["signed"] + found["replay"] + found["custody"] + found["counts"]
    mark = time.perf_counter()
    report.problems += verification.problems(db, report.head_seq, report.head_hash, **checkpoints)
    report.timings["checkpoints"] = time.perf_counter() - mark
    report.timings["total"] = time.perf_counter() - started
    return report
