"""Times written as a site reads them, from the stored UTC text, without a datetime per value.

A time is read from the database as the text it is stored as ("2026-07-27T09:00:12.031387Z",
models.base) and written in the site's zone with its offset, to the second: in the ODM as
`local.isoformat(timespec="seconds")` ("2026-07-27T11:00:12+02:00"), in the CSV as
clock.local_text writes it ("2026-07-27 11:00:12 +02:00"). Converting and formatting one datetime
costs microseconds, and an export at ten years writes tens of thousands of times; but a zone's offset
changes on whole hours, so within one UTC hour whose offset stays the same and is a whole number of
hours, the local text is the hour's local prefix, the minutes and seconds as stored, and the offset.
Each such hour is converted once per export; an hour in which the offset changes (a DST switch) or a
zone whose offset has minutes is converted per value, the old way. A datetime (tests, callers that
have one) is turned into the stored text first, so both give the same bytes.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ..models.base import parse_utc_text, utc_text

Moment = str | datetime  # the stored UTC text, or a timezone-aware datetime
_HOUR = timedelta(hours=1)
_LAST = timedelta(hours=1, microseconds=-1)  # the hour's last instant
_STORED_WIDTH = 27  # "YYYY-MM-DDTHH:MM:SS.ffffffZ"


class SiteTimes:
    """One zone's times, each UTC hour converted once: `odm(t)` and `csv(t)` write the two forms."""

    def __init__(self, zone: ZoneInfo):
        self.zone = zone
        # UTC hour text ("YYYY-MM-DDTHH") -> (ODM prefix, ODM offset, CSV prefix, CSV offset), or
        # None for an hour whose times are converted one by one
        self._hours: dict[str, tuple[str, str, str, str] | None] = {}

    def _hour(self, hour: str) -> tuple[str, str, str, str] | None:
        start = parse_utc_text(hour + ":00:00.000000Z")
        first, last = start.astimezone(self.zone), (start + _LAST).astimezone(self.zone)
        offset = first.utcoffset()
        if offset is None or offset != last.utcoffset() or offset % _HOUR:
            found = None
        else:
            text = first.isoformat(timespec="seconds")  # "YYYY-MM-DDTHH:00:00+HH:MM"
            found = (text[:13], text[19:], f"{text[:10]} {text[11:13]}", " " + text[19:])
        self._hours[hour] = found
        return found

    def _parts(self, moment: Moment) -> tuple[str, tuple[str, str, str, str] | None]:
        text = moment if isinstance(moment, str) else utc_text(moment)
        if len(text) != _STORED_WIDTH:
            return text, None
        hour = text[:13]
        return text, (self._hours[hour] if hour in self._hours else self._hour(hour))

    def odm(self, moment: Moment) -> str:
        """`local.isoformat(timespec="seconds")`."""
        text, hour = self._parts(moment)
        if hour is None:
            return parse_utc_text(text).astimezone(self.zone).isoformat(timespec="seconds")
        return hour[0] + text[13:19] + hour[1]

    def csv(self, moment: Moment) -> str:
        """clock.local_text's form: `local.isoformat(sep=" ", timespec="seconds")` with a space
        before the offset."""
        text, hour = self._parts(moment)
        if hour is None:
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
