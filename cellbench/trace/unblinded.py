"""Traceability for unblinded roles: from any one identifier (donor code, donation identification,
lot number, vial code, kit number, participant number) to everything linked to it, both ways:

    donor → donation → lot → vials → kits → participants (their visits and administrations)

Down from what was found: everything made from it and everyone who received it. Up from it: what it
was made from, back to the donor. (A kit's units and arm are in the sealed compartment, so every
look is an audit event; run this in a write transaction. Only supply manager, QA and QP reach it.)
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import or_, select
from sqlmodel import Session, SQLModel, col

from .. import kits, sealed, users
from ..accountability import site as accountability
from ..audit import Actor
from ..errors import InvalidInput, NotFound
from ..identifiers import parse_kit_number
from ..models import (
    Administration,
    BlindedLot,
    Donation,
    Donor,
    Kit,
    Lot,
    Participant,
    Role,
    Site,
    SpecVersion,
    Study,
    Vial,
    Visit,
    saved_id,
)
from .kits import DOSE_NAMES

READERS = (Role.supply_manager, Role.qa, Role.qp)
M = TypeVar("M", bound=SQLModel)
Contents = tuple[str | None, list[tuple[int, Vial, Lot]]]  # a kit's arm and its units (dose, vial, lot)


@dataclass
class Trace:
    query: str
    found: str  # what the identifier turned out to be, e.g. "lot ASC-2026-0101"
    donors: list[dict] = field(default_factory=list)
    donations: list[dict] = field(default_factory=list)
    lots: list[dict] = field(default_factory=list)
    vials: list[dict] = field(default_factory=list)
    kits: list[dict] = field(default_factory=list)
    recipients: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        return vars(self).copy()


class _Walk:
    """Collects linked ids level by level; opens each kit in the compartment at most once."""

    def __init__(self, session: Session, actor: Actor):
        self.s, self.actor = session, actor
        self.donors: set[int] = set()
        self.donations: set[int] = set()
        self.lots: set[int] = set()
        self.vials: set[int] = set()
        self.kits: set[int] = set()
        self.units: dict[int, Contents] = {}  # kit id -> (arm, [(dose, vial, lot)])

    def open_kit(self, kit: Kit) -> Contents:
        return self.open_kits([kit])[saved_id(kit)]

    def open_kits(self, kits: Iterable[Kit]) -> dict[int, Contents]:
        """The kits' contents, the ones not yet opened read together (two statements a chunk, not
        two a kit: a lot's kits run to hundreds)."""
        kits = list(kits)
        new = [kit for kit in kits if saved_id(kit) not in self.units]
        for start in range(0, len(new), 500):
            self.units.update(sealed.contents_of_kits(self.s, self.actor, new[start:start + 500]))
        return {saved_id(kit): self.units[saved_id(kit)] for kit in kits}

    # up: what something was made from
    def up_from_participants(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        kit_ids = set(self.s.scalars(select(col(Visit.kit_id)).where(col(Visit.participant_id).in_(ids),
                                                                     col(Visit.kit_id).is_not(None))))
        kit_ids |= set(self.s.scalars(select(col(Administration.kit_id))
                                      .join(Visit, col(Visit.id) == col(Administration.visit_id))
                                      .where(col(Visit.participant_id).in_(ids))))
        self.up_from_kits(self.s.scalars(select(Kit).where(col(Kit.id).in_(kit_ids))))

    def up_from_kits(self, found: Iterable[Kit]) -> None:
        lots: set[int] = set()
        for kit_id, (_, units) in self.open_kits(found).items():
            self.kits.add(kit_id)
            for _, vial, lot in units:
                self.vials.add(saved_id(vial))
                lots.add(saved_id(lot))
        self.up_from_lots(lots)

    def up_from_lots(self, ids: Iterable[int]) -> None:
        ids = set(ids)
        self.lots |= ids
        donation_ids = {d for d in self.s.scalars(select(col(Lot.donation_id)).where(col(Lot.id).in_(ids))) if d}
        self.donations |= donation_ids
        self.donors |= set(self.s.scalars(select(col(Donation.donor_id)).where(col(Donation.id).in_(donation_ids))))

    # down: what was made from something, and who received it
    def down_from_donors(self, ids: Iterable[int]) -> None:
        ids = set(ids)
        self.donors |= ids
        self.down_from_donations(self.s.scalars(select(col(Donation.id)).where(col(Donation.donor_id).in_(ids))))

    def down_from_donations(self, ids: Iterable[int]) -> None:
        ids = set(ids)
        self.donations |= ids
        self.down_from_lots(self.s.scalars(select(col(Lot.id)).where(col(Lot.donation_id).in_(ids))))

    def down_from_lots(self, ids: Iterable[int]) -> None:
        ids = set(ids)
        self.lots |= ids
        self.vials |= set(self.s.scalars(select(col(Vial.id)).where(col(Vial.lot_id).in_(ids))))
        for lot in self.s.scalars(select(Lot).where(col(Lot.id).in_(ids))).all():
            self.kits |= set(self.open_kits(sealed.kits_containing_lot(self.s, self.actor, lot, why="trace")))

    def down_from_vial(self, vial: Vial) -> None:
        lot = accountability.stored(self.s, Lot, vial.lot_id, "lot")
        for kit in sealed.kits_containing_lot(self.s, self.actor, lot, why="trace"):
            _, units = self.open_kit(kit)
            if any(v.id == vial.id for _, v, _ in units):
                self.kits.add(saved_id(kit))
                return


Found = Donor | Donation | Lot | Vial | Kit | list[Participant]


def _one(session: Session, model: type[M], column: str, values: set[str]) -> M | None:
    return session.scalars(select(model).where(col(getattr(model, column)).in_(values))).first()


def _find(session: Session, text: str) -> Found:
    """The row (or the participants) this identifier names, as typed or in capitals."""
    typed = {text, text.upper()}
    row = (_one(session, Donor, "code", typed) or _one(session, Donation, "identifier", typed)
           or _one(session, Lot, "number", typed) or _one(session, Vial, "code", typed))
    if row is not None:
        return row
    try:
        number = parse_kit_number(text)
    except ValueError:
        number = None
    if number is not None and (kit := _one(session, Kit, "number", {number})) is not None:
        return kit
    upper = text.upper()
    people = list(session.scalars(select(Participant).where(or_(col(Participant.randomisation_number) == upper,
                                                                col(Participant.screening_number) == upper))))
    if people:
        return people
    raise NotFound(f"Nothing in cellbench is called '{text}': give a donor code, donation identification, lot "
                   "number, vial code, kit number or participant number.", field="q")


def trace(session: Session, actor: Actor, query: str | None) -> Trace:
    users.require_role(actor, *READERS)
    text = (query or "").strip()
    if not text:
        raise InvalidInput("Give a donor code, donation identification, lot number, vial code, kit number or "
                           "participant number.", field="q")
    row = _find(session, text)
    walk = _Walk(session, actor)
    if isinstance(row, Donor):
        walk.down_from_donors([saved_id(row)])
        found = f"donor {row.code}"
    elif isinstance(row, Donation):
        walk.donors.add(row.donor_id)
        walk.down_from_donations([saved_id(row)])
        found = f"donation {row.identifier}"
    elif isinstance(row, Lot):
        walk.up_from_lots([saved_id(row)])
        walk.down_from_lots([saved_id(row)])
        found = f"lot {row.number}"
    elif isinstance(row, Vial):
        walk.vials.add(saved_id(row))
        walk.up_from_lots([row.lot_id])
        walk.down_from_vial(row)
        found = f"vial {row.code}"
    elif isinstance(row, Kit):
        walk.up_from_kits([row])
        found = f"kit {row.number}"
    else:
        walk.up_from_participants(saved_id(p) for p in row)
        found = "participant " + ", ".join(p.randomisation_number or p.screening_number for p in row)
    return _render(session, walk, text, found)


def _render(session: Session, walk: _Walk, query: str, found: str) -> Trace:
    out = Trace(query, found)
    donors = {d.id: d for d in session.scalars(select(Donor).where(col(Donor.id).in_(walk.donors)))}
    donations = {d.id: d for d in session.scalars(select(Donation).where(col(Donation.id).in_(walk.donations)))}
    lot_rows = session.execute(select(Lot, col(SpecVersion.kind))
                               .join(SpecVersion, col(SpecVersion.id) == col(Lot.spec_version_id))
                               .where(col(Lot.id).in_(walk.lots)).order_by(col(Lot.number))).all()
    lot_numbers = {lot.id: lot.number for lot, _ in lot_rows}
    out.donors = [{"code": d.code, "consent_date": d.consent_date}
                  for d in sorted(donors.values(), key=lambda d: d.code)]
    out.donations = [{"identifier": d.identifier, "id_system": d.id_system, "donated_on": d.donated_on,
                      "eligibility": str(getattr(d.eligibility, "value", d.eligibility)),
                      "donor": donors[d.donor_id].code if d.donor_id in donors else None}
                     for d in sorted(donations.values(), key=lambda d: d.identifier)]
    out.lots = [{"number": lot.number, "kind": kind, "state": str(getattr(lot.state, "value", lot.state)),
                 "expiry": lot.expiry, "donation": donations[lot.donation_id].identifier
                 if lot.donation_id in donations else None} for lot, kind in lot_rows]
    in_kit = {vial.id: (kit_id, dose) for kit_id, (_, units) in walk.units.items() for dose, vial, _ in units}
    kit_rows = {k.id: k for k in session.scalars(select(Kit).where(col(Kit.id).in_(walk.kits)))}
    vials = session.scalars(select(Vial).where(col(Vial.id).in_(walk.vials)).order_by(col(Vial.code)))
    out.vials = [{"code": v.code, "lot": lot_numbers.get(v.lot_id), "state": v.state,
                  "storage_position": v.storage_position,
                  "kit": kit_rows[in_kit[v.id][0]].number if v.id in in_kit and in_kit[v.id][0] in kit_rows else None,
                  "dose": DOSE_NAMES.get(in_kit[v.id][1]) if v.id in in_kit and in_kit[v.id][0] in kit_rows else None}
                 for v in vials]
    sites = {s.id: s for s in session.scalars(select(Site))}
    study_codes = dict(session.execute(select(col(Study.id), col(Study.code))).all())
    # the blinded lots of these kits only: reading every one (thousands after some years) made the
    # trace grow with the years whatever it found
    blinded = dict(session.execute(select(col(BlindedLot.id), col(BlindedLot.code)).where(
        col(BlindedLot.id).in_({k.blinded_lot_id for k in kit_rows.values() if k.blinded_lot_id is not None}))).all())
    visits = session.execute(select(Visit, Participant)
                             .join(Participant, col(Participant.id) == col(Visit.participant_id))
                             .where(col(Visit.kit_id).in_(walk.kits))
                             .order_by(col(Participant.randomisation_number), col(Visit.treatment))).all()
    by_kit = {v.kit_id: (v, p) for v, p in visits}
    for kit in sorted(kit_rows.values(), key=lambda k: k.number):
        arm, units = walk.units.get(saved_id(kit), (None, []))
        visit, person = by_kit.get(kit.id, (None, None))
        out.kits.append({"number": kit.number, "study": study_codes.get(kit.study_id), "arm": arm,
                         "blinded_lot": blinded.get(kit.blinded_lot_id), "state": kits.state_label(kit.state),
                         "place": accountability.place_name(sites.get(kit.site_id)),
                         "lots": sorted({lot.number for _, _, lot in units}),
                         "participant": (person.randomisation_number or person.screening_number) if person else None,
                         "treatment": visit.treatment if visit else None})
    given: dict[int, list[dict]] = {}
    if visits:
        visit_ids = [v.id for v, _ in visits]
        for a in session.scalars(select(Administration).where(col(Administration.visit_id).in_(visit_ids))
                                 .order_by(col(Administration.dose))):
            given.setdefault(a.visit_id, []).append({"dose": DOSE_NAMES.get(a.dose, f"dose {a.dose}"),
                                                     "at": a.administered_at, "by": a.by_name})
    for visit, person in visits:
        site = sites.get(person.site_id)
        out.recipients.append({"study": study_codes.get(person.study_id), "participant": person.randomisation_number,
                               "screening_number": person.screening_number, "site": site.code if site else None,
                               "arm": walk.units.get(visit.kit_id, (None, []))[0], "treatment": visit.treatment,
                               "visit_state": visit.state, "kit": kit_rows[visit.kit_id].number,
                               "administrations": given.get(visit.id, []), "unblinded_at": person.unblinded_at})
    return out
