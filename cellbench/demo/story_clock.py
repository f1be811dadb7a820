"""The demo's story clock: cellbench's clock held in the past while the trials' story is seeded
(demo.trial's docstring, "Time"), moved forward only, then caught up with the wall clock."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta

from .. import clock

STORY_DAYS = 150


class StoryClock:
    """cellbench's clock during the demo: `at(day, "HH:MM")` (day 0 is STORY_DAYS ago, site time),
    then `catch_up()` to the wall clock. It only ever moves forward."""

    def __init__(self, days: int = STORY_DAYS):
        self.first_day = self.wall_now().astimezone(clock.zone()).date() - timedelta(days=days)
        self._offset = self.moment(0, "00:00") - self.wall_now()  # the story's first midnight

    def wall_now(self) -> datetime:
        return clock.wall_now()

    def now(self) -> datetime:
        return self.wall_now() + self._offset

    def moment(self, day: int, hhmm: str) -> datetime:
        hour, minute = (int(part) for part in hhmm.split(":"))
        local = datetime.combine(self.first_day + timedelta(days=day), time(hour, minute), tzinfo=clock.zone())
        return local.astimezone(UTC)

    def at(self, day: int, hhmm: str) -> datetime:
        target, wall = self.moment(day, hhmm), self.wall_now()
        if target >= wall:
            raise ValueError(f"story day {day} {hhmm} is not in the past")
        self._offset = max(target, self.now()) - wall  # never back, even if a phase ran long
        return target

    def catch_up(self) -> None:
        self._offset = timedelta(0)

    @contextmanager
    def held(self) -> Iterator[StoryClock]:
        with clock.held(self.now):
            yield self
