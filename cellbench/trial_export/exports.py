"""The blinded export for the trial database: who may download it, in which format, audited.

Who: the investigator and the monitor, the people who enter the site's data into the sponsor's EDC
and check it there; for their own sites only (a site role's export holds its sites' participants).
The supply manager is not among them: she runs supply, not the trial database, and the arms she
knows have no place near an EDC file. The unblinded variant is the statistician's, after the
study unblinding (unblinded.py, imported by its full name only).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from sqlmodel import Session

from .. import audit, studies, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Forbidden, InvalidInput
from ..models import Role, Study
from .events import TrialEvents, gather
from .odm import Arms, odm_xml
from .tables import csv_text

EXPORTERS = (Role.investigator, Role.monitor)
FORMATS = {"odm": ("application/xml", "xml"), "csv": ("text/csv; charset=utf-8", "csv")}


@dataclass
class ExportFile:
    name: str
    media_type: str
    content: bytes
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


def render(events: TrialEvents, fmt: str, *, arms: Arms | None = None, now: datetime | None = None) -> ExportFile:
    fmt = parse_format(fmt)
    created = now or utcnow()
    content = odm_xml(events, created_at=created, arms=arms) if fmt == "odm" else csv_text(events, arms).encode()
    variant = "unblinded" if arms is not None else "blinded"
    media_type, extension = FORMATS[fmt]
    name = f"{events.study.code}-trial-events-{variant}-{created.strftime('%Y%m%dT%H%M%SZ')}.{extension}"
    return ExportFile(name, media_type, content, events.counts)


def record_download(session: Session, actor: Actor, study: Study, export: ExportFile, variant: str) -> None:
    """The download is audited: who took which file of which study, and what it held."""
    audit.record(session, actor, "trial data exported", "study", study.code, field=f"{variant} {export.name}",
                 new=export.counts)


def blinded_export(session: Session, actor: Actor, study_code: str, fmt: str | None) -> ExportFile:
    """The study's blinded trial events as ODM or CSV, for an investigator or monitor of the study."""
    if not actor.roles & set(EXPORTERS):
        raise Forbidden("The trial database export is downloaded by the investigator or the monitor.")
    study = studies.by_code(session, study_code)
    if why := users.study_refusal(actor, study):
        raise Forbidden(why, field="study")
    export = render(gather(session, study, reader=actor), parse_format(fmt))
    record_download(session, actor, study, export, "blinded")
    return export
