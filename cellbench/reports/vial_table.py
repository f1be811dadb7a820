"""The batch record's vial table: every vial of the lot once, with its one fate (lots.vials), and
the reconciliation the record prints above it."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..lots.vials import PLACED
from ..lots.vials import words as vial_words
from ..models import VialState


@dataclass(slots=True)
class VialLine:
    """One vial of the lot and its one fate, as the record prints it (a row of the vial table)."""

    code: str
    seq: int
    storage_position: str | None
    state: str
    fate_note: str | None
    fate_at: datetime | None
    fate: str = ""  # in words: "placed in storage", "pulled for QC", ...
    counted_as: str = ""  # its column in the reconciliation

    def __post_init__(self) -> None:
        state = VialState(self.state)
        self.fate = vial_words(state)
        self.counted_as = ("placed" if state in PLACED else "no fate yet" if state is VialState.filled
                           else {VialState.qc: "pulled for QC"}.get(state, state.value))

    @property
    def has_fate(self) -> bool:
        return VialState(self.state) is not VialState.filled


def vial_counts(vials: list[VialLine]) -> dict[str, int]:
    """Filled = placed + pulled for QC + retained + destroyed (+ no fate yet), as the record prints it."""
    counts = {"filled": len(vials), "placed": 0, "pulled for QC": 0, "retained": 0, "destroyed": 0, "no fate yet": 0}
    for vial in vials:
        counts[vial.counted_as] += 1
    return counts
