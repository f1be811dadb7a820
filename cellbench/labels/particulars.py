"""What a kit or vial label says: the study's particulars, one kit's fields, the label kinds and
sizes, and the fixed texts in each label language.

Plain dataclasses that cannot say which arm a kit is on; the product text names the active
product *and* the placebo on every label.

Languages: each particular is printed in every one of the study's label languages ("Opbevares
ved ≤ −150 °C / Store at ≤ −150 °C"). Danish is what Danish sites must have; English serves
the sponsor's monitors and auditors and non-Danish-speaking staff, and one label stock then
serves every site. A study may choose a single language.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

PT = 25.4 / 72  # millimetres per typographic point
NBSP = "\u00a0"
BLANKS = {"participant": "_" * 12, "visit": "_" * 6, "investigator": "_" * 26}


@dataclass(frozen=True)
class LabelStudy:
    """What a study prints on all its labels; identical for every kit in the study."""

    trial_code: str  # e.g. "NCT07290946"
    eu_ct_number: str  # e.g. "2025-522559-25-00"
    sponsor_name: str
    sponsor_address: str
    sponsor_phone: str
    emergency_phone: str  # 24-hour contact, also for emergency unblinding
    cells_per_vial: str  # strength of the active, e.g. "25 × 10⁶"; printed on placebo kits too
    volume_per_vial_ml: str  # e.g. "1.5", written with a point; Danish text gets a comma
    vials_per_kit: int = 2  # one dose per submandibular gland
    languages: tuple[str, ...] = ("da", "en")
    storage_max_c: float = -150.0  # the study's presentation, shared by both arms
    manufacturer: str = ""  # e.g. "OUH Cell Bench, Odense, Denmark"; empty: no manufacturer line


@dataclass(frozen=True)
class KitLabel:
    """One kit's label. Deliberately has no arm, content type or manufacturing lot."""

    study: LabelStudy
    kit_number: str
    qr_payload: str  # qrpayload.make_payload(kit_number, secret): depends on nothing else
    blinded_lot: str
    expiry: date  # the blinded lot's expiry (the earliest of its manufacturing lots)
    participant_number: str | None = None  # a blank line to fill in by hand until assigned
    visit: str | None = None
    investigator: str | None = None


class LabelKind(StrEnum):
    OUTER = "outer"  # full Annex VI particulars, on the kit carton
    VIAL = "vial"  # reduced set for the immediate container (Annex VI A.2 point 5)


@dataclass(frozen=True)
class LabelSize:
    width_mm: float
    height_mm: float


@dataclass(frozen=True)
class SheetLayout:
    """Where labels sit on the sheet. Columns and rows default to as many as fit."""

    margin_left_mm: float = 5.0
    margin_top_mm: float = 13.1
    gap_x_mm: float = 2.5
    gap_y_mm: float = 0.0
    columns: int | None = None
    rows: int | None = None
    page_width_mm: float = 210.0
    page_height_mm: float = 297.0


# Kit cartons: common 8-up A4 stock of 99.1 x 67.7 mm. Vials: 50 x 30 mm wrap-around labels.
DEFAULT_SIZE = {LabelKind.OUTER: LabelSize(99.1, 67.7), LabelKind.VIAL: LabelSize(50.0, 30.0)}
DEFAULT_SHEET = {
    LabelKind.OUTER: SheetLayout(),
    LabelKind.VIAL: SheetLayout(margin_left_mm=10, margin_top_mm=10, gap_x_mm=15, gap_y_mm=2),
}

# (Danish, English). '~' marks a no-break space: "0,9 % NaCl" and "≤ −150 °C" never split.
LANGUAGES = ("da", "en")
TEXTS = {key: tuple(text.replace("~", NBSP) for text in pair) for key, pair in {
    "kit": ("Kit nr.", "Kit no."),
    "lot": ("Batch", "Lot"),
    "expiry": ("Udløb", "EXP"),
    "trial": ("Forsøg", "Trial"),
    "trial_use": ("Kun til klinisk forsøg", "For clinical trial use only"),
    "storage": ("Opbevares ved ≤~{c}~°C", "Store at ≤~{c}~°C"),
    "manufacturer": ("Fremstillet af", "Manufactured by"),
    "product": ("Allogene fedtvævsafledte stromale celler {cells}~celler eller placebo (0,9~%~NaCl)",
                "Allogeneic adipose-derived stromal cells {cells}~cells or placebo (0.9~%~NaCl)"),
    "product_short": ("Allogene ASC eller placebo (0,9~%~NaCl)", "Allogeneic ASC or placebo (0.9~%~NaCl)"),
    "form": ("Injektionsvæske, suspension", "Suspension for injection"),
    "route": ("Intraglandulær injektion i glandula submandibularis",
              "Intraglandular injection into the submandibular gland"),
    "route_short": ("Intraglandulær injektion", "Intraglandular injection"),
    "quantity": ("{n}~hætteglas à~{vol}~ml", "{n}~vials of {vol}~mL"),
    "directions": ("Anvendes som beskrevet i protokollen", "Use as directed in the protocol"),
    "sponsor": ("Sponsor", "Sponsor"),
    "phone": ("Tlf.", "Tel."),
    "emergency": ("Nødkontakt, døgnet rundt", "Emergency contact, 24 h"),
    "participant": ("Forsøgsperson nr.", "Participant no."),
    "visit": ("Besøg", "Visit"),
    "investigator": ("Investigator", "Investigator"),
}.items()}


def printed_expiry(expiry: date) -> str:
    """Month/year for the label ('03/2026'), never later than the real expiry: a month/year
    date reads as "until the end of that month", so a mid-month expiry prints the month before."""
    year, month = expiry.year, expiry.month
    if expiry.day != calendar.monthrange(year, month)[1]:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return f"{month:02d}/{year}"

