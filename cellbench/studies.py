"""Studies: loaded from specs/studies/<code>.toml, with their sites. Nothing here reveals an arm.

A study's definition is what every blinded label and visit schedule is built from: sponsor and
emergency contact, arms and ratio (the arm *codes*, never which kit or participant is on them),
treatment schedule, doses per treatment and label languages.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import select
from sqlmodel import Session, col

from . import audit, users
from .audit import Actor
from .clock import utcnow
from .errors import InvalidInput, NotFound
from .models import Role, Site, Study, StudySite
from .specifications import STUDIES_DIR, Specification, SpecificationError, load_all, specs_root

QUARANTINE_POLICIES = {
    "proportionate": "the lot's kits and a random, proportionate set of placebo kits of the same blinded lot",
    "blinded_lot": "every kit of each blinded lot the lot is in",
}
PRODUCT_KINDS = ("asc", "placebo")
# Who reads studies (pages and API): everyone signed in, except a user who is only an administrator
# (users and roles, no trial data).
READERS = tuple(role for role in Role if role is not Role.admin)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StudyInfo(_Strict):
    code: str = Field(pattern=r"^NCT[0-9]{8}$")
    eu_ct_number: str = Field(pattern=r"^[0-9]{4}-[0-9]{6}-[0-9]{2}-[0-9]{2}$")
    title: str = Field(min_length=1)
    short_title: str = Field(min_length=1, max_length=120)
    target_enrolment: int = Field(gt=0)
    label_languages: tuple[str, ...] = Field(min_length=1)
    participant_prefix: str = Field(pattern=r"^[A-Z]{1,4}$")

    @field_validator("label_languages")
    @classmethod
    def _known_languages(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [lang for lang in value if lang not in ("da", "en")]
        if unknown:
            raise ValueError(f"labels are written in da and en; unknown: {', '.join(unknown)}")
        return value


class Sponsor(_Strict):
    name: str = Field(min_length=1)
    address: str = Field(min_length=1)
    phone: str = Field(min_length=5)


class Emergency(_Strict):
    contact: str = Field(min_length=1)
    phone: str = Field(min_length=5)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")


class Arm(_Strict):
    code: str = Field(pattern=r"^[a-z_]{1,16}$")
    name: str = Field(min_length=1)
    product_kind: str
    product: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")  # the specification its kits are filled from
    ratio: int = Field(gt=0)

    @field_validator("product_kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in PRODUCT_KINDS:
            raise ValueError(f"must be one of {', '.join(PRODUCT_KINDS)}")
        return value


class Schedule(_Strict):
    treatments: int = Field(ge=1)
    interval_days: int = Field(ge=0)
    window_days: int = Field(ge=0)
    doses_per_treatment: int = Field(ge=1)
    dose_sites: tuple[str, ...]
    # Whose cells a repeat dose may be: any donor, or the donor of the participant's treatment 1
    # (sealed.assign_kit honours it; a placebo participant has no donor and is not narrowed).
    donor_policy: Literal["any", "same_donor"] = "any"

    @model_validator(mode="after")
    def _consistent(self) -> Schedule:
        if len(self.dose_sites) != self.doses_per_treatment:
            raise ValueError("dose_sites must name one site per dose")
        if self.treatments > 1 and self.interval_days < 1:
            raise ValueError("a study with several treatments needs interval_days")
        return self


class Randomisation(_Strict):
    block_sizes: tuple[int, ...] = Field(min_length=1)


class LabelText(_Strict):
    cells_per_vial: str = Field(min_length=1)


class Presentation(_Strict):
    """The one presentation both arms share (invariant 4, physically): labels, storage, transport,
    receipt and the preparation clock are derived from it, never from one arm's specification."""

    model_config = ConfigDict(strict=True)
    manufacturer: str = Field(min_length=1)
    container: str = Field(min_length=1)
    fill_volume_ml: float = Field(gt=0)
    vials_per_kit: int = Field(ge=1)
    appearance: str = Field(min_length=1)  # as far as the outer kit shows it
    storage: str = Field(min_length=1)
    storage_max_c: float = Field(le=-20)
    transport: str = Field(min_length=1)
    transport_max_c: float = Field(le=-20)
    transport_hold_days: int = Field(ge=1)  # the shipper's validated hold time
    thaw: str = Field(min_length=1)
    use_window_minutes: int = Field(ge=1)
    shelf_life_months: int = Field(ge=1)
    shelf_life: str = Field(min_length=1)  # the rule in words, e.g. the blinded lot's earliest expiry
    # How the unblinded preparer keeps what is drawn up from the blinded people's sight: the
    # preparer's record names one of these. Study-level (no product specification declares it, so
    # presentation_mismatch, which compares only what a specification declares, never asks for it).
    masking_measures: tuple[str, ...] = Field(default=(), max_length=12, strict=False)

    @field_validator("masking_measures")
    @classmethod
    def _distinct_measures(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not m.strip() or len(m) > 200 for m in value) or len({m.strip().lower() for m in value}) != len(value):
            raise ValueError("masking measures are distinct, non-empty, at most 200 characters each")
        return value


class Supply(_Strict):
    """Do-not-ship: a kit leaves the cell bench only if its blinded lot stays in date for the transit,
    the do-not-ship margin and the longest visit window it may serve (custody.kit_in_date_to_ship)."""

    do_not_ship_days: int = Field(default=0, ge=0)
    transit_days: int = Field(default=0, ge=0)


class Criterion(_Strict):
    """One eligibility criterion the investigator confirms at randomisation, as the registry words it."""

    code: str = Field(pattern=r"^[IE][0-9]{1,2}$")  # I: inclusion (met), E: exclusion (absent)
    text: str = Field(min_length=1)
    source: str = Field(min_length=1)

    @property
    def inclusion(self) -> bool:
        return self.code.startswith("I")


class SiteInfo(_Strict):
    code: str = Field(pattern=r"^[A-Z0-9-]{2,32}$")
    name: str = Field(min_length=1)
    address: str = ""
    investigator: str = ""


class StudyDefinition(_Strict):
    study: StudyInfo
    sponsor: Sponsor
    emergency: Emergency
    arms: tuple[Arm, ...] = Field(min_length=2)
    schedule: Schedule
    randomisation: Randomisation
    label: LabelText
    presentation: Presentation
    sites: tuple[SiteInfo, ...] = Field(min_length=1)
    supply: Supply = Supply()
    eligibility: tuple[Criterion, ...] = ()

    @model_validator(mode="after")
    def _arms_and_blocks(self) -> StudyDefinition:
        codes = [arm.code for arm in self.arms]
        if len(set(codes)) != len(codes):
            raise ValueError("arm codes must differ")
        if "placebo" not in {arm.product_kind for arm in self.arms} or "asc" not in {a.product_kind for a in self.arms}:
            raise ValueError("a blinded study needs an asc arm and a placebo arm")
        if self.presentation.vials_per_kit % self.schedule.doses_per_treatment:
            raise ValueError("presentation.vials_per_kit must hold the same number of vials for every dose")
        cycle = sum(arm.ratio for arm in self.arms)
        bad = [size for size in self.randomisation.block_sizes if size % cycle]
        if bad:
            raise ValueError(f"block sizes {bad} are not multiples of the allocation ratio's sum ({cycle})")
        return self

    @property
    def ratio(self) -> str:
        return ":".join(str(arm.ratio) for arm in self.arms)


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


@lru_cache(maxsize=32)
def _parse(content: str) -> StudyDefinition:
    return StudyDefinition.model_validate(json.loads(content))


def definition(study: Study) -> StudyDefinition:
    """The parsed definition as stored (cached: a given content never changes)."""
    return _parse(study.content)


def by_code(session: Session, code: str | None, *, field: str = "study") -> Study:
    study = session.scalars(select(Study).where(col(Study.code) == (code or "").strip().upper())).first()
    if study is None:
        raise NotFound(f"No study '{(code or '').strip()}'.", field=field)
    return study


def by_id(session: Session, study_id: int | None) -> Study:
    """The study a stored record (kit, blinded lot, run, quarantine) belongs to."""
    study = session.get(Study, study_id) if study_id is not None else None
    if study is None:
        raise NotFound(f"No study #{study_id}.", field="study")
    return study


def all_studies(session: Session) -> list[Study]:
    return list(session.scalars(select(Study).order_by(col(Study.code))))


def sites_of(session: Session, study: Study) -> list[tuple[Site, StudySite]]:
    rows = session.execute(select(Site, StudySite).join(StudySite, col(StudySite.site_id) == col(Site.id))
                           .where(col(StudySite.study_id) == study.id).order_by(col(Site.code))).all()
    return [(site, study_site) for site, study_site in rows]


def donor_policy(study: Study) -> str:
    """`any` or `same_donor` (as treatment 1): the study's rule for repeat doses."""
    return definition(study).schedule.donor_policy


def arm_codes(study: Study) -> tuple[str, ...]:
    return tuple(arm.code for arm in definition(study).arms)


def arm_for_kind(study: Study, product_kind: str) -> str:
    """The arm whose kits are filled with this kind of product (asc or placebo)."""
    return next(arm.code for arm in definition(study).arms if arm.product_kind == product_kind)


def placebo_arm(study: Study) -> str:
    return arm_for_kind(study, "placebo")


def window_of(study: Study, treatment: int) -> tuple[int, int]:
    """Days before and after its target day a treatment may be given: treatment 1 from its day to
    window_days later, a later one ± window_days (the study file's window)."""
    return (0, study.window_days) if treatment == 1 else (study.window_days, study.window_days)


def longest_visit_window_days(study: Study) -> int:
    """The longest window of any treatment visit of the study: how long a kit may wait for its visit."""
    return max(sum(window_of(study, treatment)) for treatment in range(1, study.treatments + 1))


def set_quarantine_policy(session: Session, actor: Actor, study: Study, policy: str, reason: str | None) -> None:
    users.require_role(actor, Role.supply_manager)
    policy = (policy or "").strip()
    if policy not in QUARANTINE_POLICIES:
        raise InvalidInput(f"Choose a quarantine policy: {', '.join(QUARANTINE_POLICIES)}.", field="quarantine_policy")
    if policy == study.quarantine_policy:
        return
    reason = audit.require_reason(reason)
    old, study.quarantine_policy = study.quarantine_policy, policy
    session.flush()
    audit.record(session, actor, "quarantine policy changed", "study", study.code, field="quarantine_policy",
                 old=old, new=policy, reason=reason)
