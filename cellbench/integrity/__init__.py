"""`cellbench verify`: the audit chain, every signature both ways, and the records replayed from
their audit events; every problem named.

Parts: `chain` (each event's hash and link, in parallel ranges: it names the first break),
`signed` (every "signed" and "signature invalidated" event matched to its signature row and back),
`signatures.verify_all` (each signature's hashes and, while it stands, the content it signed),
`replay` (lot, kit, shipment, visit, deviation and kit quarantine states and key dates replayed
from their events and compared with the rows), `handover` (custody events against the kit moves
they go with). The last three read through `source`, in one snapshot, mostly SQL aggregates: their
cost follows the number of records and signatures, not of audit events.
"""
from __future__ import annotations

import importlib
import time
from collections.abc import Callable

from .. import signatures
from ..db import Database
from . import handover, replay, signed, source
from .chain import BROKEN_LINK, Problem, Report, _split, verify_chain

__all__ = ["BROKEN_LINK", "SIGNING_MODULES", "Problem", "Report", "_split", "verify", "verify_chain"]

# The modules that register what their signatures cover, by dotted path under cellbench.
SIGNING_MODULES = ("audit_review", "specifications.versions", "lots", "steps", "deviations", "donors", "qc",
                   "release", "sealed", "supply.quarantine", "custody", "unblinding", "accountability",
                   "accountability.destruction", "study_data",
                   "accountability.verification")


def verify(db: Database, workers: int | None = None) -> Report:
    """The whole check: the chain (the first break), then every signature against its content and
    its events, then every replayed record against its row (all mismatches)."""
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

    def the_rest() -> None:
        """Everything but the chain, run while the chain's worker processes hash."""
        with source.reading(db) as reader:
            timed("signed", lambda: (0, signed.check(reader)))
            timed("replay", lambda: replay.check(reader))
            timed("custody", lambda: handover.check(reader))
        with db.read() as session:
            timed("contents", lambda: signatures.verify_all(session, events_matched=True))

    report = verify_chain(db, workers, meanwhile=the_rest)
    report.timings.update(timings)
    report.replayed, report.custody, report.signatures = counts["replay"], counts["custody"], counts["contents"]
    report.problems += found["contents"] + found["signed"] + found["replay"] + found["custody"]
    report.timings["total"] = time.perf_counter() - started
    return report
