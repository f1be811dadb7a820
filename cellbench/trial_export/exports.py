"""The blinded export for the trial database: who may download it, in which format, audited.

Who: the investigator and the monitor, the people who enter the site's data into the sponsor's EDC
and check it there; for their own sites only (a site role's export holds its sites' participants).
The supply manager is not among them: she runs supply, not the trial database, and the arms she
knows have no place near an EDC file. The unblinded variant is the statistician's, after the
study unblinding (unblinded.py, imported by its full name only).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from sqlmodel import Session

from .. import audit, studies, users
from ..audit import Actor
from ..clock import utcnow
from ..db import Database
from ..errors import Forbidden, InvalidInput
from ..models import Role, Study
from .events import TrialEvents, sites_used, subject_pages
from .events import counts as events_counts
from .odm import Arms, odm_chunks
from .tables import csv_chunks

EXPORTERS = (Role.investigator, Role.monitor)
FORMATS = {"odm": ("application/xml", "xml"), "csv": ("text/csv; charset=utf-8", "csv")}


@dataclass
class ExportFile:
    """A download: its name and type, what it holds (counted for its audit event), and its bytes in
    pieces, read as they are sent (see `opened`)."""

    name: str
    media_type: str
    chunks: Iterable[bytes]
    counts: dict[str, int]

    @property
    def headers(self) -> dict[str, str]:
        """The download's headers: saved under its own name."""
        return {"content-disposition": f"attachment; filename*=UTF-8''{quote(self.name)}"}


def parse_format(value: str | None) -> str:
    fmt = (value or "").strip().lower()
    if fmt not in FORMATS:
        raise InvalidInput(f"Choose the format: {' or '.join(FORMATS)}.", field="format")
    return fmt


def _file(study: Study, fmt: str, counts: dict[str, int], chunks: Callable[[datetime], Iterable[bytes]], *,
          unblinded: bool, now: datetime | None) -> ExportFile:
    created = now or utcnow()
    variant = "unblinded" if unblinded else "blinded"
    media_type, extension = FORMATS[fmt]
    name = f"{study.code}-trial-events-{variant}-{created.strftime('%Y%m%dT%H%M%SZ')}.{extension}"
    return ExportFile(name, media_type, chunks(created), counts)


def render(events: TrialEvents, fmt: str, *, arms: Arms | None = None, now: datetime | None = None) -> ExportFile:
    """The file of events gathered already (its pieces a list)."""
    fmt = parse_format(fmt)

    def chunks(created: datetime) -> list[bytes]:
        if fmt == "odm":
            return list(odm_chunks(events.study, events.sites, [events.subjects], created_at=created, arms=arms))
        return list(csv_chunks(events.study, [events.subjects], arms))
    return _file(events.study, fmt, events.counts, chunks, unblinded=arms is not None, now=now)


def streamed(reading: Session, study: Study, fmt: str, *, reader: Actor | None = None, arms: Arms | None = None,
             now: datetime | None = None) -> ExportFile:
    """The file read from `reading` a page of participants at a time as it is sent: counted now,
    in the same snapshot the pieces are read from later (repeatable read on PostgreSQL, SQLite's
    read transaction), so the audited counts are what the file holds."""
    fmt = parse_format(fmt)
    if reading.get_bind().dialect.name == "postgresql" and not reading.in_transaction():
        reading.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    counts = events_counts(reading, study, reader)
    sites = sites_used(reading, study, reader)

    def chunks(created: datetime) -> Iterator[bytes]:
        pages = subject_pages(reading, study, reader)
        if fmt == "odm":
            return odm_chunks(study, sites, pages, created_at=created, arms=arms)
        return csv_chunks(study, pages, arms)
    return _file(study, fmt, counts, chunks, unblinded=arms is not None, now=now)


def record_download(session: Session, actor: Actor, study: Study, export: ExportFile, variant: str) -> None:
    """The download is audited: who took which file of which study, and what it held."""
    audit.record(session, actor, "trial data exported", "study", study.code, field=f"{variant} {export.name}",
                 new=export.counts)


def blinded_export(session: Session, actor: Actor, study_code: str, fmt: str | None,
                   reading: Session | None = None) -> ExportFile:
    """The study's blinded trial events as ODM or CSV, for an investigator or monitor of the study:
    refused or audited in `session`, the file read from `reading` (opened: a snapshot that outlives
    the audited transaction; by default `session`, read before it ends)."""
    if not actor.roles & set(EXPORTERS):
        raise Forbidden("The trial database export is downloaded by the investigator or the monitor.")
    study = studies.by_code(session, study_code)
    if why := users.study_refusal(actor, study):
        raise Forbidden(why, field="study")
    export = streamed(reading or session, study, parse_format(fmt), reader=actor)
    record_download(session, actor, study, export, "blinded")
    return export


def opened(db: Database, produce: Callable[[Session, Session], ExportFile]) -> tuple[ExportFile, Iterator[bytes]]:
    """An export refused or audited in one write transaction (`produce(session, reading)`), then its
    pieces read from a read session opened before it: a refusal is raised here, before any byte is
    sent, and the database's write lock is not held while the file is sent. The read ends with the
    last piece, or when the client leaves (the generator is closed)."""
    reading = db.open_read()
    try:
        with db.write() as session:
            export = produce(session, reading)
    except BaseException:
        db.close_read(reading)
        raise

    def pieces() -> Iterator[bytes]:
        try:
            yield from export.chunks
        finally:
            db.close_read(reading)
    return export, pieces()
