"""A study definition file's shape (specs/studies/<code>.toml), checked on load: sponsor and
emergency contact, arms and ratio (the arm *codes*, never which kit or participant is on them),
treatment schedule, doses per treatment, label languages and the one presentation both arms share."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PRODUCT_KINDS = ("asc", "placebo")

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

