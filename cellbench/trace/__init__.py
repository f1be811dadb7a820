"""Trace: kit ↔ participant and each kit's custody chain for everyone (`kits`).

The unblinded trace, donor → lot → kits → participants and back (`unblinded`), reads the sealed
compartment and is imported by its full name only."""

from __future__ import annotations

from .kits import (
    DOSE_NAMES,
    READERS,
    AdministrationLine,
    KitTrace,
    Line,
    Link,
    custody_chain,
    kit_for_chain,
    kit_participants,
)
