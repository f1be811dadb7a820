"""Find anything by its code: one field on every page takes a lot number, vial code, kit number (or
the kit label's QR code as scanned), blinded lot code, shipment number, participant number, donor
code, donation number or deviation number, and opens its page.

Within the reader's permissions and the blind, and without telling what lies outside them: each kind
of thing is looked for only by the roles that may read its page (a pharmacist never looks among lots
or donors), and a site person only among their own sites and studies (the scope rules of
users/scope.py). Whatever is not found the reader may see gets one answer, "Nothing found for …",
the same words whether it exists elsewhere or nowhere. A kit is always opened on its blinded page,
which reads the same for both arms; nothing here reads the sealed compartment.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from sqlalchemy import or_, select
from sqlmodel import Session, col

from . import custody, deviations, donors, kits, lots, pharmacy, qrpayload, users
from .audit import Actor
from .errors import DomainError, NotFound
from .models import BlindedLot, Deviation, Donation, Donor, Lot, Participant, Role, Study, Vial

LONGEST = 200  # longer than any code or label payload: not looked for


@dataclass(frozen=True)
class Match:
    """One thing found: what it is, its code as printed, and its page."""

    kind: str  # in plain words: "lot", "kit", "participant"...
    reference: str
    label: str  # as the person reads it: "Lot ASC-2026-0001"
    href: str

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "reference": self.reference, "label": self.label, "href": self.href}


@dataclass(frozen=True)
class Answer:
    """What a search found for this reader: where to go when it is one thing."""

    query: str
    matches: tuple[Match, ...]
    label_refusal: str | None = None  # why a scanned kit label was refused (says nothing of what exists)

    @property
    def only(self) -> Match | None:
        return self.matches[0] if len(self.matches) == 1 else None

    @property
    def message(self) -> str | None:
        if self.matches:
            return None
        return f"Nothing found for “{self.query}”." if self.query else "Type or scan a code to find it."

    def as_json(self) -> dict:
        return {"query": self.query, "matches": [m.as_json() for m in self.matches], "message": self.message,
                "label_refusal": self.label_refusal}


def _q(text: str) -> str:
    return quote(text, safe="")


# --- the finders: each looks for one kind of thing, for the roles that may read its page ------------

Finder = Callable[[Session, Actor, str, str], list[Match]]
LOT_PAGE_READERS = frozenset(lots.READERS)
# The supply manager reads a lot's release page only (release.READERS). Not imported from there:
# the release package reaches the sealed compartment, and this module serves blinded roles too.
LOT_READERS = LOT_PAGE_READERS | {Role.supply_manager}


def _lot_href(actor: Actor, number: str) -> str:
    return f"/lots/{_q(number)}" if actor.roles & LOT_PAGE_READERS else f"/lots/{_q(number)}/release"


def find_lots(session: Session, actor: Actor, text: str, _secret: str) -> list[Match]:
    number = session.scalar(select(col(Lot.number)).where(col(Lot.number) == text.upper()))
    return [Match("lot", number, f"Lot {number}", _lot_href(actor, number))] if number else []


def find_vials(session: Session, actor: Actor, text: str, _secret: str) -> list[Match]:
    row = session.execute(select(col(Vial.code), col(Lot.number)).join(Lot, col(Lot.id) == col(Vial.lot_id))
                          .where(col(Vial.code) == text.upper())).first()
    if row is None:
        return []
    code, number = row
    return [Match("vial", code, f"Vial {code} of lot {number}", f"/lots/{_q(number)}#vials")]


def find_kits(session: Session, actor: Actor, text: str, secret: str) -> list[Match]:
    """A typed kit number or a scanned label: the kit's blinded page, for everyone (supply included:
    the unblinded view is one logged click further, never opened by a search)."""
    try:  # a lookup, not a scan door: a typed number finds its kit, and nothing is recorded
        kit = (kits.scan(session, text, secret, reader=actor) if text.upper().startswith("CB")
               else kits.by_number(session, text, reader=actor))
    except DomainError:  # not a kit number, a refused label, or not a kit this reader sees: all alike
        return []
    return [Match("kit", kit.number, f"Kit {kit.number}", f"/kits/{_q(kit.number)}")]


def find_blinded_lots(session: Session, actor: Actor, text: str, _secret: str) -> list[Match]:
    row = session.scalars(select(BlindedLot).where(col(BlindedLot.code) == text.upper())).first()
    if row is None or users.study_refusal(actor, row.study_id) is not None:
        return []
    return [Match("blinded lot", row.code, f"Blinded lot {row.code}", f"/blinded-lots/{_q(row.code)}")]


def find_shipments(session: Session, actor: Actor, text: str, _secret: str) -> list[Match]:
    try:
        shipment = custody.by_number(session, text, reader=actor)
    except NotFound:
        return []
    return [Match("shipment", shipment.number, f"Shipment {shipment.number}", f"/shipments/{_q(shipment.number)}")]


def find_participants(session: Session, actor: Actor, text: str, _secret: str) -> list[Match]:
    """By screening or randomisation number; the same number may be used in two studies."""
    number = text.upper()
    rows = session.execute(select(Participant, col(Study.code)).join(Study, col(Study.id) == col(Participant.study_id))
                           .where(or_(col(Participant.screening_number) == number,
                                      col(Participant.randomisation_number) == number))
                           .order_by(col(Study.code)))
    return [Match("participant", pharmacy.participant_number(p), f"Participant {pharmacy.participant_number(p)} "
                  f"of {code}", f"/participants/{_q(code)}/{_q(p.screening_number)}")
            for p, code in rows if users.sees(actor, p.site_id, p.study_id)]


def find_donors(session: Session, actor: Actor, text: str, _secret: str) -> list[Match]:
    code = session.scalar(select(col(Donor.code)).where(col(Donor.code) == text.upper()))
    found = [Match("donor", code, f"Donor {code}", f"/donors/{_q(code)}")] if code else []
    # A donation number is kept exactly as received (an ISBT 128 DIN or a SEC sequence).
    identifiers = session.scalars(select(col(Donation.identifier))
                                  .where(col(Donation.identifier).in_({text, text.upper()})))
    return found + [Match("donation", i, f"Donation {i}", f"/donations/{_q(i)}") for i in identifiers]


def find_deviations(session: Session, actor: Actor, text: str, _secret: str) -> list[Match]:
    number = session.scalar(select(col(Deviation.number)).where(col(Deviation.number) == text.upper()))
    return [Match("deviation", number, f"Deviation {number}", f"/deviations/{_q(number)}")] if number else []


# Who looks where: the roles that may open each kind's page.
FINDERS: tuple[tuple[frozenset[Role], Finder], ...] = (
    (LOT_READERS, find_lots),
    (LOT_PAGE_READERS, find_vials),
    (frozenset(kits.READERS), find_kits),
    (frozenset(kits.READERS), find_blinded_lots),
    (frozenset(custody.READERS), find_shipments),
    (frozenset(pharmacy.READERS), find_participants),
    (frozenset(donors.READERS), find_donors),
    (frozenset(deviations.READERS), find_deviations),
)


def _label_refusal(actor: Actor, text: str, secret: str) -> str | None:
    """Why a scanned kit label was refused, for a kit reader: it depends on the code alone (a label
    not issued by cellbench, or damaged), never on what exists."""
    if not actor.roles & kits.READERS or not text.upper().startswith(qrpayload.PAYLOAD_PREFIX[:2]):
        return None
    try:
        qrpayload.verify_payload(text, secret)
    except qrpayload.PayloadRejected as rejected:
        return f"This label was not issued by cellbench or is damaged: {rejected}."
    return None


def resolve(session: Session, actor: Actor, text: str | None, secret_key: str) -> Answer:
    """Everything `text` names that this reader may open (usually one thing, or nothing)."""
    typed = (text or "").strip()
    # No code holds a control character (a NUL would also be refused by PostgreSQL as a 500).
    if not typed or len(typed) > LONGEST or not typed.isprintable():
        return Answer("".join(c if c.isprintable() else "?" for c in typed[:LONGEST]), ())
    found: list[Match] = []
    for roles, finder in FINDERS:
        if actor.roles & roles:
            found += finder(session, actor, typed, secret_key)
    refusal = None if found else _label_refusal(actor, typed, secret_key)
    return Answer(typed, tuple(found), refusal)
