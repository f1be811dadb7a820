"""Accountability by manufacturing lot, for unblinded roles (supply manager, QA).

Which kits hold a lot's units is in the sealed compartment, so this lives apart from
accountability.py (which blinded roles reach) and is read in a write transaction: each look into
the compartment is an audit event. The balance uses the same categories as the blinded one.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlmodel import Session, col

from .. import kits, lots, pagination, sealed, users
from ..audit import Actor
from ..models import BlindedLot, Lot, Role, Site, SpecVersion, Study, Vial
from . import site as accountability

READERS = (Role.supply_manager, Role.qa)


@dataclass
class KitLine:
    number: str
    study: str
    blinded_lot: str
    place: str
    state: str
    state_label: str


@dataclass
class LotAccountability:
    lot: Lot
    kind: str  # asc | placebo
    vials: dict[str, int]  # by vial state (stored, kitted, ...)
    places: list[tuple[str, dict[str, int]]]  # (place, balance) per place
    total: dict[str, int]
    kits: list[KitLine] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"lot": self.lot.number, "kind": self.kind,
                "lot_state": str(getattr(self.lot.state, "value", self.lot.state)),
                "vials": self.vials, "total": self.total,
                "places": [{"place": place, "counts": counts} for place, counts in self.places],
                "kits": [vars(k) for k in self.kits]}


def for_lot(session: Session, actor: Actor, lot: Lot) -> LotAccountability:
    users.require_role(actor, *READERS)
    kind = session.scalar(select(col(SpecVersion.kind)).where(col(SpecVersion.id) == lot.spec_version_id))
    vials = dict(session.execute(select(col(Vial.state), func.count()).where(col(Vial.lot_id) == lot.id)
                                 .group_by(col(Vial.state))).all())
    held = sealed.kits_containing_lot(session, actor, lot, why="accountability by lot")
    sites = {s.id: s for s in session.scalars(select(Site))}
    study_codes = dict(session.execute(select(col(Study.id), col(Study.code))).all())
    # the blinded lots of these kits only (a study has thousands after some years)
    blinded = dict(session.execute(select(col(BlindedLot.id), col(BlindedLot.code))
                                   .where(col(BlindedLot.id).in_({k.blinded_lot_id for k in held}))).all())
    per_place: dict[str, Counter] = defaultdict(Counter)
    total: Counter = Counter()
    lines = []
    for kit in held:
        place = accountability.place_name(sites.get(kit.site_id))
        name = accountability.category_of(kit.state)
        if name is not None:
            per_place[place][name] += 1
            total[name] += 1
        lines.append(KitLine(kit.number, study_codes.get(kit.study_id, ""), blinded.get(kit.blinded_lot_id, ""), place,
                             str(getattr(kit.state, "value", kit.state)), kits.state_label(kit.state)))
    places = sorted(((place, accountability.balance(c)) for place, c in per_place.items()),
                    key=lambda pc: (pc[0] != accountability.place_name(None), pc[0]))
    return LotAccountability(lot, kind or "", vials, places, accountability.balance(total), lines)


def lot_by_number(session: Session, number: str | None) -> Lot:
    return lots.by_number(session, (number or "").strip().upper())


# Newest lot first (by id). Unblinded readers only: the order is the lots', not the kits'.
LOT_ORDER = pagination.Order("lots with units", (col(Lot.id),), newest_first=True)


def lots_with_units(session: Session, ask: pagination.Ask) -> pagination.Page[tuple[Lot, str]]:
    """A page of the lots with units, newest first, and their product kind: the index of the page.
    Each lot is asked whether it has a vial (one index probe), so a page reads its own lots only,
    not every vial of ten years (`lot.id IN (SELECT vial.lot_id ...)` listed them all first)."""
    has_units = select(col(Vial.id)).where(col(Vial.lot_id) == col(Lot.id)).exists()
    query = (select(Lot, col(SpecVersion.kind)).join(SpecVersion, col(SpecVersion.id) == col(Lot.spec_version_id))
             .where(has_units))
    return pagination.page(session, query, LOT_ORDER, ask, key=lambda row: (row[0].id,))
