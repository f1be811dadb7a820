"""Accountability by place and blinded lot, and reconciliation (destruction: destruction.py).

Everything here is computed from kit states, blinded lots and places, which are the same for both
arms, so the pharmacist and the monitor read it: this module never imports `sealed`. (Accountability
by manufacturing lot, which needs the compartment, is lot_accountability.py, for unblinded roles.)

    released = in stock + in transit + dispensed + not administered + returned + withdrawn
               + damaged + missing + destroyed          (temporarily unavailable shown apart)

A reconciliation is a signed physical count of one blinded lot's kits on hand at one place (the
cell bench, counted by the supply manager, or a site pharmacy, counted by its pharmacist), compared
with what cellbench expects there. A count that differs is a discrepancy: it must be explained,
and it blocks destruction until a balanced count is recorded.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, SQLModel, col

from .. import audit, custody, inputs, kit_counts, limits, pagination, signatures, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Forbidden, InvalidInput, NotFound
from ..kit_categories import CATEGORIES as CATEGORIES  # re-exported: the report's columns read it here
from ..kit_categories import balance, category_of
from ..models import (
    AuditEvent,
    BlindedLot,
    Kit,
    KitCount,
    Meaning,
    Reconciliation,
    Role,
    Site,
    Study,
    StudySite,
    User,
    saved_id,
)
from ..statemachine import claim

READERS = (Role.pharmacist, Role.monitor, Role.supply_manager, Role.qa)
# Who counts stock (and records destructions) somewhere; which of them, the place decides (acts_at).
COUNTERS = (Role.pharmacist, Role.supply_manager)
BENCH = "bench"  # the cell bench in URLs and forms; a site is named by its code

# --- rows --------------------------------------------------------------------------------------------

M = TypeVar("M", bound=SQLModel)


def stored(session: Session, model: type[M], row_id: int | None, what: str) -> M:
    """The row a stored reference points to (a study, a blinded lot, a person)."""
    row = session.get(model, row_id) if row_id is not None else None
    if row is None:
        raise NotFound(f"No such {what}.")
    return row


def study_of(session: Session, study_id: int) -> Study:
    return stored(session, Study, study_id, "study")


# --- places ---------------------------------------------------------------------------------------


def place_name(site: Site | None) -> str:
    return f"{site.code}, {site.name}" if site else custody.CELL_BENCH


def place_key(site: Site | None) -> str:
    return site.code if site else BENCH


def place_of(session: Session, study: Study, key: str | None, *, field: str = "place",
             reader: Actor | None = None) -> Site | None:
    """The cell bench (None) or a site of the study, by its code; for a `reader` of other sites
    and studies (a site role), a place outside them is as unknown as one that is not the study's
    (the bench's stock of its studies it reads, as it reads their kits: users.sees_kit)."""
    text = (key or "").strip()
    if not text:
        raise InvalidInput(f"Choose a place: '{BENCH}' for the cell bench, or a site code.", field=field)
    site = None if text.lower() == BENCH else session.scalars(
        select(Site).join(StudySite, col(StudySite.site_id) == col(Site.id))
        .where(col(StudySite.study_id) == study.id, col(Site.code) == text.upper())).first()
    if (site is None and text.lower() != BENCH) or (reader is not None and not users.sees_kit(reader, site, study)):
        raise NotFound(f"{text} is not a site of {study.code}.", field=field)
    return site


def acts_at(actor: Actor, site: Site | None) -> tuple[Role, ...]:
    """Who counts and destroys at a place: the pharmacy at a site, the supply manager at the bench."""
    return (Role.pharmacist,) if site is not None else (Role.supply_manager,)


def may_act_at(actor: Actor, site: Site | None) -> bool:
    return bool(actor.roles & set(acts_at(actor, site)))


def refusal_at(actor: Actor, site: Site | None, what: str) -> str | None:
    """Why this actor may not count or destroy at the place, or None."""
    if may_act_at(actor, site):
        return users.site_refusal(actor, site)
    who = "the site's pharmacist" if site is not None else "the supply manager"
    return f"At {place_name(site)}, {what} is done by {who}."


def require_at(actor: Actor, site: Site | None, what: str) -> None:
    if why := refusal_at(actor, site, what):
        raise Forbidden(why)


# --- the balance ------------------------------------------------------------------------------------


@dataclass
class Row:
    """One blinded lot at one place."""

    site: Site | None
    blinded_lot: BlindedLot
    counts: dict[str, int]
    last_change: datetime | None  # the latest state change of a kit of this lot at this place
    latest: Reconciliation | None = None

    @property
    def place(self) -> str:
        return place_name(self.site)

    @property
    def place_key(self) -> str:
        return place_key(self.site)

    @property
    def status(self) -> str:
        """not counted | discrepancy | changed since | balanced"""
        if self.latest is None:
            return "not counted"
        if not self.latest.balanced:
            return "discrepancy"
        if self.last_change is not None and self.last_change >= self.latest.at:
            return "changed since"
        return "balanced"

    def as_json(self) -> dict:
        rec = self.latest
        return {"place": self.place_key, "place_name": self.place, "blinded_lot": self.blinded_lot.code,
                "expiry": self.blinded_lot.expiry, "counts": self.counts, "status": self.status,
                "last_change": self.last_change,
                "latest_count": {"counted_in_stock": rec.counted_in_stock, "balanced": rec.balanced, "at": rec.at,
                                 "expected_on_hand": expected_of(rec).get("on_hand")} if rec else None}


def rows(session: Session, study: Study, *, site_key: str | None = None, blinded_lot: BlindedLot | None = None,
         with_changes: bool = False, reader: Actor | None = None) -> list[Row]:
    """The balance of every blinded lot at every place where it has kits (a `reader`'s sites and
    studies only, when one is given). `with_changes` also finds each row's latest kit state change
    (one audit look-up per kit: for one row, not a whole study)."""
    # the running counts (kit_counts.py): a few rows per blinded lot and place, whatever the kits
    where = [col(KitCount.study_id) == study.id, col(KitCount.kits) != 0]
    kit_where = [col(Kit.study_id) == study.id, col(Kit.blinded_lot_id).is_not(None)]
    if site_key is not None:
        site = place_of(session, study, site_key, reader=reader)
        where.append(col(KitCount.place) == (site.id if site else kit_counts.BENCH))
        kit_where.append(place_filter(Kit, site))
    if reader is not None:
        where += kit_counts.within(reader, col(KitCount.place), col(KitCount.study_id))
        kit_where += users.scope_conditions(reader, site=col(Kit.site_id), study=col(Kit.study_id), bench_too=True)
    if blinded_lot is not None:
        where.append(col(KitCount.blinded_lot_id) == blinded_lot.id)
        kit_where.append(col(Kit.blinded_lot_id) == blinded_lot.id)
    counts: dict[tuple, dict[str, int]] = defaultdict(dict)
    for place, lot_id, state, count in session.execute(
            select(col(KitCount.place), col(KitCount.blinded_lot_id), col(KitCount.state), col(KitCount.kits))
            .where(*where)):
        name = category_of(state)
        if name is not None:
            key = (kit_counts.place_site(place), lot_id)
            counts[key][name] = counts[key].get(name, 0) + count
    last = {}
    if with_changes:
        last = {(site_id, lot_id): at for site_id, lot_id, at in session.execute(
            select(col(Kit.site_id), col(Kit.blinded_lot_id), func.max(col(AuditEvent.at)))
            .join(AuditEvent, (col(AuditEvent.entity_type) == "kit") & (col(AuditEvent.entity_id) == col(Kit.number))
                  & (col(AuditEvent.field) == "state"))
            .where(*kit_where).group_by(col(Kit.site_id), col(Kit.blinded_lot_id)))}
    sites = {s.id: s for s in session.scalars(select(Site))}
    lot_ids = sorted({lot_id for _, lot_id in counts})  # only the blinded lots shown, not the study's every one
    lots = {b.id: b for b in session.scalars(select(BlindedLot).where(col(BlindedLot.id).in_(lot_ids)))}
    latest = latest_of_lots(session, study, lot_ids)
    found = [Row(sites.get(site_id), lots[lot_id], balance(c), last.get((site_id, lot_id)),
                 latest.get((site_id, lot_id))) for (site_id, lot_id), c in counts.items()]
    return sorted(found, key=lambda r: (r.site is not None, r.site.code if r.site else "", r.blinded_lot.code))


def latest_of_lots(session: Session, study: Study, lot_ids: list[int]) -> dict[tuple, Reconciliation]:
    """The latest signed count of each (site id, blinded lot id) of these blinded lots."""
    latest: dict[tuple, Reconciliation] = {}
    for rec in session.scalars(select(Reconciliation).where(col(Reconciliation.study_id) == study.id,
                                                            col(Reconciliation.blinded_lot_id).in_(lot_ids))
                               .order_by(col(Reconciliation.at), col(Reconciliation.id))):
        latest[(rec.site_id, rec.blinded_lot_id)] = rec
    return latest


def row_of(session: Session, study: Study, site: Site | None, blinded_lot: BlindedLot) -> Row:
    found = rows(session, study, site_key=place_key(site), blinded_lot=blinded_lot, with_changes=True)
    if found:
        return found[0]
    return Row(site, blinded_lot, balance({}), None, latest_reconciliation(session, study, site, blinded_lot))


# --- reconciliation -------------------------------------------------------------------------------


def expected_of(rec: Reconciliation) -> dict[str, int]:
    """What cellbench expected, by category, when the count was made."""
    return json.loads(rec.expected)


def place_filter(model: type[Kit] | type[Reconciliation], site: Site | None) -> ColumnElement[bool]:
    """Rows at the place: the cell bench is no site."""
    column = col(model.site_id)
    return column.is_(None) if site is None else column == site.id


def latest_reconciliation(session: Session, study: Study, site: Site | None,
                          blinded_lot: BlindedLot) -> Reconciliation | None:
    return session.scalars(select(Reconciliation).where(col(Reconciliation.study_id) == study.id,
                                                        col(Reconciliation.blinded_lot_id) == blinded_lot.id,
                                                        place_filter(Reconciliation, site))
                           .order_by(col(Reconciliation.at).desc(), col(Reconciliation.id).desc()).limit(1)).first()


def _reconciliation_query(study: Study, site: Site | None, blinded_lot: BlindedLot | None, any_place: bool,
                          reader: Actor | None) -> Select:
    query = select(Reconciliation).where(col(Reconciliation.study_id) == study.id)
    if reader is not None:
        query = users.within(query, reader, site=col(Reconciliation.site_id), study=col(Reconciliation.study_id),
                             bench_too=True)
    if not any_place:
        query = query.where(place_filter(Reconciliation, site))
    if blinded_lot is not None:
        query = query.where(col(Reconciliation.blinded_lot_id) == blinded_lot.id)
    return query


def reconciliations(session: Session, study: Study, site: Site | None = None, blinded_lot: BlindedLot | None = None,
                    *, any_place: bool = False, limit: int = 200, reader: Actor | None = None) -> list[Reconciliation]:
    query = _reconciliation_query(study, site, blinded_lot, any_place, reader)
    newest_first = (col(Reconciliation.at).desc(), col(Reconciliation.id).desc())
    return list(session.scalars(query.order_by(*newest_first).limit(limit)))


# Newest first, by time then id (the id breaks ties): counts are the same rows for both arms.
RECONCILIATION_ORDER = pagination.Order("reconciliations", (col(Reconciliation.at), col(Reconciliation.id)),
                                        newest_first=True)


def reconciliation_page(session: Session, ask: pagination.Ask, study: Study, site: Site | None = None,
                        blinded_lot: BlindedLot | None = None, *, any_place: bool = False,
                        reader: Actor | None = None) -> pagination.Page[Reconciliation]:
    """A page of the study's signed counts (at a place, of a blinded lot), newest first."""
    return pagination.page(session, _reconciliation_query(study, site, blinded_lot, any_place, reader),
                           RECONCILIATION_ORDER, ask)


@signatures.content_rule("reconciliation")
def _reconciliation_content(session: Session, reconciliation_id: str) -> dict:
    rec = session.get(Reconciliation, int(reconciliation_id))
    if rec is None:
        raise NotFound("No such reconciliation.")
    site = session.get(Site, rec.site_id) if rec.site_id else None
    return {"study": study_of(session, rec.study_id).code, "place": place_key(site),
            "blinded_lot": stored(session, BlindedLot, rec.blinded_lot_id, "blinded lot").code,
            "expected": expected_of(rec),
            "counted_in_stock": rec.counted_in_stock, "balanced": rec.balanced, "comment": rec.comment,
            "by_user": rec.by_user, "at": rec.at}


def reconcile(session: Session, user: User, password: str | None, study: Study, site: Site | None,
              blinded_lot: BlindedLot, counted_in_stock: object, comment: str | None) -> Reconciliation:
    """Record a signed physical count of the blinded lot's kits on hand at the place."""
    actor = users.actor(session, user)
    require_at(actor, site, "counting stock")
    if blinded_lot.study_id != study.id:
        raise InvalidInput(f"Blinded lot {blinded_lot.code} is not of {study.code}.", field="blinded_lot")
    counted = inputs.whole(counted_in_stock, "counted_in_stock", "number of kits you counted", minimum=0)
    comment = limits.text(comment, "comment", "comment", "comment")
    # Each count is a signed record of its own; the blinded lot taken first, the figures it is
    # compared with are not moved by another count or move of its kits half-way.
    claim(session, blinded_lot)
    expected = row_of(session, study, site, blinded_lot).counts
    balanced = counted == expected["on_hand"]
    if not balanced and comment is None:
        raise InvalidInput(f"You counted {counted} kits and cellbench expects {expected['on_hand']} on hand: "
                           "say what you found (a comment is required for a difference).", field="comment")
    rec = Reconciliation(study_id=saved_id(study), site_id=site.id if site else None,
                         blinded_lot_id=saved_id(blinded_lot), expected=json.dumps(expected, sort_keys=True),
                         counted_in_stock=counted, balanced=balanced, comment=comment, by_user=saved_id(user),
                         at=utcnow())
    session.add(rec)
    session.flush()
    rec.signature_id = signatures.sign(session, user, password or "", Meaning.performed, "reconciliation",
                                       str(rec.id), reason=comment).id
    audit.record(session, actor, "reconciliation recorded" if balanced else "reconciliation discrepancy",
                 "blinded_lot", blinded_lot.code, field=f"counted on hand at {place_key(site)}",
                 old=expected["on_hand"], new=counted, reason=comment)
    session.flush()
    return rec


def latest_unbalanced() -> Select:
    """The latest signed counts, per blinded lot and place, that differ from cellbench's: a row is
    in discrepancy until a later count of it balances. Unordered and unscoped (callers narrow it)."""
    newer = aliased(Reconciliation)
    same_place = (col(newer.site_id) == col(Reconciliation.site_id)) | (
        col(newer.site_id).is_(None) & col(Reconciliation.site_id).is_(None))
    later = (col(newer.at) > col(Reconciliation.at)) | (
        (col(newer.at) == col(Reconciliation.at)) & (col(newer.id) > col(Reconciliation.id)))
    superseded = select(col(newer.id)).where(col(newer.study_id) == col(Reconciliation.study_id),
                                             col(newer.blinded_lot_id) == col(Reconciliation.blinded_lot_id),
                                             same_place, later).exists()
    # `~balanced`, written as the partial index of the counts that differ is (models.UNBALANCED)
    return select(Reconciliation).where(~col(Reconciliation.balanced), ~superseded)


def discrepancies(reader: Actor | None = None) -> Select:
    """The latest counts that differ (a `reader`'s sites and studies only), newest first: a query,
    for work queues to count and to read one of."""
    query = latest_unbalanced()
    if reader is not None:
        query = users.within(query, reader, site=col(Reconciliation.site_id), study=col(Reconciliation.study_id))
    return query.order_by(col(Reconciliation.at).desc(), col(Reconciliation.id).desc())
