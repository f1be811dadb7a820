"""Loading studies from their files: each file checked (its shape, its name, and that the arms'
specifications present as the study's [presentation] says), then stored with its sites, every
change audited."""
from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import InvalidInput
from ..models import Role, Site, Study, StudySite
from ..specifications import STUDIES_DIR, Specification, SpecificationError, load_all, specs_root
from .definition import StudyDefinition


class StudyFileError(InvalidInput, ValueError):
    """A study definition file that does not load: bad input in the file's field "study_file",
    so the one error handler shows it (page or JSON, 422) instead of a server error. The message
    names the file (as under specs/, not the server's path) and the key that is wrong."""

    def __init__(self, path: Path, where: str, message: str):
        shown = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
        super().__init__(f"Study definition {shown}: {where + ': ' if where else ''}{message}.", field="study_file")
        self.path, self.where = path, where


def load_study_file(path: str | Path) -> tuple[StudyDefinition, str]:
    """A study definition and the SHA-256 of its file; errors name the file and the key."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise StudyFileError(path, "", f"cannot read: {error}") from None
    try:
        definition = StudyDefinition.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise StudyFileError(path, ".".join(str(part) for part in first["loc"]), first["msg"]) from None
    if path.stem != definition.study.code:
        raise StudyFileError(path, "study.code", f"{definition.study.code} differs from the file name")
    return definition, hashlib.sha256(raw).hexdigest()


def presentation_mismatch(definition: StudyDefinition, spec_of: Callable[[str], Specification | None]) -> str | None:
    """Why the arms' specifications do not present as the study's [presentation] says (None: they
    do). The one rule, at study load (spec_of: the latest files) and at kit-list sealing (the
    effective versions, supply.lists.seal)."""
    shared, problems = definition.presentation.model_dump(), []
    for arm in definition.arms:
        spec = spec_of(arm.product)
        if spec is None or spec.product.kind != arm.product_kind:
            problems.append(f"arm '{arm.code}' names product {arm.product}, which has no {arm.product_kind} "
                            "specification")
            continue
        declared = {**spec.presented(), "vials_per_kit": spec.product.dose.units_per_gland
                    * definition.schedule.doses_per_treatment}
        named = f"arm '{arm.code}' ({spec.product.code} v{spec.product.version})"
        if len(declared) == 1:
            problems.append(f"{named} declares no presentation")
        problems += [f"{named} has {key} {declared[key]!r} where the study's presentation has {shared[key]!r}"
                     for key in declared if len(declared) > 1 and declared[key] != shared[key]]
    return "; ".join(problems) or None


def _files_present_alike(path: Path, definition: StudyDefinition, root: Path | None) -> None:
    try:
        latest = {spec.product.code: spec for spec in load_all(root)}  # in version order: the last one wins
    except SpecificationError as error:  # e.g. the placebo no longer presents as the active product
        spec = Path(error.file)
        raise StudyFileError(path, "presentation", f"{spec.parent.name}/{spec.name}: {error.path}: {error.message}"
                             ) from None
    if why := presentation_mismatch(definition, latest.get):
        raise StudyFileError(path, "presentation", why)


def study_files(root: Path | None = None) -> list[Path]:
    return sorted(((root or specs_root()) / STUDIES_DIR).glob("*.toml"))


def _canonical(definition: StudyDefinition) -> str:
    return json.dumps(definition.model_dump(mode="json"), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sync_from_files(session: Session, actor: Actor, root: Path | None = None) -> list[Study]:
    """Load or update every study under specs/studies/; sites are created as named."""
    users.require_role(actor, Role.supply_manager, Role.qa, Role.admin)
    loaded = []
    for path in study_files(root):
        definition, sha = load_study_file(path)
        _files_present_alike(path, definition, root)
        loaded.append(_upsert(session, actor, definition, sha))
    return loaded


def _upsert(session: Session, actor: Actor, definition: StudyDefinition, sha: str) -> Study:
    info, schedule = definition.study, definition.schedule
    values: dict[str, Any] = {
        "eu_ct_number": info.eu_ct_number, "title": info.title, "short_title": info.short_title,
        "sponsor_name": definition.sponsor.name, "sponsor_address": definition.sponsor.address,
        "sponsor_phone": definition.sponsor.phone, "emergency_contact": definition.emergency.contact,
        "emergency_phone": definition.emergency.phone, "emergency_email": definition.emergency.email,
        "treatments": schedule.treatments, "interval_days": schedule.interval_days,
        "window_days": schedule.window_days, "doses_per_treatment": schedule.doses_per_treatment,
        "label_languages": ",".join(info.label_languages), "target_enrolment": info.target_enrolment,
        "file_sha256": sha, "content": _canonical(definition)}
    study = session.scalars(select(Study).where(col(Study.code) == info.code)).first()
    if study is None:
        study = Study(code=info.code, loaded_at=utcnow(), **values)
        session.add(study)
        session.flush()
        audit.record(session, actor, "study loaded", "study", study.code, new=sha)
    elif study.file_sha256 != sha:
        old = study.file_sha256
        for key, value in values.items():
            setattr(study, key, value)
        study.loaded_at = utcnow()
        session.flush()
        audit.record(session, actor, "study definition changed", "study", study.code, field="file_sha256",
                     old=old, new=sha)
    for site_info in definition.sites:
        site = session.scalars(select(Site).where(col(Site.code) == site_info.code)).first()
        if site is None:
            site = Site(code=site_info.code, name=site_info.name, address=site_info.address)
            session.add(site)
            session.flush()
            audit.record(session, actor, "site created", "site", site.code, new=site.name)
        study_id, site_id = study.id, site.id
        assert study_id is not None and site_id is not None, "both are flushed above"
        if session.get(StudySite, (study_id, site_id)) is None:
            session.add(StudySite(study_id=study_id, site_id=site_id, investigator=site_info.investigator))
            session.flush()
            audit.record(session, actor, "site added to study", "study", study.code, field="site", new=site.code)
    return study
