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
from .events import gather
from .exports import ExportFile, parse_format, record_download, render


def unblinded_export(session: Session, actor: Actor, study_code: str, fmt: str | None) -> ExportFile:
    if not actor.roles & study_data.EXPORTERS:
        raise Forbidden("The unblinded export is the statistician's.")
    study = studies.by_code(session, study_code)
    fmt = parse_format(fmt)
    if why := study_data.export_refusal(session, study):
        raise Forbidden(why, field="study")
    arms = sealed.study_arms(session, actor, study)
    export = render(gather(session, study), fmt, arms=arms)
    record_download(session, actor, study, export, "unblinded")
    return export
