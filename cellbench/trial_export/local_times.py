"""Times written as a site reads them, from the stored UTC text, without a datetime per value.

A time is read from the database as the text it is stored as ("2026-07-27T09:00:12.031387Z",
models.base) and written in the site's zone with its offset, to the second: in the ODM as
`local.isoformat(timespec="seconds")` ("2026-07-27T11:00:12+02:00"), in the CSV as
clock.local_text writes it ("2026-07-27 11:00:12 +02:00"). Converting and formatting one datetime
costs microseconds, and an export at ten years writes tens of thousands of times; but a zone's offset
changes on whole hours, so within one UTC hour whose offset stays the same and is a whole number of
hours, the local text is the hour's local prefix, the minutes and seconds as stored, and the offset.
Each such hour is written once per export, from its UTC day's offset (one conversion a day; a day
in which the offset changes, an hour at a time); an hour in which the offset changes (a DST
switch) or a zone whose offset has minutes is converted per value, the old way. A datetime (tests, callers that
have one) is turned into the stored text first, so both give the same bytes.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ..models.base import parse_utc_text, utc_text

Moment = str | datetime  # the stored UTC text, or a timezone-aware datetime
_HOUR = timedelta(hours=1)
_LAST = timedelta(hours=1, microseconds=-1)  # the hour's last instant
_DAY = timedelta(days=1)
_LAST_OF_DAY = timedelta(days=1, microseconds=-1)
_STORED_WIDTH = 27  # "YYYY-MM-DDTHH:MM:SS.ffffffZ"


class SiteTimes:
    """One zone's times, each UTC hour converted once: `odm(t)` and `csv(t)` write the two forms."""

    def __init__(self, zone: ZoneInfo):
        self.zone = zone
        # UTC hour text ("YYYY-MM-DDTHH") -> (ODM prefix, ODM offset, CSV prefix, CSV offset), or
        # () for an hour whose times are converted one by one
        self._hours: dict[str, tuple[str, ...]] = {}
        self._days: dict[str, tuple[int, tuple[str, str, str], str] | None] = {}  # see _day

    def _hour(self, hour: str) -> tuple[str, ...]:
        """The hour's parts (made once, from its day), or () if its times are converted one by one
        (or `hour` is not the start of a stored time: the caller checks its width)."""
        if len(hour) != 13:
            return ()
        day = self._days[hour[:10]] if hour[:10] in self._days else self._day(hour[:10])
        if day is None:  # the offset changes that day: this hour alone
            found = self._alone(hour)
        else:
            shift, dates, offset = day
            local = int(hour[11:13]) + shift
            date = dates[0] if local < 0 else dates[1] if local < 24 else dates[2]
            prefix = f"{date}T{local % 24:02d}"
            found = (prefix, offset, f"{date} {local % 24:02d}", " " + offset)
        self._hours[hour] = found
        return found

    def _day(self, day: str) -> tuple[int, tuple[str, str, str], str] | None:
        """A UTC day whose offset stays the same whole hours: the shift in hours, the days before,
        of and after it (where its local hours fall), and the offset as written; or None."""
        start = parse_utc_text(day + "T00:00:00.000000Z")
        first, last = start.astimezone(self.zone), (start + _LAST_OF_DAY).astimezone(self.zone)
        offset = first.utcoffset()
        found = None
        if offset is not None and offset == last.utcoffset() and not offset % _HOUR:
            dates = ((start - _DAY).date().isoformat(), day, (start + _DAY).date().isoformat())
            found = (offset // _HOUR, dates, first.isoformat(timespec="seconds")[19:])
        self._days[day] = found
        return found

    def _alone(self, hour: str) -> tuple[str, ...]:
        start = parse_utc_text(hour + ":00:00.000000Z")
        first, last = start.astimezone(self.zone), (start + _LAST).astimezone(self.zone)
        offset = first.utcoffset()
        if offset is None or offset != last.utcoffset() or offset % _HOUR:
            return ()
        text = first.isoformat(timespec="seconds")  # "YYYY-MM-DDTHH:00:00+HH:MM"
        return text[:13], text[19:], f"{text[:10]} {text[11:13]}", " " + text[19:]

    def odm(self, moment: Moment) -> str:
        """`local.isoformat(timespec="seconds")`."""
        text = moment if isinstance(moment, str) else utc_text(moment)
        hour = self._hours.get(text[:13])
        if hour is None:
            hour = self._hour(text[:13])
        if not hour or len(text) != _STORED_WIDTH:
            return parse_utc_text(text).astimezone(self.zone).isoformat(timespec="seconds")
        return hour[0] + text[13:19] + hour[1]

    def csv(self, moment: Moment) -> str:
        """clock.local_text's form: `local.isoformat(sep=" ", timespec="seconds")` with a space
        before the offset."""
        text = moment if isinstance(moment, str) else utc_text(moment)
        hour = self._hours.get(text[:13])
        if hour is None:
            hour = self._hour(text[:13])
        if not hour or len(text) != _STORED_WIDTH:
            local = parse_utc_text(text).astimezone(self.zone).isoformat(sep=" ", timespec="seconds")
            return f"{local[:19]} {local[19:]}"
        return hour[2] + text[13:19] + hour[3]


class Zones:
    """Each zone's SiteTimes, made once per export (a zone is one ZoneInfo object per key)."""

    def __init__(self) -> None:
        self._times: dict[ZoneInfo, SiteTimes] = {}

    def __call__(self, zone: ZoneInfo) -> SiteTimes:
        times = self._times.get(zone)
        if times is None:
            times = self._times[zone] = SiteTimes(zone)
        return times
