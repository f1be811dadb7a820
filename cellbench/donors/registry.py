"""Donors: registered under a pseudonym that cellbench issues, with their consent."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from .. import audit, clock, inputs, pagination, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..models import Donation, Donor, Eligibility, Role
from .common import CODE_MAX, DONOR_CODE, DONOR_CODE_HINT, not_future


def parse_donor_code(text: str | None) -> str:
    typed = inputs.optional_text(text, "code", "donor code", CODE_MAX)
    code = typed.upper()
    if not code:
        raise InvalidInput(f"The donor code is required: {DONOR_CODE_HINT}.", field="code")
    if any(ch.isspace() for ch in code):
        raise InvalidInput(f"A donor code has no spaces: {DONOR_CODE_HINT}. Never enter a donor's name.",
                           field="code")
    if not DONOR_CODE.fullmatch(code):
        raise InvalidInput(f"'{typed}' is not a donor code: use {DONOR_CODE_HINT}. Donor codes are "
                           "pseudonyms; names, initials and birth dates are never entered.", field="code")
    return code


def _number(code: str) -> int:
    """The number of a code parse_donor_code accepted."""
    matched = DONOR_CODE.fullmatch(code)
    if matched is None:
        raise InvalidInput(f"'{code}' is not a donor code: use {DONOR_CODE_HINT}.", field="code")
    return int(matched.group(1))


def next_donor_code(session: Session) -> str:
    """The code after the highest issued one: what the registration form suggests."""
    numbers = [int(m.group(1)) for c in session.scalars(select(col(Donor.code))) if (m := DONOR_CODE.fullmatch(c))]
    return f"D-{max(numbers, default=0) + 1:04d}"


def register_donor(session: Session, actor: Actor, code: str | None, consent_date: date | str | None,
                   consent_reference: str | None, *, today: date | None = None) -> Donor:
    """Operators register a donor under a pseudonym. No consent, no donor."""
    users.require_role(actor, Role.operator)
    code = parse_donor_code(code)
    consented = inputs.past_day(consent_date, "consent_date", "consent date")
    not_future(consented, today or clock.today(), "consent_date", "consent date")
    reference = inputs.optional_text(consent_reference, "consent_reference", "consent document reference", 100)
    if not reference:
        raise InvalidInput("The consent document reference is required: no consent, no donor.",
                           field="consent_reference")
    number = _number(code)
    for existing in session.scalars(select(col(Donor.code))):
        if (m := DONOR_CODE.fullmatch(existing)) and int(m.group(1)) == number:
            # D-0042 and D-00042 would be read as the same donor: one number, one donor.
            raise Conflict(f"Donor {existing} is already registered with this number.", field="code")
    donor = Donor(code=code, consent_date=consented, consent_reference=reference, created_at=utcnow())
    session.add(donor)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"Donor {code} was registered by someone else at the same moment.", field="code") from None
    audit.record(session, actor, "donor registered", "donor", code, field="consent",
                 new={"date": consented.isoformat(), "reference": reference})
    return donor


def donor_by_code(session: Session, code: str | None) -> Donor:
    typed = inputs.optional_text(code, "code", "donor code", CODE_MAX)
    donor = session.scalars(select(Donor).where(col(Donor.code) == typed.upper())).first()
    if donor is None:
        raise NotFound(f"No donor '{typed}'.", field="code")
    return donor


@dataclass
class DonorRow:
    donor: Donor
    donations: list[Donation]


# Newest donor first. The cursor holds a donor's id, sealed (pagination): ids are not shown.
DONOR_ORDER = pagination.Order("donors", (col(Donor.id),), newest_first=True)


def donor_page(session: Session, ask: pagination.Ask, eligibility: str | None = None) -> pagination.Page[DonorRow]:
    """A page of donors, newest first, each with its donations (oldest first); optionally only donors
    with a donation in one eligibility state."""
    query = select(Donor)
    if eligibility:
        if eligibility not in {e.value for e in Eligibility}:
            raise InvalidInput(f"Unknown eligibility '{eligibility}'.", field="eligibility")
        query = query.where(col(Donor.id).in_(select(col(Donation.donor_id))
                                              .where(col(Donation.eligibility) == eligibility)))
    found = pagination.page(session, query, DONOR_ORDER, ask)
    donations: dict[int, list[Donation]] = {}
    ids = [donor.id for donor in found.rows]
    for d in session.scalars(select(Donation).where(col(Donation.donor_id).in_(ids))
                             .order_by(col(Donation.donated_on), col(Donation.id))):
        donations.setdefault(d.donor_id, []).append(d)
    return pagination.Page([DonorRow(donor, donations.get(donor.id or 0, [])) for donor in found.rows],
                           found.next, found.first)
