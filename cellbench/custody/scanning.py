"""The scan path: a label (or a kit number marked as typed by hand) in, a verdict out, the sighting on record.

The monitor reads and never writes: its scan is a lookup, the same verdict with no sighting
recorded (a monitor checking site stock against accountability scans labels to avoid typing
errors; refusing the scan would only push it back to typed numbers, a sighting would be a
custody record made by someone who handles no kit).

This is the pharmacy's hot path (bench/scan.py: ≥ 600 scans/s, p99 < 40 ms on one SQLite
worker), so it is written lean: prebuilt Core statements, one row read, one custody insert and
one audit event, no ORM objects. The verdict depends only on what a blinded person may know
(state, blinded lot, blinded expiry, location), so it reads the same for both arms.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, any_, bindparam, select, text
from sqlmodel import Session, col

from .. import audit, limits, pipelined, users
from ..audit import Actor
from ..clock import utcnow
from ..db import Database
from ..errors import DomainError, NotFound
from ..kits import READERS, KitCode, read_code, state_label
from ..models import BlindedLot, Kit, KitState, Role, utc_text

# Who leaves a sighting on record when scanning: everyone who may scan but the monitor.
SIGHTERS = READERS - {Role.monitor}

_KIT_ROW = (select(col(Kit.id), col(Kit.number), col(Kit.state), col(Kit.location), col(BlindedLot.code),
                   col(BlindedLot.expiry))
            .outerjoin(BlindedLot, col(BlindedLot.id) == col(Kit.blinded_lot_id)))
_KIT = _KIT_ROW.where(col(Kit.number) == bindparam("number"))
_KITS = _KIT_ROW.where(col(Kit.number).in_(bindparam("numbers", expanding=True)))  # a group's kits
# ... on PostgreSQL as one array parameter: one statement text for every group size, prepared once.
_KITS_ANY = _KIT_ROW.where(col(Kit.number) == any_(bindparam("numbers")))
_CUSTODY = text("INSERT INTO custody_event (kit_id, action, from_place, to_place, shipment_id, by_user, by_name, at, "
                "condition) VALUES (:kit_id, 'scanned', NULL, :place, NULL, :by_user, :by_name, :at, :condition)")

_RAW_KIT = ("SELECT kit.id, kit.number, kit.state, kit.location, blinded_lot.code, blinded_lot.expiry FROM kit "
            "LEFT JOIN blinded_lot ON blinded_lot.id = kit.blinded_lot_id WHERE kit.number = ?")

# What to do next, by state: the same words for both arms. `ok` False shows the verdict in red.
_NEXT: dict[KitState, tuple[bool, str]] = {
    KitState.planned: (False, "Not packaged yet: this kit number has no contents. Do not use."),
    KitState.packaged: (False, "Packaged, not released yet: keep it at the cell bench."),
    KitState.released: (True, "Released: may be packed into a shipment."),
    KitState.in_transit: (True, "In transit: receive it with its shipment."),
    KitState.awaiting_release: (True, "Awaiting final release: may be packed into a shipment, not assigned yet."),
    KitState.transit_awaiting_release: (True, "In transit, awaiting final release: receive it with its shipment."),
    KitState.site_awaiting_release: (True, "At site, awaiting final release: store it; it cannot be assigned yet."),
    KitState.at_site: (True, "In stock at the site: store it, or dispense it at a visit."),
    KitState.allocated: (True, "Assigned to a visit: dispense it to the preparer."),
    KitState.dispensed: (True, "Dispensed: thaw or prepare it, then start the clock."),
    KitState.in_preparation: (True, "In preparation: administer within the use window."),
    KitState.quarantined: (False, "Temporarily unavailable: do not use. Keep it in storage."),
    KitState.withdrawn: (False, "Withdrawn from use: do not use; set it aside for destruction."),
    KitState.administered: (False, "Already administered."),
    KitState.not_administered: (False, "Not administered: do not use; set it aside for destruction."),
    KitState.returned: (False, "Returned: do not use; set it aside for destruction."),
    KitState.damaged: (False, "Damaged: do not use; set it aside for destruction."),
    KitState.missing: (False, "Reported missing: tell the supply manager it has been found."),
    KitState.destroyed: (False, "Recorded as destroyed: tell the supply manager at once."),
}


@dataclass(frozen=True)
class Verdict:
    ok: bool
    kit_number: str
    state: str
    state_label: str
    blinded_lot: str | None
    expiry: date | None
    location: str
    next_step: str

    def as_json(self) -> dict:
        # Field by field: dataclasses.asdict deep-copies every value, a tenth of the event loop's
        # time per scan on the served app (py-spy, 16 clients).
        return {"ok": self.ok, "kit_number": self.kit_number, "state": self.state, "state_label": self.state_label,
                "blinded_lot": self.blinded_lot, "expiry": self.expiry.isoformat() if self.expiry else None,
                "location": self.location, "next_step": self.next_step}


def scan(conn: Connection | Session, actor: Actor, code: str | None, secret_key: str, *, station: str,
         manual: object = False, reason: str | None = None) -> Verdict:
    """One scan in the caller's transaction: a Database.write_connection(), or a session's (the
    station page). A kit number typed by hand (marked, with its reason) is a sighting too, recorded
    as typed by hand."""
    entry = _read(actor, code, secret_key, manual, reason)
    conn = conn if isinstance(conn, Connection) else conn.connection()
    raw = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None  # see audit.record
    if raw is not None:
        row = raw.execute(_RAW_KIT, (entry.number,)).fetchone()
    else:
        row = conn.execute(_KIT, {"number": entry.number}).first()
    verdict, kit_id = _verdict(entry, row)
    if not records_sighting(actor):
        return verdict
    custody = _sighting(actor, kit_id, station, entry)
    if raw is not None:
        raw.execute(_CUSTODY.text, custody)  # sqlite3 takes :named parameters too
    else:
        conn.execute(_CUSTODY, custody)
    # audit.record writes on a Connection too (the hot path)
    audit.record(conn, actor, "kit scanned", "kit", verdict.kit_number, field="station", new=custody["place"],
                 reason=entry.note())
    return verdict


@dataclass(frozen=True)
class ScanRequest:
    """One token-authenticated scan waiting for its group (GroupCommit)."""

    actor: Actor
    code: str | None
    station: str
    manual: object = False
    reason: str | None = None


def scan_group(conn: Connection | pipelined.Pipelined, requests: Sequence[ScanRequest],
               secret_key: str) -> list[Verdict | DomainError]:
    """Several scans in the caller's transaction, each with the outcome `scan` gives it alone, in a
    fixed number of statements whatever their number: the kits read in one, the custody events
    inserted in one, the audit events appended in one with the chain head locked once
    (audit.record_all). On PostgreSQL each statement is a round trip, and one scan took nine; in
    a pipelined transaction (GroupCommit on PostgreSQL) the group takes three round trips.

    A scan refused here (a bad label, an unknown kit, a station name too long) is refused before
    anything is written, as alone. A failure while writing fails the whole group: the caller rolls
    back and may redo the scans one by one (GroupCommit does), so that one bad scan cannot refuse
    the others."""
    outcomes: list[Verdict | DomainError | None] = [None] * len(requests)
    entries: dict[int, KitCode] = {}
    for i, request in enumerate(requests):
        try:
            entries[i] = _read(request.actor, request.code, secret_key, request.manual, request.reason)
        except DomainError as refused:
            outcomes[i] = refused
    numbers = sorted({entry.number for entry in entries.values()})
    if not numbers:
        rows = {}
    elif isinstance(conn, pipelined.Pipelined):
        rows = {row[1]: row for row in conn.rows(_KITS_ANY, {"numbers": numbers})}
    else:
        rows = {row[1]: row for row in conn.execute(_KITS, {"numbers": numbers})}
    custody: list[dict] = []
    changes: list[audit.Change] = []
    for i, entry in entries.items():
        request = requests[i]
        try:
            verdict, kit_id = _verdict(entry, rows.get(entry.number))
            if records_sighting(request.actor):
                custody.append(_sighting(request.actor, kit_id, request.station, entry))
                changes.append((request.actor, "kit scanned", "kit", verdict.kit_number,
                                {"field": "station", "new": custody[-1]["place"], "reason": entry.note()}))
        except DomainError as refused:
            outcomes[i] = refused
            continue
        outcomes[i] = verdict
    if custody:  # before the chain head is locked (pipelined: sent with its lock): the lock is held for less
        if isinstance(conn, pipelined.Pipelined):
            conn.send(_CUSTODY, custody)
        else:
            conn.execute(_CUSTODY, custody)
    audit.record_all(conn, changes)
    return [outcome for outcome in outcomes if outcome is not None]


def _read(actor: Actor, code: str | None, secret_key: str, manual: object, reason: str | None) -> KitCode:
    users.require_role(actor, *READERS)
    return read_code(code, secret_key, manual=manual, reason=reason)


def _verdict(entry: KitCode, row: Sequence[Any] | None) -> tuple[Verdict, int]:
    """What a scan of this kit row says, and the kit's id."""
    if row is None:
        raise NotFound(f"Kit {entry.number} is not a kit of cellbench: do not use it, and report the label.",
                       field="code")
    kit_id, number, state, location, blinded_lot, expiry = row
    if isinstance(expiry, str):  # the raw SQLite row has the date as stored
        expiry = date.fromisoformat(expiry)
    state = KitState(state)
    ok, next_step = _NEXT[state]
    if ok and expiry is not None and expiry < utcnow().date():
        ok, next_step = False, "Expired: do not use; set it aside for return."
    return Verdict(ok, number, state.value, state_label(state), blinded_lot, expiry, location, next_step), kit_id


def _sighting(actor: Actor, kit_id: int, station: str, entry: KitCode) -> dict[str, Any]:
    """The custody event's values of a sighting (refused here if the station's name is too long)."""
    place = limits.text(station, "station", "station name", "label") or "scan station"
    return {"kit_id": kit_id, "place": place, "by_user": actor.user_id, "by_name": actor.name,
            "at": utc_text(utcnow()), "condition": entry.note()}


def records_sighting(actor: Actor) -> bool:
    """A scan by this actor is a sighting on record, not only a lookup."""
    return bool(actor.roles & SIGHTERS)


def write_group(db: Database, requests: Sequence[ScanRequest], secret_key: str) -> list[Verdict | DomainError]:
    """scan_group in a transaction of its own, committed. On PostgreSQL the transaction is
    pipelined (three round trips, the commit with the last writes), on SQLite a write_connection.
    Raises _Redo if it failed before its commit, rolled back: nothing of it is written. A failed
    commit whose outcome is unknown is not redone: it may have been written."""
    if not db.is_sqlite:
        try:
            with pipelined.write(db) as tx:
                return scan_group(tx, requests, secret_key)
        except pipelined.NotWritten as failed:
            raise _Redo from failed
    with db.write_connection() as conn:
        try:
            return scan_group(conn, requests, secret_key)
        except Exception as failed:
            raise _Redo from failed


class GroupCommit:
    """Token-authenticated scans, committed in groups: the API's hot path.

    Each scan has the outcome it has alone (its custody event and its audit event stand or fall
    together, and a refused scan leaves nothing), but the scans that arrive while the previous group
    is being written share one transaction (scan_group), so one fsync serves them all. Measured on
    the 2-core machine with other work running: a commit (synchronous=FULL) took 2.8 ms of a 4.1 ms
    scan, so one commit per scan could never pass about 300 scans/s there. A scan is answered only
    after its group has committed: nothing is acknowledged that a crash could lose.

    On PostgreSQL the statements are round trips: one savepoint per scan made nine for each, and
    the group's fixed seven, with the chain head locked for the last three and the commit, took
    the server's CPU per scan from 3.3-4.1 ms to 1.6-1.7 ms and PostgreSQL's from 1.4-1.8 ms to
    0.2-0.3 ms (16 clients, measured side by side under the same load). The seven now go in three
    round trips (pipelined.py), the head locked for the last one only: a group of 16 took 23-27 ms
    and 4.3-4.9 ms of CPU where it took 27-31 ms and 5.3-6.7 ms (in-process, load 16-19). With
    several workers each process groups its own scans and the head lock orders the groups.

    The work runs on one writer thread, so the event loop goes on reading requests (and filling the
    next group) while a group is written."""

    MAX_GROUP = 64  # bounds how long the last scan of a group waits for the others

    def __init__(self, db: Database, secret_key: str):
        self.loop = asyncio.get_running_loop()
        self._db, self._secret = db, secret_key
        self._waiting: list[tuple[ScanRequest, asyncio.Future]] = []
        self._wake = asyncio.Event()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scan-writer")
        self._task = self.loop.create_task(self._run())

    async def scan(self, actor: Actor, code: str, station: str, manual: bool = False,
                   reason: str | None = None) -> Verdict:
        """One scan by an actor already identified (by the gate, from the scanner's API token)."""
        future = self.loop.create_future()
        self._waiting.append((ScanRequest(actor, code, station, manual, reason), future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                group, self._waiting = self._waiting[:self.MAX_GROUP], self._waiting[self.MAX_GROUP:]
                outcomes: list[Verdict | DomainError] | list[Exception]
                try:
                    outcomes = await self.loop.run_in_executor(self._writer, self._write,
                                                               [request for request, _ in group])
                except Exception as error:
                    outcomes = [error] * len(group)
                for (_, future), outcome in zip(group, outcomes, strict=True):
                    if future.done():  # the client went away
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)

    def _write(self, group: list[ScanRequest]) -> list[Verdict | DomainError]:
        """The group in one transaction (write_group); if that fails before its commit, the scans
        are redone one by one, each in its savepoint, so that the scan that failed is refused alone."""
        try:
            return write_group(self._db, group, self._secret)
        except _Redo:
            return self._one_by_one(group)

    def _one_by_one(self, group: list[ScanRequest]) -> list[Verdict | DomainError]:
        outcomes: list[Verdict | DomainError] = []
        with self._db.write_connection() as conn:
            for request in group:
                try:
                    with conn.begin_nested():
                        outcomes.append(scan(conn, request.actor, request.code, self._secret, station=request.station,
                                             manual=request.manual, reason=request.reason))
                except DomainError as error:
                    outcomes.append(error)
        return outcomes


class _Redo(Exception):
    """A group's write failed before its commit: nothing of it is written."""
