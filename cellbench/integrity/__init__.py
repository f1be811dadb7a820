"""`cellbench verify`: the audit chain, every signature both ways, and the records replayed from
their audit events; every problem named.

Parts: `chain` (each event's hash and link, in parallel ranges: it names the first break),
`signed` (every "signed" and "signature invalidated" event matched to its signature row and back),
`signatures.verify_all` (each signature's hashes and, while it stands, the content it signed),
`replay` (lot, kit, shipment, visit, deviation and kit quarantine states and key dates replayed
from their events and compared with the rows), `handover` (custody events against the kit moves
they go with). The last three read through `source`: one pass over the few kinds of event they
need, and the rows, in one snapshot.
"""
from __future__ import annotations

import importlib
import time

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
    report = verify_chain(db, workers)
    report.timings["chain"] = time.perf_counter() - started
    with source.reading(db) as reader:
        mark = time.perf_counter()
        events = reader.events()
        report.timings["events"] = time.perf_counter() - mark
        mark = time.perf_counter()
        signed_events, mismatched = signed.check(reader, events.signed, events.voided)
        report.timings["signed"] = time.perf_counter() - mark
        mark = time.perf_counter()
        report.replayed, replayed = replay.check(reader, events)
        report.custody, handed = handover.check(reader, events)
        report.timings["replay"] = time.perf_counter() - mark
    mark = time.perf_counter()
    with db.read() as session:
        report.signatures, contents = signatures.verify_all(session, signed_events)
    report.timings["contents"] = time.perf_counter() - mark
    report.problems.extend(contents + mismatched + replayed + handed)
    report.timings["total"] = time.perf_counter() - started
    return report
