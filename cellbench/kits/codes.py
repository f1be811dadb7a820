"""The one reader of kit codes at every scan door: a signed label code is a scan; a kit number
typed by hand is accepted only when the request marks it as typed by hand and says why.

Why: a QR that holds only the kit number reads exactly like a kit number typed at the keyboard,
so a door that took bare numbers as scans let a counterfeit label pass and recorded it as a
scan. The pharmacist whose label is frost-covered must still work, so typing stays possible,
but only on purpose, with a reason, and recorded as typed by hand (custody and audit).

Which doors allow typing (`manual_allowed`): receipt, dispensing, preparation start, returns and
the scan station (a person with the kit in hand and an unreadable label), and the read-only
lookup /kits/scan. Packing at the cell bench, storing a kit in a tank, reporting it damaged from
the storage page and moving it between positions do not: the bench prints labels, and a site
kit whose label does not scan is reported by its number on its own page (POST
/api/v1/kits/{number}/damage) rather than moved about unidentified. The search box is a lookup,
not a door: it finds a typed number and records nothing.

Every refusal repeats at most a short prefix of the input (identifiers.shown) and never the
right check character; the words are the same for both arms (they depend on the code alone).
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import limits, qrpayload
from ..errors import InvalidInput
from ..identifiers import parse_kit_number, shown

MAX_CODE_LENGTH = 256  # a label code is 119 characters; anything far longer is not a scan
SCAN_OR_TYPE = ("Scan the kit's label, or tick 'typed by hand' and give the reason the label "
                "could not be scanned.")
SCAN_ONLY = ("Kits are not typed by hand here: scan the kit's label; a label that does not scan is reprinted "
             "before the kit moves on.")
TYPED_PREFIX = "typed by hand"


@dataclass(frozen=True)
class KitCode:
    """A kit number read at a door, and how: from a signed label, or typed by hand (`reason`)."""

    number: str
    reason: str | None = None  # set only for a marked manual entry

    @property
    def typed(self) -> bool:
        return self.reason is not None

    @property
    def method(self) -> str:
        """How the kit was identified, for custody conditions and audit reasons."""
        return f"{TYPED_PREFIX}: {self.reason}" if self.reason is not None else "label scanned"

    def note(self) -> str | None:
        """The audit reason of a door's event: None for a scan (nothing to explain)."""
        return self.method if self.typed else None


def is_marked(manual: object) -> bool:
    """A form checkbox ('on', 'true', '1', 'yes') or a JSON boolean."""
    if isinstance(manual, bool):
        return manual
    return str(manual or "").strip().lower() in ("on", "true", "1", "yes")


def refused_label(rejected: qrpayload.PayloadRejected) -> InvalidInput:
    return InvalidInput(f"Label refused: {str(rejected).rstrip('.')}.", field="code")


def read_code(code: str | None, secret_key: str, *, manual: object = False, reason: str | None = None,
              manual_allowed: bool = True) -> KitCode:
    """The kit number a door's input stands for, or InvalidInput naming the field.

    A label code (CB1:…) is verified whatever the manual mark says: a scanner's input never
    becomes a typed entry. A kit number is accepted only with the manual mark and a reason."""
    text = (code or "").strip()
    if not text:
        raise InvalidInput(SCAN_OR_TYPE, field="code")
    if len(text) > MAX_CODE_LENGTH:
        raise InvalidInput(f"{shown(text)!r} is not a kit label code or a kit number. {SCAN_OR_TYPE}",
                           field="code")
    if text.upper().startswith(qrpayload.PAYLOAD_PREFIX[:2]):  # no kit number starts "CB": B is not in it
        try:
            return KitCode(qrpayload.verify_payload(text, secret_key))
        except qrpayload.PayloadRejected as rejected:
            raise refused_label(rejected) from None
    if not manual_allowed:
        raise InvalidInput(f"{shown(text)!r} is not a scanned label code. {SCAN_ONLY}",
                           field="manual" if is_marked(manual) else "code")
    if not is_marked(manual):
        raise InvalidInput(f"{shown(text)!r} is not a scanned label code: a kit number alone is not a scan. "
                           f"{SCAN_OR_TYPE}", field="code")
    try:
        number = parse_kit_number(text)
    except ValueError as error:
        message = str(error).strip().rstrip(".")
        raise InvalidInput(f"{message[0].upper()}{message[1:]}.", field="code") from None
    why = limits.text(reason, "manual_reason", "reason for typing by hand", "label")
    if not why:
        raise InvalidInput("Say why the kit number was typed by hand (e.g. the label is frosted over).",
                           field="manual_reason")
    return KitCode(number, " ".join(why.split()))
