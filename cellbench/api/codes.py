"""What every scan door of the API takes beside the code: the mark of a kit number typed by hand
and its reason (kits.codes: a bare kit number without the mark is refused, never read as a scan)."""
from __future__ import annotations

from pydantic import BaseModel, Field

CODE_DESCRIPTION = ("The label's QR payload as scanned; a kit number only together with manual: true and a "
                    "manual_reason")


class ManualEntryIn(BaseModel):
    manual: bool = Field(False, description="The code is a kit number typed by hand (the label could not be "
                                            "scanned); recorded as such in custody and the audit trail")
    # no max_length here: kits.read_code refuses a long reason with a short message, the same as the pages
    manual_reason: str | None = Field(None, description="Why the kit number was typed by hand (required with "
                                                        "manual, at most 200 characters)")
