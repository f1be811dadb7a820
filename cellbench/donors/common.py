"""What every part of donors shares: the eligibility panel, the shape of donor codes, who reads
donor records, and how bad input is refused (naming the field, and the panel row)."""
from __future__ import annotations

import re
from datetime import date

from ..errors import InvalidInput
from ..models import Role

# The panel every donation needs before it can be eligible: Annex II 1.1-1.4 (anti-HIV-1/2,
# HBsAg, anti-HBc, anti-HCV, syphilis), HTLV-I/II and NAT for HIV, HBV and HCV as the CSCC
# release criteria require them (reference 5.2, 5.4). Because NAT is always part of it, the
# 180-day serology retest does not arise. Code -> the name people read, in report order; the ASC
# specification names the same tests "donor_" + code (specs/asc-cs10, stage "donor").
REQUIRED_PANEL: dict[str, str] = {
    "anti_hiv": "Anti-HIV-1/2",
    "hbsag": "HBsAg",
    "anti_hbc": "Anti-HBc",
    "anti_hcv": "Anti-HCV",
    "syphilis": "Syphilis",
    "anti_htlv": "Anti-HTLV-I/II",
    "nat_hiv": "NAT HIV",
    "nat_hbv": "NAT HBV",
    "nat_hcv": "NAT HCV",
}
RESULTS = ("negative", "positive", "indeterminate")
# Annex II 2.5: living donors are sampled at donation or within 7 days after it.
SAMPLE_WINDOW_DAYS = 7

# Donor codes are pseudonyms that cellbench issues: "D-" and 4 to 8 digits. Digits only, so a
# code cannot carry a name or initials; the tissue establishment keeps the link to the person.
DONOR_CODE = re.compile(r"D-([0-9]{4,8})")
DONOR_CODE_HINT = "'D-' followed by 4 to 8 digits, e.g. D-0042"
CODE_MAX = 32  # what the donor code column holds; a longer text is no code
IDENTIFIER_MAX = 64  # what the donation identifier column holds

ISBT128, SEC = "ISBT128", "SEC"
READERS = (Role.operator, Role.qa, Role.qp)


class PanelRowError(InvalidInput):
    """Bad input in one row of the panel: the field is named as usual, and the row is kept so
    that a form entering the whole panel at once can point at it."""

    def __init__(self, message: str, field: str, test: str | None):
        super().__init__(message, field=field)
        self.test = test


def not_future(day: date, today: date, field: str, what: str) -> None:
    if day > today:
        raise InvalidInput(f"The {what} ({day.isoformat()}) is in the future.", field=field)
