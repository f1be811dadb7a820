"""The audit trail as a CSV download, streamed: the events read in batches through one read
transaction (a server-side cursor on PostgreSQL, `yield_per`), each batch written out as it is read,
so that the first bytes leave at once and memory stays one batch whatever the trail's length (two
million events at ten years). The rows and columns are audit.to_csv's, the blind's rules with them:
a blinded viewer's export has no sequence numbers or hashes and only the events it may see."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from . import audit
from .audit import Actor, TrailFilter
from .db import Database
from .spreadsheet import cell

BATCH = 2000  # events a chunk: a few hundred kilobytes of CSV


def _lines(rows: list[tuple[object, ...]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows([cell(value) for value in row] for row in rows)
    return out.getvalue().encode()


def csv_chunks(db: Database, viewer: Actor, flt: TrailFilter, batch: int = BATCH) -> Iterator[bytes]:
    """The viewer's filtered trail, oldest first, as CSV in chunks: the header, then a chunk a batch.
    The read transaction is this generator's own (it outlives the route that returns it) and ends
    when the last chunk is sent or the client goes away."""
    with db.read() as session:
        yield _lines([audit.csv_header(viewer)])
        events = session.scalars(audit.trail_query(viewer, flt).execution_options(yield_per=batch))
        for part in events.partitions():
            # written, a batch's rows are dropped: the session's identity map holds them weakly
            yield _lines([audit.csv_row(e, viewer) for e in part])
