"""Blinded trace: which participant received which kit, at which visit, and each kit's chain of
custody from packaging to administration or destruction.

Pharmacists, investigators and monitors read this, so it is built only from what is the same for
both arms (kit numbers, blinded lots, kit states, visits, administrations, custody events, the kit's
audit events they may see) and never imports `sealed`. The trace from donor to recipient, which
needs the compartment, is trace_unblinded.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import or_, select
from sqlmodel import Session, col

from .. import kits, users
from ..audit import Actor
from ..errors import InvalidInput, NotFound
from ..identifiers import parse_kit_number
from ..models import Administration, BlindedLot, CustodyEvent, Kit, Participant, Role, Shipment, Site, Study, Visit

READERS = (Role.pharmacist, Role.investigator, Role.monitor, Role.supply_manager, Role.qa, Role.qp)
DOSE_NAMES = {1: "left submandibular gland", 2: "right submandibular gland"}


@dataclass
class AdministrationLine:
    dose: int
    site: str
    at: datetime
    by: str


@dataclass
class Line:
    """One kit at one participant's visit."""

    study: str
    participant: str | None  # randomisation number
    screening_number: str
    site: str
    treatment: int
    visit_state: str
    target_date: date
    kit: str
    blinded_lot: str | None
    kit_state: str  # as blinded users read it
    administrations: list[AdministrationLine] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"study": self.study, "participant": self.participant, "screening_number": self.screening_number,
                "site": self.site, "treatment": self.treatment, "visit_state": self.visit_state,
                "target_date": self.target_date, "kit_number": self.kit, "blinded_lot": self.blinded_lot,
                "kit_state": self.kit_state,
                "administrations": [{"dose": a.dose, "site": a.site, "at": a.at, "by": a.by}
                                    for a in self.administrations]}


@dataclass
class KitTrace:
    query: str
    found: str  # "kit …" or "participant …"
    lines: list[Line]
    kit_without_participant: str | None = None  # a kit not (yet) given to anyone


def _participants(session: Session, text: str) -> list[Participant]:
    return list(session.scalars(select(Participant).where(or_(col(Participant.randomisation_number) == text,
                                                              col(Participant.screening_number) == text))
                                .order_by(col(Participant.study_id), col(Participant.id))))


def kit_participants(session: Session, actor: Actor, query: str | None) -> KitTrace:
    """From a kit number to its participant, or from a participant number to its kits."""
    users.require_role(actor, *READERS)
    text = (query or "").strip()
    if not text:
        raise InvalidInput("Give a kit number or a participant number.", field="q")
    visit_filter, found, kit_alone = None, "", None
    try:
        number = parse_kit_number(text)
    except ValueError:
        number = None
    if number is not None:
        kit = session.scalars(select(Kit).where(col(Kit.number) == number)).first()
        if kit is not None:
            visit_filter, found = col(Visit.kit_id) == kit.id, f"kit {kit.number}"
            kit_alone = kit.number
    if visit_filter is None:
        people = _participants(session, text.upper())
        if not people:
            raise NotFound(f"No kit or participant '{text}'.", field="q")
        visit_filter = col(Visit.participant_id).in_([p.id for p in people])
        found = "participant " + ", ".join(p.randomisation_number or p.screening_number for p in people)
    rows = session.execute(
        select(Visit, Participant, col(Study.code), col(Site.code), Kit, col(BlindedLot.code))
        .join(Participant, col(Participant.id) == col(Visit.participant_id))
        .join(Study, col(Study.id) == col(Participant.study_id))
        .join(Site, col(Site.id) == col(Participant.site_id)).join(Kit, col(Kit.id) == col(Visit.kit_id))
        .outerjoin(BlindedLot, col(BlindedLot.id) == col(Kit.blinded_lot_id))
        .where(visit_filter)
        .order_by(col(Study.code), col(Participant.randomisation_number), col(Visit.treatment))).all()
    given: dict[int | None, list[AdministrationLine]] = {visit.id: [] for visit, *_ in rows}
    if given:
        for a in session.scalars(select(Administration).where(col(Administration.visit_id).in_(list(given)))
                                 .order_by(col(Administration.visit_id), col(Administration.dose))):
            given[a.visit_id].append(AdministrationLine(a.dose, DOSE_NAMES.get(a.dose, f"dose {a.dose}"),
                                                        a.administered_at, a.by_name))
    lines = [Line(study, p.randomisation_number, p.screening_number, site, v.treatment, v.state, v.target_date,
                  kit.number, lot, kits.state_label(kit.state), given[v.id])
             for v, p, study, site, kit, lot in rows]
    return KitTrace(text, found, lines, kit_alone if kit_alone and not lines else None)


# --- the chain of custody of one kit ---------------------------------------------------------------


@dataclass
class Link:
    at: datetime
    source: str  # "custody" | "record" (the kit's audit trail) | "administration"
    what: str
    from_place: str | None
    to_place: str | None
    who: str
    detail: str | None

    def as_json(self) -> dict:
        return vars(self).copy()


def _change(event) -> str:
    """An audit event of the kit in words: the state it moved between (or the field it set), and why."""
    if event.field == "state":
        change = f"{event.old_value} → {event.new_value}" if event.old_value else event.new_value
    else:
        change = f"{event.field}: {event.new_value}" if event.field else event.new_value
    return "; ".join(x for x in (change, event.reason) if x)


def custody_chain(session: Session, actor: Actor, kit: Kit) -> list[Link]:
    """The kit's story in time order: its own audit events this viewer may see (from the kit
    number's issue and packaging on), every hand-over or move, and each dose given."""
    users.require_role(actor, *READERS)
    links = [Link(e.at, "record", e.action, None, None, e.user_name, _change(e))
             for e in kits.history(session, actor, kit)]
    shipments = dict(session.execute(select(col(Shipment.id), col(Shipment.number)).where(
        col(Shipment.id).in_(select(col(CustodyEvent.shipment_id)).where(col(CustodyEvent.kit_id) == kit.id)))).all())
    doses = session.scalars(select(Administration).where(col(Administration.kit_id) == kit.id)
                            .order_by(col(Administration.dose))).all()
    for c in session.scalars(select(CustodyEvent).where(col(CustodyEvent.kit_id) == kit.id)
                             .order_by(col(CustodyEvent.id))):
        if doses and c.action == "administered":  # each dose is its administration record, with the time given
            continue
        detail = "; ".join(x for x in (f"shipment {shipments[c.shipment_id]}" if c.shipment_id in shipments else None,
                                       c.condition) if x)
        links.append(Link(c.at, "custody", c.action.replace("_", " "), c.from_place, c.to_place, c.by_name,
                          detail or None))
    links += [Link(a.administered_at, "administration", "administered", None, DOSE_NAMES.get(a.dose, f"dose {a.dose}"),
                   a.by_name, None) for a in doses]
    order = {"record": 0, "custody": 1, "administration": 2}
    return sorted(links, key=lambda link: (link.at, order[link.source]))


def kit_for_chain(session: Session, number: str) -> Kit:
    return kits.by_number(session, number, field="number")

