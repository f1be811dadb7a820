"""The bounded SQLite WAL: a checkpointer off the request path, and the gate that lets it drain reads.

A PASSIVE checkpoint copies only up to the oldest open read, so with requests always in flight the
WAL never restarts from its beginning and grows without bound. Past the limit the checkpointer holds
new reads back, waits for the open ones, takes the write lock and truncates (`Checkpointer.tick`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Protocol

log = logging.getLogger("cellbench")


class Served(Protocol):
    """What the checkpointer needs of db.Database (which imports this module, so not by name)."""

    wal_limit_bytes: int
    _write_lock: threading.RLock | None
    _gate: ReadGate

    def sqlite_path(self) -> str | None: ...


class ReadGate:
    """Counts the read sessions open in this process, and holds new ones back while the checkpointer
    waits for the open ones to end (drained). A session opened inside another session or a write
    on the same thread, or on the event loop's thread, is never held back: the outer one would
    wait for itself, and a held loop could not finish the requests being waited for."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = 0
        self._draining = False
        self._depth = threading.local()

    @contextmanager
    def inside(self) -> Iterator[None]:
        depth = getattr(self._depth, "n", 0)
        self._depth.n = depth + 1
        try:
            yield
        finally:
            self._depth.n = depth

    @contextmanager
    def reading(self) -> Iterator[None]:
        self.admit()
        try:
            with self.inside():
                yield
        finally:
            self.release()

    @property
    def holding_back(self) -> bool:
        """Whether a read admitted now on a worker thread would wait (a catch-up is draining)."""
        return self._draining

    def admit(self) -> None:
        """Counts one read open, after waiting while a catch-up drains (never inside another
        session or write on this thread, never on the event loop). For a read that ends on
        another thread than it began (a request's shared read): admit and release, no depth."""
        with self._cond:
            if self._draining and not getattr(self._depth, "n", 0) and not on_event_loop():
                self._cond.wait_for(lambda: not self._draining, timeout=Checkpointer.BUSY_MS / 1000)
            self._open += 1

    def release(self) -> None:
        with self._cond:
            self._open -= 1
            if not self._open:
                self._cond.notify_all()

    @contextmanager
    def drained(self, deadline: float) -> Iterator[bool]:
        """Holds new reads back; yields whether the open ones ended before the deadline."""
        with self._cond:
            self._draining = True
            ended = self._cond.wait_for(lambda: not self._open, timeout=max(0.0, deadline - time.monotonic()))
        try:
            yield ended
        finally:
            with self._cond:
                self._draining = False
                self._cond.notify_all()


def on_event_loop() -> bool:
    with suppress(RuntimeError):
        return asyncio.get_running_loop() is not None
    return False


class Checkpointer:
    """Keeps a served SQLite database's WAL small, off the request path.

    Every tick: a PASSIVE checkpoint, which copies committed pages back into the database and never
    waits for anyone. It alone cannot bound the WAL under steady load: it copies only up to the
    oldest snapshot a reader still holds, and the WAL file restarts from its beginning only after
    everything was copied and no reader uses it. With requests always in flight some reader always
    holds an older snapshot, the WAL is never fully copied and grows without end (747 MB in 5
    minutes of mixed load on a 20 MB database: SQLite's "checkpoint starvation").

    So when the WAL file passes the limit, the checkpointer catches up in three steps, within
    BUSY_MS. (1) It holds new read sessions back (ReadGate) and waits for the open ones to end:
    one request's worth. (2) It takes the app's write lock, so nothing commits. (3) It runs
    PASSIVE again, which now copies everything, as every snapshot left is the latest, then
    TRUNCATE, which cuts the WAL file to zero bytes; then reads and writes go on.

    Why not simply TRUNCATE under the write lock: TRUNCATE waits for the readers of older snapshots
    by polling their lock slots, and back-to-back reads keep retaking a slot (measured: a single
    thread looping 5 ms reads made it time out). And a read session ends in a request's
    dependency exit, which the event loop runs; the receipt scan writes inline in the loop, so a
    loop waiting for the write lock cannot end the very reads the checkpoint waits for (measured
    in bench/soak.py: it gave up on nearly every try and the WAL passed 90 MB). Draining the reads
    before taking the lock avoids both.

    The trade-off: reads wait for (1) to (3), writes for (2) and (3): the longest read then
    running, the pages PASSIVE had not copied yet and an fsync: 35-600 ms measured with threads
    writing and reading flat out on the shared 2-core machine (load 6-8), at most BUSY_MS. Past
    BUSY_MS the checkpointer gives up and everything goes on; the next try comes some ticks
    later (at once when it was this server's own requests, slow for a moment; twice as late each
    time when a read in another process held it up: a backup or `cellbench verify` holds its
    snapshot for long).
    """

    INTERVAL = 1.0  # seconds between ticks: at ~3 MB/s of WAL (the soak), a few MB past the limit at most
    BUSY_MS = 1000  # the longest a catch-up holds the app's reads and writes back before it gives up
    RETRY_TICKS = 5  # after another process's read held a catch-up up, PASSIVE only for this many ticks

    def __init__(self, db: Served, interval: float = INTERVAL, *, start: bool = True):
        self._db, self._interval = db, interval
        path = db.sqlite_path() or ""
        self._path, self._wal = path, f"{path}-wal"
        self.truncations = self.gave_up = 0
        self.longest_pause = 0.0  # the longest catch-up, in seconds (reads and writes held back)
        self._wait = self._retry = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        if start:  # tests drive tick() themselves
            self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        # Its own autocommit connection, outside the pool, with a busy timeout of its own (per TRUNCATE).
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA journal_size_limit={self._db.wal_limit_bytes}")
        return conn

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        while not self._stop.wait(self._interval):
            try:
                conn = conn or self._connect()
                self.tick(conn)
            except Exception:  # a busy or closing database: the next tick tries again
                log.debug("WAL checkpoint skipped", exc_info=True)
        if conn is not None:
            conn.close()

    def wal_bytes(self) -> int:
        try:
            return os.stat(self._wal).st_size
        except FileNotFoundError:
            return 0

    def tick(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        if self._wait > 0:
            self._wait -= 1
            return
        if self.wal_bytes() <= self._db.wal_limit_bytes:
            return
        started = time.monotonic()
        deadline = started + self.BUSY_MS / 1000
        lock = self._db._write_lock or threading.Lock()
        why: str | None = "reads of this server still open"
        lock_taken = False
        with self._db._gate.drained(deadline) as drained:  # new reads wait from here
            if drained:
                why = "a write still running"
                if lock_taken := lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    try:  # and the app's writes from here
                        why = self._catch_up(conn, deadline)
                    finally:
                        lock.release()
        pause = time.monotonic() - started
        self.longest_pause = max(self.longest_pause, pause)
        if why:
            self.gave_up += 1
            if drained and lock_taken:  # a long read elsewhere (a backup, `cellbench verify`): later each time
                self._retry = min(self._retry * 2, 60) if self._retry else self.RETRY_TICKS
                self._wait = self._retry
            else:  # this server's own requests, slow for a moment: again at the next tick
                self._wait = 0
            log.warning("the SQLite WAL (%.0f MB) was not truncated: %s after %d ms; trying again in %d s",
                        self.wal_bytes() / 1e6, why, self.BUSY_MS, (self._wait + 1) * self._interval)
        else:
            self._retry = 0
            self.truncations += 1
            log.info("SQLite WAL truncated; reads and writes paused %.0f ms", pause * 1000)

    @staticmethod
    def _catch_up(conn: sqlite3.Connection, deadline: float) -> str | None:
        """Copy the whole WAL into the database and truncate it, by the deadline (under the write
        lock: nothing commits meanwhile). None when done, else what it waited for."""
        while True:
            _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames == copied:
                break
            if time.monotonic() >= deadline:
                return "a read of an older snapshot (another process?) still open"
            time.sleep(0.002)
        left_ms = max(1, int((deadline - time.monotonic()) * 1000))
        conn.execute(f"PRAGMA busy_timeout={left_ms}")
        busy, _frames, _copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return "a reader of the WAL still open at the truncation" if busy else None

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
