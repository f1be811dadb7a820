"""The unblinded variant of the trial database export: the blinded events plus each participant's
and each dispensed kit's arm, read from the sealed compartment (a logged read). For the
statistician only, and only after the sponsor's signed database lock and study unblinding
(study_data.export_refusal). Imported by its full name only, so that the blinded export, and every
page a blinded role uses, never reaches the compartment."""
from __future__ import annotations

from sqlmodel import Session

from .. import sealed, studies, study_data
from ..audit import Actor
from ..errors import Forbidden
from .exports import ExportFile, parse_format, record_download, streamed


def unblinded_export(session: Session, actor: Actor, study_code: str, fmt: str | None,
                     reading: Session | None = None) -> ExportFile:
    """Refused (before the arms are read) or audited in `session`; the file read from `reading` as
    exports.blinded_export's is."""
    if not actor.roles & study_data.EXPORTERS:
        raise Forbidden("The unblinded export is the statistician's.")
    study = studies.by_code(session, study_code)
    fmt = parse_format(fmt)
    if why := study_data.export_refusal(session, study):
        raise Forbidden(why, field="study")
    arms = sealed.study_arms(session, actor, study)
    export = streamed(reading or session, study, fmt, arms=arms)
    record_download(session, actor, study, export, "unblinded")
    return export
