"""The accountability list: one page of rows (a blinded lot at a place), the totals over every row,
and how many rows stand in discrepancy, each read in a few statements whatever the number of
blinded lots (ten years of a study give thousands).

Rows come from the running counts (kit_counts.py) grouped by place and blinded lot, newest blinded
lot first within a place, keyset-paged (pagination.py) on the counter table's own index. The order
is by place and blinded lot ids: the same rows for both arms, so nothing in it follows an arm.
A discrepancy (the latest signed count of a row differs from cellbench's) is found from the signed
counts, not by reading every row: the filter `discrepant` pages those counts, newest first.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlmodel import Session, col

from .. import kit_counts, pagination, users
from ..audit import Actor
from ..models import BlindedLot, KitCount, PlaceCount, Reconciliation, Site, Study
from .site import Row, balance, category_of, latest_of_lots, latest_unbalanced, row_of

# Newest blinded lot first within a place (sites by id, the cell bench last): ids, the same for both arms.
ROW_ORDER = pagination.Order("accountability rows", (col(KitCount.place), col(KitCount.blinded_lot_id)),
                             newest_first=True)
# A discrepant row's latest count, newest first.
DISCREPANCY_ORDER = pagination.Order("accountability discrepancies",
                                     (col(Reconciliation.at), col(Reconciliation.id)), newest_first=True)


@dataclass
class Listing:
    """A page of rows with what is true of every row: the totals by category and the number of
    rows whose latest count differs."""

    page: pagination.Page[Row]
    totals: dict[str, int]
    discrepant: int


def _counter_conditions(study: Study, site: Site | str | None, reader: Actor | None,
                        blinded_lot: BlindedLot | None = None,
                        table: type[KitCount] | type[PlaceCount] = KitCount) -> list:
    """The running counts of the study (at one place when `site` is a Site or None for the bench;
    anywhere when it is "all"; of one blinded lot), within a `reader`'s sites and studies: the
    blinded-lot counters, or their sums by place (PlaceCount, which has no blinded lot)."""
    where = [col(table.study_id) == study.id, col(table.kits) != 0]
    if blinded_lot is not None:
        where.append(col(KitCount.blinded_lot_id) == blinded_lot.id)
    if site != "all":
        where.append(col(table.place) == (site.id if isinstance(site, Site) else kit_counts.BENCH))
    if reader is not None:
        where += kit_counts.within(reader, col(table.place), col(table.study_id))
    return where


def latest_discrepancies(study: Study, site: Site | str | None, reader: Actor | None,
                         blinded_lot: BlindedLot | None = None) -> Select:
    """The rows of the study (at the place) whose latest signed count differs from cellbench's, as
    their counts; unordered (the caller pages or counts them)."""
    query = latest_unbalanced().where(col(Reconciliation.study_id) == study.id)
    if blinded_lot is not None:
        query = query.where(col(Reconciliation.blinded_lot_id) == blinded_lot.id)
    if site != "all":
        site_id = site.id if isinstance(site, Site) else None
        query = query.where(col(Reconciliation.site_id).is_(None) if site_id is None
                            else col(Reconciliation.site_id) == site_id)
    if reader is not None:
        query = users.within(query, reader, site=col(Reconciliation.site_id), study=col(Reconciliation.study_id),
                             bench_too=True)
    return query


def totals(session: Session, study: Study, site: Site | str | None = "all", reader: Actor | None = None,
           blinded_lot: BlindedLot | None = None) -> dict:
    """The balance over every row: one aggregate of the running counts by state. Over all blinded
    lots it sums their sums by place (place_counts.py: a dozen rows a place), not a row per blinded
    lot (thousands at ten years: the sum grew tenfold with them)."""
    table: type[KitCount] | type[PlaceCount] = KitCount if blinded_lot is not None else PlaceCount
    summed: dict[str, int] = defaultdict(int)
    for state, n in session.execute(select(col(table.state), func.sum(col(table.kits)))
                                    .where(*_counter_conditions(study, site, reader, blinded_lot, table))
                                    .group_by(col(table.state))):
        if (name := category_of(state)) is not None:
            summed[name] += int(n or 0)
    return balance(summed)


def rows_of(session: Session, study: Study, pairs: list[tuple[int | None, int]]) -> list[Row]:
    """The rows of these (site id, blinded lot id) pairs, in their order: their counts, blinded
    lots, sites and latest counts in one read each."""
    if not pairs:
        return []
    lot_ids = sorted({lot for _, lot in pairs})
    counts: dict[tuple, dict[str, int]] = defaultdict(dict)
    for place, lot_id, state, n in session.execute(
            select(col(KitCount.place), col(KitCount.blinded_lot_id), col(KitCount.state), col(KitCount.kits))
            .where(col(KitCount.study_id) == study.id, col(KitCount.blinded_lot_id).in_(lot_ids))):
        if (name := category_of(state)) is not None:
            key = (kit_counts.place_site(place), lot_id)
            counts[key][name] = counts[key].get(name, 0) + n
    lots = {b.id: b for b in session.scalars(select(BlindedLot).where(col(BlindedLot.id).in_(lot_ids)))}
    site_ids = sorted({s for s, _ in pairs if s is not None})
    sites = {s.id: s for s in session.scalars(select(Site).where(col(Site.id).in_(site_ids)))} if site_ids else {}
    latest = latest_of_lots(session, study, lot_ids)
    return [Row(sites.get(site_id) if site_id else None, lots[lot_id], balance(counts.get((site_id, lot_id), {})),
                None, latest.get((site_id, lot_id))) for site_id, lot_id in pairs]


def listing(session: Session, ask: pagination.Ask, study: Study, site: Site | str | None = "all", *,
            discrepant: bool = False, blinded_lot: BlindedLot | None = None, reader: Actor | None = None) -> Listing:
    """A page of the study's rows (at the place; of the blinded lot; only those in discrepancy when
    `discrepant`), the totals over all of them, and how many are in discrepancy. One blinded lot at
    one place is its row with its latest kit change (row_of)."""
    found_discrepant = latest_discrepancies(study, site, reader, blinded_lot)
    if blinded_lot is not None and site != "all":
        place = site if isinstance(site, Site) else None
        row = row_of(session, study, place, blinded_lot)
        shown = pagination.Page([row] if not discrepant or row.status == "discrepancy" else [], None, True)
    elif discrepant:
        recs = pagination.page(session, found_discrepant, DISCREPANCY_ORDER, ask)
        pairs = [(rec.site_id, rec.blinded_lot_id) for rec in recs.rows]
        shown = pagination.Page(rows_of(session, study, pairs), recs.next, recs.first)
    else:
        grouped = (select(col(KitCount.place), col(KitCount.blinded_lot_id))
                   .where(*_counter_conditions(study, site, reader, blinded_lot))
                   .group_by(col(KitCount.place), col(KitCount.blinded_lot_id)))
        keys = pagination.page(session, grouped, ROW_ORDER, ask, key=tuple)
        pairs = [(kit_counts.place_site(place), lot_id) for place, lot_id in keys.rows]
        shown = pagination.Page(rows_of(session, study, pairs), keys.next, keys.first)
    number = session.scalar(select(func.count()).select_from(found_discrepant.subquery())) or 0
    return Listing(shown, totals(session, study, site, reader, blinded_lot), number)
