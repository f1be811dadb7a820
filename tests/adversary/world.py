"""The adversarial trial's frame: its size (`Plan`), the story's clock, the seeded system random
generator, and the app and database settings the trial runs with."""
from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import event

from cellbench import clock
from cellbench.app import create_app
from cellbench.config import Settings
from cellbench.db import Database

from ..conftest import FAST_HASHER, SECRET


@dataclass(frozen=True)
class Plan:
    """The trial's size. `scale` < 1 shrinks it for the quick companion test."""

    long_participants: int = 100
    sjogren_participants: int = 40
    long_runs: int = 5  # packaging runs of NCT07290946 (one blinded lot each)
    kits_per_run: int = 56
    seed: int = 12

    def scaled(self, scale: float) -> Plan:
        return Plan(max(10, round(self.long_participants * scale)), max(4, round(self.sjogren_participants * scale)),
                    max(2, round(self.long_runs * scale)), self.kits_per_run, self.seed)


def trial_app(db: Database):
    """The app the blinded roles use: sessions that stay signed in across the story's days."""
    settings = Settings(database_url=db.url, secret_key=SECRET, demo=False, session_idle_minutes=3 * 24 * 60)
    return create_app(settings, password_hasher=FAST_HASHER, database=db)


class StoryClock:
    """cellbench's clock for the story: day 0 is tomorrow; it only moves forward."""

    def __init__(self) -> None:
        self.first = clock.today() + timedelta(days=1)
        self.now = datetime.now(UTC)

    def at(self, day: int, hhmm: str = "08:00") -> None:
        hour, minute = (int(part) for part in hhmm.split(":"))
        local = datetime.combine(self.first + timedelta(days=day), time(hour, minute), tzinfo=clock.zone())
        self.now = max(self.now + timedelta(seconds=1), local.astimezone(UTC))

    def tick(self, minutes: float = 1) -> None:
        self.now += timedelta(minutes=minutes)

    def date(self, day: int) -> date:
        return self.first + timedelta(days=day)

    @contextmanager
    def held(self) -> Iterator[StoryClock]:
        with clock.held(lambda: self.now):
            yield self


@contextmanager
def seeded_system_random(seed: int) -> Iterator[None]:
    """The product draws with secrets / random.SystemRandom (quarantine companions, kit numbers,
    and the kit draw of issue 12), perhaps from a seed of os.urandom. All seeded here, so that the
    test's result is the same on every run: the statistics ask whether the draws carry
    information, not whether they are unpredictable."""
    rng = random.Random(seed)
    saved = random.SystemRandom.random, random.SystemRandom.getrandbits, os.urandom
    random.SystemRandom.random = lambda self: rng.random()  # type: ignore[method-assign]
    random.SystemRandom.getrandbits = lambda self, k: rng.getrandbits(k)  # type: ignore[method-assign]
    os.urandom = rng.randbytes
    try:
        yield
    finally:
        random.SystemRandom.random, random.SystemRandom.getrandbits, os.urandom = saved  # type: ignore[method-assign]


def quick_commits(db: Database) -> None:
    """No fsync per commit (SQLite WAL's synchronous=NORMAL, PostgreSQL's synchronous_commit off)
    for the trial's database: thousands of commits, and durability is not what this test examines."""
    if db.is_sqlite:
        event.listen(db.engine, "connect", lambda conn, _record: conn.execute("PRAGMA synchronous=NORMAL"))
    else:  # PostgreSQL: commits acknowledged before their WAL is flushed, on this connection pool only
        event.listen(db.engine, "connect", lambda conn, _record: conn.cursor().execute("SET synchronous_commit = off"))
    db.engine.dispose()
