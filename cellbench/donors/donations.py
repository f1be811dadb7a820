"""Donations: identified by an ISBT 128 DIN or a SEC donation sequence, stored exactly as received
and found again in any of their spellings."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from .. import audit, clock, identifiers, inputs, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..models import Donation, Donor, Role
from .common import IDENTIFIER_MAX, ISBT128, SEC, not_future


@dataclass(frozen=True)
class ParsedIdentifier:
    system: str  # ISBT128 | SEC
    keys: frozenset[str]  # what makes two spellings the same donation
    check_character: str | None  # the computed check character of a DIN


def _isbt_keys(din13: str) -> frozenset[str]:
    return frozenset({f"DIN:{din13}"})


def _sec_keys(sec: identifiers.SecDonationSequence) -> frozenset[str]:
    keys = {f"SEC:{sec.sequence}"}
    # Art. 10b(1)(b): the unique donation number may itself be an ISBT 128 DIN, and a DIN is
    # globally unique; a SEC-DI carrying a registered DIN is that same donation.
    try:
        din = identifiers.parse_din(sec.donation_number, require_check=False)
        keys.add(f"DIN:{din.din}")
    except ValueError:
        pass
    return frozenset(keys)


def parse_identifier(text: str, *, field: str = "identifier", require_check: bool = False) -> ParsedIdentifier:
    """Read a donation identifier: 'SEC ...' is a SEC donation sequence, anything else an ISBT 128
    DIN (the same rule as identifiers.parse_donation_id). A check character or flag check value
    inside the DIN is verified; whether it matches is said, never what it should be, so that a
    misread label is re-read rather than 'corrected' to what the screen suggests."""
    if text.strip().upper().startswith("SEC"):
        try:
            sec = identifiers.parse_sec_donation(text)
        except ValueError as error:
            raise InvalidInput(f"Not a SEC donation identification sequence: {error}.", field=field) from None
        return ParsedIdentifier(SEC, _sec_keys(sec), None)
    try:
        din = identifiers.parse_din(text, require_check=require_check)
    except ValueError as error:
        if "should be" in str(error):  # the typed check character or flag check value is wrong
            raise InvalidInput("The check character (or barcode check value) in this DIN does not match it: "
                               "re-read the DIN and the boxed character on the label (do not correct it by hand).",
                               field=field) from None
        raise InvalidInput(f"Not an ISBT 128 donation identification number: {error}.", field=field) from None
    return ParsedIdentifier(ISBT128, _isbt_keys(din.din), din.check_character)


def _stored_keys(donation: Donation) -> frozenset[str]:
    # Stored identifiers were verified when registered; their check characters were entered apart.
    return parse_identifier(donation.identifier, require_check=False).keys


def donation_by_identifier(session: Session, text: str | None, *, field: str = "donation") -> Donation:
    """Find a donation by its identifier in any of its spellings (as stored, or as scanned or typed:
    barcode data with '=' and flags, grouped with spaces, with or without its check character)."""
    wanted = inputs.optional_text(text, field, "donation identification", IDENTIFIER_MAX)
    if not wanted:
        raise InvalidInput("Give the donation identification.", field=field)
    exact = session.scalars(select(Donation).where(col(Donation.identifier) == wanted)).first()
    if exact is not None:
        return exact
    # A hand-typed DIN without its check character is not protected against typing errors, so
    # only a verified one (or barcode data) may find a donation stored in another spelling.
    keys = parse_identifier(wanted, field=field, require_check=True).keys
    for donation in session.scalars(select(Donation)):
        if _stored_keys(donation) & keys:
            return donation
    raise NotFound(f"No donation '{wanted}'.", field=field)


def register_donation(session: Session, actor: Actor, donor: Donor, identifier: str | None,
                      check_character: str | None, donated_on: date | str | None, *,
                      today: date | None = None) -> Donation:
    """Operators register a donation for a donor, its identifier stored exactly as received.

    For an ISBT 128 DIN the operator also types the eye-readable check character from the box on
    the label (ISO/IEC 7064 MOD 37-2); a mismatch is refused. Only surrounding whitespace, which
    a scanner's Enter or Tab suffix adds and which no identifier contains, is not kept.
    """
    users.require_role(actor, Role.operator)
    received = inputs.optional_text(identifier, "identifier", "donation identification", IDENTIFIER_MAX)
    if not received:
        raise InvalidInput("The donation identification is required (scan it or type it as printed).",
                           field="identifier")
    parsed = parse_identifier(received)
    typed_check = inputs.optional_text(check_character, "check_character", "check character", IDENTIFIER_MAX).upper()
    if parsed.system == ISBT128:
        if not typed_check:
            raise InvalidInput("Type the check character printed in the box after the DIN.", field="check_character")
        if len(typed_check) != 1:
            raise InvalidInput("The check character is the single character printed in the box after the DIN.",
                               field="check_character")
        if typed_check != parsed.check_character:
            raise InvalidInput(f"The check character {typed_check} does not match this DIN: re-read the DIN and "
                               "the boxed character on the label. Nothing was saved.", field="check_character")
    elif typed_check:
        raise InvalidInput("A SEC donation sequence has no check character: leave the field empty.",
                           field="check_character")
    donated = inputs.past_day(donated_on, "donated_on", "donation date")
    not_future(donated, today or clock.today(), "donated_on", "donation date")
    if donor.consent_date is not None and donated < donor.consent_date:
        raise InvalidInput(f"The donation date is before the donor's consent ({donor.consent_date.isoformat()}): "
                           "consent comes first.", field="donated_on")
    if session.get_bind().dialect.name == "postgresql":
        # The same donation has several spellings (barcode data, grouped, with or without its check
        # character), so the unique identifier column cannot catch two of them registered at the
        # same moment by two workers. Registrations are rare: let them take turns.
        session.execute(text("LOCK TABLE donation IN SHARE ROW EXCLUSIVE MODE"))
    for other in session.scalars(select(Donation)):
        if _stored_keys(other) & parsed.keys:
            owner = session.get(Donor, other.donor_id)
            raise Conflict(f"This donation is already registered as {other.identifier} "
                           f"(donor {owner.code if owner else other.donor_id}).", field="identifier")
    if donor.id is None:
        raise NotFound("Register the donor before their donations.", field="donor")
    donation = Donation(donor_id=donor.id, identifier=received, id_system=parsed.system,
                        check_character=typed_check or None, donated_on=donated, created_at=utcnow())
    session.add(donation)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"Donation {received} was registered by someone else at the same moment.",
                       field="identifier") from None
    audit.record(session, actor, "donation registered", "donation", received, field="donation",
                 new={"donor": donor.code, "id_system": parsed.system, "check_character": donation.check_character,
                      "donated_on": donated.isoformat()})
    audit.record(session, actor, "donation registered", "donor", donor.code, field="donation", new=received)
    return donation


def donations_of(session: Session, donor: Donor) -> list[Donation]:
    return list(session.scalars(select(Donation).where(col(Donation.donor_id) == donor.id)
                                .order_by(col(Donation.donated_on), col(Donation.id))))


def donor_of(session: Session, donation: Donation) -> Donor:
    donor = session.get(Donor, donation.donor_id)
    if donor is None:
        raise NotFound(f"Donation {donation.identifier} names no registered donor.", field="donor")
    return donor
