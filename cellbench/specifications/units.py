"""Units as a person writes them. Specification files keep a typeable form ("10^6 cells/mL"); pages,
certificates and the batch record show "× 10⁶ cells/mL". One function, so every rendering agrees."""
from __future__ import annotations

import re

_SUPERSCRIPT = str.maketrans("0123456789-+", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺")
# A power of ten, with the multiplication sign the file may or may not have written before it.
_POWER = re.compile(r"(?:[×x*]\s*)?10\^([+-]?\d+)")


def unit_text(unit: str | None) -> str:
    """'10^6 cells/mL' -> '× 10⁶ cells/mL'; '%' and 'IU/mL' as they are; None -> ''.

    The result follows a number after a space: "25 × 10⁶ viable cells/vial"."""
    text = " ".join((unit or "").split())
    return _POWER.sub(lambda m: "× 10" + m.group(1).translate(_SUPERSCRIPT), text)
