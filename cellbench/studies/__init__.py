"""Studies: loaded from specs/studies/<code>.toml, with their sites. Nothing here reveals an arm.

A study's definition is what every blinded label and visit schedule is built from: sponsor and
emergency contact, arms and ratio (the arm *codes*, never which kit or participant is on them),
treatment schedule, doses per treatment and label languages.

Parts: definition (the file's shape and its checks), loading (files checked and stored, with their
sites), reading (stored studies and what their definitions say), policy (the quarantine policy).
"""
from __future__ import annotations

from .definition import (
    PRODUCT_KINDS,
    Arm,
    Criterion,
    Emergency,
    LabelText,
    Presentation,
    Randomisation,
    Schedule,
    SiteInfo,
    Sponsor,
    StudyDefinition,
    StudyInfo,
    Supply,
)
from .loading import StudyFileError, load_study_file, presentation_mismatch, study_files, sync_from_files
from .policy import QUARANTINE_POLICIES, set_quarantine_policy
from .reading import (
    READERS,
    all_studies,
    arm_codes,
    arm_for_kind,
    by_code,
    by_id,
    definition,
    donor_policy,
    longest_visit_window_days,
    placebo_arm,
    sites_of,
    window_of,
)

__all__ = ["PRODUCT_KINDS", "QUARANTINE_POLICIES", "READERS", "Arm", "Criterion", "Emergency", "LabelText",
           "Presentation", "Randomisation", "Schedule", "SiteInfo", "Sponsor", "StudyDefinition", "StudyFileError",
           "StudyInfo", "Supply", "all_studies", "arm_codes", "arm_for_kind", "by_code", "by_id", "definition",
           "donor_policy", "load_study_file", "longest_visit_window_days", "placebo_arm", "presentation_mismatch",
           "set_quarantine_policy", "sites_of", "study_files", "sync_from_files", "window_of"]
