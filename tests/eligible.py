"""What an investigator confirms at randomisation when a participant is eligible: consent today
and every eligibility criterion of the study file, for tests that randomise on the way elsewhere."""
from __future__ import annotations

from cellbench import clock, studies
from cellbench.specifications import STUDIES_DIR, specs_root


def criteria(study_code: str) -> dict[str, bool]:
    definition, _sha = studies.load_study_file(specs_root() / STUDIES_DIR / f"{study_code}.toml")
    return {criterion.code: True for criterion in definition.eligibility}


def eligible(study_code: str) -> dict:
    """The randomisation body (API) or keyword arguments (service) of an eligible participant."""
    return {"consent_date": clock.today().isoformat(), "criteria": criteria(study_code)}


def form(study_code: str) -> dict[str, str]:
    """The same, as the investigator's randomise page posts it."""
    return {"consent_date": clock.today().isoformat(),
            **{f"criterion_{code}": "yes" for code in criteria(study_code)}}
