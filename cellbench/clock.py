"""Time: the one source of "now", the site's calendar day, and times as people read them.

Every module reads the time through `utcnow()` here, never `datetime.now()`, so that one switch
(`held`) moves the whole product's clock at once: the demo's story clock replays five months of a
trial, and tests move time forward as a courier or a thaw would. Storage is always UTC; people
see and type times in a zone (the site's, or the cell bench's default from the settings), with
the offset shown so nobody has to guess.

No domain module builds `Settings()`: the app and the command line call `configure()` with the
settings' zone once, and everything else asks this module.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

# The cell bench's own zone until configure() says otherwise (the settings' default).
DEFAULT_ZONE = "Europe/Copenhagen"
_zone = ZoneInfo(DEFAULT_ZONE)


def _wall() -> datetime:
    return datetime.now(UTC)


_source: Callable[[], datetime] = _wall


class HasTimezone(Protocol):
    @property
    def timezone(self) -> str | None: ...


def configure(zone: ZoneInfo) -> None:
    """The bench's zone, from the settings (app start, command line)."""
    global _zone
    _zone = zone


def utcnow() -> datetime:
    """Now, timezone-aware UTC: what every record stores."""
    return _source()


def wall_now() -> datetime:
    """The machine's real time, whatever clock is held (the demo's story clock catches up to it)."""
    return _wall()


@contextmanager
def held(source: Callable[[], datetime]) -> Iterator[None]:
    """Run the product on another clock for a while (the demo's story, a test's journey)."""
    global _source
    before = _source
    _source = source
    try:
        yield
    finally:
        _source = before


def zone(site: HasTimezone | None = None) -> ZoneInfo:
    """A site's zone, or the cell bench's when there is no site (or it names none)."""
    name = getattr(site, "timezone", None)
    return ZoneInfo(name) if name else _zone


def today(site: HasTimezone | None = None, now: datetime | None = None) -> date:
    """The calendar day where people are: dates they type and visit windows are site days, not UTC
    days (which are yesterday's for an hour or two after midnight in Copenhagen)."""
    return (now or utcnow()).astimezone(zone(site)).date()


SECONDS = "%Y-%m-%d %H:%M:%S"
MINUTES = "%Y-%m-%d %H:%M"


def local_text(moment: datetime | None, where: ZoneInfo | None = None, fmt: str = SECONDS) -> str:
    """A stored UTC time as the site reads it, with its offset: '2026-12-06 09:44:00 +01:00'."""
    if moment is None:
        return ""
    here = moment.astimezone(where or _zone)
    if fmt == SECONDS:  # the common case, without two strftime calls
        text = here.isoformat(sep=" ", timespec="seconds")
        return f"{text[:19]} {text[19:]}"
    if fmt == MINUTES:  # the pages' format, likewise
        text = here.isoformat(sep=" ", timespec="minutes")
        return f"{text[:16]} {text[16:]}"
    offset = here.strftime("%z")
    return f"{here.strftime(fmt)} {offset[:3]}:{offset[3:]}"
