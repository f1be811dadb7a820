"""Identifiers people read, type and scan: ISBT 128 donation numbers and blinded kit numbers.

Pure functions, no database. Every refusal is a ValueError whose message tells a lab operator
what to look at on the label ("check character should be H, got X").
"""
from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Container
from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------
# ISBT 128 Donation Identification Number (Data Structure 001) and ISO/IEC 7064 MOD 37-2
# ---------------------------------------------------------------------------------------------

# ISO 7064 MOD 37-2 character values as ISBT 128 uses them: 0-9 -> 0-9, A-Z -> 10-35, '*' -> 36.
MOD37_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*"

# First character of the facility identification number: A-N, P-Z or 1-9 (no letter O, no zero,
# which ISBT 128 keeps apart from the numeric look-alikes), then four digits, two year digits and
# a six-digit sequence number.
_DIN_BODY = re.compile(r"[A-NP-Z1-9][0-9]{4}[0-9]{2}[0-9]{6}")
_FLAGS = re.compile(r"[0-9]{2}")

# Flag values 60-96 are not process-control flags but the check value (60 + checksum) of the DIN.
_FLAG_CHECK_BASE = 60


def isbt128_check_value(din13: str) -> int:
    """The ISO/IEC 7064 MOD 37-2 checksum (0-36) of a 13-character DIN, as ISBT 128 computes it.

    Iterative form of the weighted sum (each character weighted 2^n, n its position from the
    right): it gives the same result without big powers and is how the standard describes it.
    """
    value = 0
    for char in din13:
        position_value = MOD37_ALPHABET.find(char)
        if position_value < 0:
            raise ValueError(f"character {char!r} cannot occur in an ISBT 128 DIN")
        value = ((value + position_value) * 2) % 37
    return (38 - value) % 37


def isbt128_check_character(din13: str) -> str:
    """The eye-readable check character printed in the box after the DIN."""
    return MOD37_ALPHABET[isbt128_check_value(din13)]


@dataclass(frozen=True)
class DonationIdentificationNumber:
    """An ISBT 128 DIN, split into its parts; `as_received` is kept exactly as it was entered."""

    facility_code: str  # FIN, 5 characters
    year: str  # 2 digits, as printed
    sequence: str  # 6 digits
    flags: str | None  # 2 digits when given (barcode or eye-readable flags), else None
    check_character: str  # always the computed, verified check character
    as_received: str

    @property
    def din(self) -> str:
        """The 13-character DIN proper (no data identifier, flags or check character)."""
        return f"{self.facility_code}{self.year}{self.sequence}"

    @property
    def eye_readable(self) -> str:
        """The DIN as printed for people: grouped, flags (if any), boxed check character."""
        flags = f" {self.flags}" if self.flags else ""
        return f"{self.facility_code} {self.year} {self.sequence}{flags} [{self.check_character}]"


def parse_din(text: str, *, require_check: bool = True) -> DonationIdentificationNumber:
    """Parse and verify a DIN as scanned or typed.

    Accepted forms (spaces anywhere are ignored; lower case is read as upper case):
      * barcode data ``=G12349865432100``: data identifier '=', 13 characters, 2 flag digits;
      * typed ``G123498654321H`` (DIN + boxed check character), optionally with the flags
        between them: ``G12349865432100H``;
      * ``G123498654321`` or DIN + flags without check character only when `require_check`
        is False or the input is barcode data: a barcode read is protected by the symbology's
        own check; a hand-typed DIN without its check character is not protected at all.

    A flag pair of 60-96 is the barcode form of the check value and is verified too.
    Nothing is ever auto-corrected: a mismatch is refused.
    """
    original = text
    compact = "".join(text.split()).upper()
    from_barcode = compact.startswith("=")
    if from_barcode:
        compact = compact[1:]
    if not compact:
        raise ValueError("the donation identification number is empty")
    if not _DIN_BODY.fullmatch(compact[:13]):
        raise ValueError(
            f"{compact!r} is not an ISBT 128 DIN: expected 13 characters, a facility code "
            "(letter or digit and 4 digits), 2 year digits and a 6-digit sequence number"
        )
    din, rest = compact[:13], compact[13:]
    flags: str | None = None
    typed_check: str | None = None
    if len(rest) == 1:
        typed_check = rest
    elif len(rest) == 2 and _FLAGS.fullmatch(rest):
        flags = rest
    elif len(rest) == 3 and _FLAGS.fullmatch(rest[:2]):
        flags, typed_check = rest[:2], rest[2]
    elif rest:
        raise ValueError(
            f"DIN {din}: unexpected characters {rest!r} after it; expected the 2 flag digits "
            "and/or the single check character printed in the box"
        )

    expected = isbt128_check_character(din)
    if typed_check is not None and typed_check != expected:
        raise ValueError(
            f"DIN {din}: check character should be {expected}, got {typed_check}. "
            "Re-read the DIN and the boxed character on the label; do not correct it by hand"
        )
    flag_value = int(flags) if flags is not None else None
    flag_check = flag_value is not None and _FLAG_CHECK_BASE <= flag_value <= _FLAG_CHECK_BASE + 36
    if flag_check and flag_value is not None and flag_value - _FLAG_CHECK_BASE != isbt128_check_value(din):
        raise ValueError(
            f"DIN {din}: flag check value should be {_FLAG_CHECK_BASE + isbt128_check_value(din)}, "
            f"got {flags}. Re-scan the barcode"
        )
    if typed_check is None and not flag_check and require_check and not from_barcode:
        raise ValueError(
            f"DIN {din}: type the check character printed in the box after the DIN as well "
            "(it catches typing errors)"
        )
    return DonationIdentificationNumber(
        facility_code=din[:5], year=din[5:7], sequence=din[7:13], flags=flags,
        check_character=expected, as_received=original,
    )


@dataclass(frozen=True)
class SecDonationSequence:
    """SEC donation identification sequence (SEC-DI): country, tissue establishment, donation.

    Accepted only when marked with the 'SEC' prefix, so it is never confused with a DIN. The
    unique donation number carries no check character of its own, so it cannot be verified.
    """

    country: str  # ISO 3166 alpha-2
    establishment_code: str  # 6 alphanumeric characters
    donation_number: str  # 13 alphanumeric characters (may itself be an ISBT 128 DIN)
    as_received: str

    @property
    def sequence(self) -> str:
        return f"{self.country}{self.establishment_code}{self.donation_number}"


_SEC_DI = re.compile(r"([A-Z]{2})([A-Z0-9]{6})([A-Z0-9]{13})")


def parse_sec_donation(text: str) -> SecDonationSequence:
    """Parse 'SEC <21-character SEC-DI>' (the product part after it, if present, is ignored)."""
    compact = text.strip().upper()
    if not compact.startswith("SEC"):
        raise ValueError("a SEC donation sequence must start with 'SEC'")
    # The SEC-DI is the first 21 characters after the prefix; the SEC-PI (product part) may
    # follow after a space or on the next line, and is not a donation identifier.
    parts = compact[3:].split()
    matched = _SEC_DI.fullmatch(parts[0]) if parts else None
    if matched is None:
        raise ValueError(
            "SEC donation sequence should be 21 characters after 'SEC': 2-letter country code, "
            "6-character tissue establishment code, 13-character donation number"
        )
    country, establishment, donation = matched.groups()
    return SecDonationSequence(country, establishment, donation, as_received=text)


def parse_donation_id(text: str) -> DonationIdentificationNumber | SecDonationSequence:
    """A donation identifier as received: 'SEC ...' for a SEC-DI, anything else as an ISBT 128 DIN."""
    if text.strip().upper().startswith("SEC"):
        return parse_sec_donation(text)
    return parse_din(text)


# ---------------------------------------------------------------------------------------------
# Kit numbers
# ---------------------------------------------------------------------------------------------

# 19 characters that survive smudged print, handwriting and being read aloud on the emergency
# line. Left out, so that no two remaining characters are look-alikes: 0 O Q D (round shapes),
# 1 I L (strokes), 2 Z, 5 S, 8 B, G (next to 6), U V (each other) and N (M and N are confused
# in handwriting and over the phone). Kept: 3 4 6 7 9 and A C E F H J K M P R T W X Y.
# 19 is prime, which the check character below relies on.
KIT_ALPHABET = "34679ACEFHJKMPRTWXY"
_KIT_VALUE = {char: value for value, char in enumerate(KIT_ALPHABET)}
KIT_BODY_LENGTH = 8  # 19^8 = 1.7e10 numbers: a guessed number is a valid kit ~1 in 10^7 times
KIT_NUMBER_LENGTH = KIT_BODY_LENGTH + 2 + 1  # 'XXXX-XXXX-C'

# Check character: a weighted sum modulo the prime p = 19, with the body characters weighted
# 9, 8, ..., 2 from the left and the check character weighted 1, chosen so that the total is
# 0 mod 19. Why this and not ISO 7064 MOD 37-36 or Damm:
#   * a single substitution a -> b at weight w changes the sum by w*(b-a); w is 1..9 and
#     |b-a| is 1..18, neither a multiple of the prime 19, so the product never is: always caught;
#   * swapping characters at positions i and j changes the sum by (w_i - w_j)*(a-b); all nine
#     weights are distinct and differ by less than 19, so every transposition (adjacent or
#     not, the check character included) is caught;
#   * the check character comes from the same look-alike-free alphabet, which MOD 37-36 cannot
#     give for a 19-character alphabet, and unlike Damm it needs no quasigroup table.
# tests/test_identifiers.py proves both claims exhaustively on sample numbers.
_KIT_WEIGHTS = tuple(range(KIT_BODY_LENGTH + 1, 1, -1))  # 9..2
_KIT_MODULUS = len(KIT_ALPHABET)
assert _KIT_MODULUS == 19 and max(_KIT_WEIGHTS) < _KIT_MODULUS


def kit_check_character(body: str) -> str:
    """The check character for an 8-character kit number body (no hyphens)."""
    if len(body) != KIT_BODY_LENGTH:
        raise ValueError(f"a kit number body has {KIT_BODY_LENGTH} characters, got {len(body)}")
    total = sum(weight * _kit_value(char) for weight, char in zip(_KIT_WEIGHTS, body, strict=True))
    return KIT_ALPHABET[(-total) % _KIT_MODULUS]


def format_kit_number(compact: str) -> str:
    """'K7QX4MHTW' -> 'K7QX-4MHT-W' (groups of four are what people copy without losing place)."""
    return f"{compact[:4]}-{compact[4:8]}-{compact[8:]}"


def shown(text: str, limit: int = 24) -> str:
    """What a refusal may repeat of an input: its first `limit` characters, with '…' when it went on.
    A refusal that echoed the whole input sent a 1 MB scan straight back, into the audit trail too."""
    text = text.strip()
    return text if len(text) <= limit else f"{text[:limit]}…"


def parse_kit_number(text: str) -> str:
    """Read a kit number as typed or scanned and return it in its printed form 'XXXX-XXXX-C'.

    Lenient about case, spaces and hyphens; strict about everything else: a character that
    never occurs in kit numbers is named rather than guessed at, and a wrong check character
    is refused (the number was mistyped or is not a cellbench kit). The refusal never says
    which check character would have been right: that would turn the check into a calculator
    for anyone making a counterfeit label, and it repeats only a short prefix of the input.
    """
    compact = "".join(ch for ch in text[:64].upper() if ch not in " -\t\r\n")
    if not compact:
        raise ValueError("the kit number is empty")
    for char in compact:
        if char not in _KIT_VALUE:
            hint = " (kit numbers never use it: check the label)" if char.isalnum() else ""
            raise ValueError(f"kit number {shown(text)!r}: character {char!r} is not valid{hint}")
    if len(compact) != KIT_BODY_LENGTH + 1 or len(text) > 64:
        raise ValueError(
            f"kit number {shown(text)!r} has {len(compact) if len(text) <= 64 else 'too many'} characters; "
            f"a kit number has {KIT_BODY_LENGTH + 1}, printed as XXXX-XXXX-X"
        )
    if compact[-1] != kit_check_character(compact[:-1]):
        raise ValueError(
            f"kit number {format_kit_number(compact)}: the check character does not match. "
            "The number was mistyped or misread; re-enter it from the label"
        )
    return format_kit_number(compact)


def is_valid_kit_number(text: str) -> bool:
    try:
        parse_kit_number(text)
    except ValueError:
        return False
    return True


def random_kit_number() -> str:
    """A fresh random kit number. Each character is drawn independently from `secrets`, so the
    numbers carry no order, date, arm or sequence information."""
    body = "".join(secrets.choice(KIT_ALPHABET) for _ in range(KIT_BODY_LENGTH))
    return format_kit_number(body + kit_check_character(body))


def new_kit_number(
    existing: Callable[[str], bool] | Container[str] = frozenset(), *, max_attempts: int = 64
) -> str:
    """A random kit number not already taken.

    `existing` is either a container of issued numbers (printed form) or a callable answering
    "is this number taken?" (for example a database lookup). The database's unique constraint
    stays the last word; this only makes a collision practically never reach it.
    """
    is_taken = existing if callable(existing) else existing.__contains__
    for _ in range(max_attempts):
        candidate = random_kit_number()
        if not is_taken(candidate):
            return candidate
    raise RuntimeError(
        f"no free kit number after {max_attempts} random draws: the number space is exhausted "
        "or the 'existing' check always answers True"
    )


def new_kit_numbers(count: int, existing: Callable[[str], bool] | Container[str] = frozenset()) -> list[str]:
    """`count` distinct new kit numbers, none of them in `existing`."""
    is_taken = existing if callable(existing) else existing.__contains__
    issued: list[str] = []
    seen: set[str] = set()
    for _ in range(count):
        number = new_kit_number(lambda candidate: candidate in seen or is_taken(candidate))
        issued.append(number)
        seen.add(number)
    return issued


def _kit_value(char: str) -> int:
    try:
        return _KIT_VALUE[char]
    except KeyError:
        raise ValueError(f"character {char!r} is not used in kit numbers") from None
