"""What the supply manager's pages and API show (unblinded): a list by its public name, a packaging
run's kits with their contents, a blinded lot's composition by arm, a quarantine's kits with their
arms. Every read of the compartment here is a logged read (sealed), so callers run in a write
transaction."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from sqlalchemy import case, func, select
from sqlmodel import Session, col

from .. import kits, pagination, sealed, studies
from ..audit import Actor
from ..errors import NotFound
from ..models import (
    BlindedLot,
    Kit,
    KitCount,
    KitQuarantine,
    KitState,
    Lot,
    PackagingRun,
    Role,
    Signature,
    Study,
    User,
    Vial,
    saved_id,
)
from . import packaging
from .quarantine import members, quarantines

# Who reads the supply pages and API: supply acts, QA and QP read (QA decides on quarantines).
READERS = (Role.supply_manager, Role.qa, Role.qp)


def find_list(session: Session, actor: Actor, study: Study, kind: str, version: int) -> sealed.ListHeader:
    """A list by its public name (study, kind, version)."""
    if kind not in sealed.LIST_KINDS:
        raise NotFound(f"A list is a {' or a '.join(sealed.LIST_KINDS)}.", field="kind")
    for row in sealed.lists_of(session, actor, study):
        if row.kind == kind and row.version == version:
            return row
    raise NotFound(f"{study.code} has no {sealed.LIST_KINDS[kind]} version {version}.", field="version")


def signature_of(session: Session, signature_id: int | None) -> Signature | None:
    return session.get(Signature, signature_id) if signature_id else None


@dataclass
class KitUnits:
    kit: Kit
    arm: str | None
    units: list[tuple[int, Vial, Lot]]  # (dose, vial, lot)


# A run's kits in kit-number order (random numbers: the order says nothing of arms).
RUN_KIT_ORDER = pagination.Order("packaging run kits", (col(Kit.number),))


def run_kits(session: Session, actor: Actor, run: PackagingRun,
             ask: pagination.Ask) -> tuple[pagination.Page[KitUnits], int]:
    """A page of a run's kits, in kit-number order, each with its arm and units; and the run's size."""
    ids = sealed.kit_ids_of_run(session, actor, saved_id(run), why="packaging run page")
    found = pagination.page(session, select(Kit).where(col(Kit.id).in_(ids)), RUN_KIT_ORDER, ask)
    inside = sealed.contents_of_kits(session, actor, found.rows)
    rows = [KitUnits(kit, *inside[saved_id(kit)]) for kit in found.rows]
    return pagination.Page(rows, found.next, found.first), len(ids)


@dataclass
class LotShare:
    lot: str
    expiry: date | None
    kits: int
    by_state: dict[str, int]


def composition_by_arm(session: Session, actor: Actor, blinded: BlindedLot) -> dict[str, list[LotShare]]:
    """arm -> the manufacturing lots of that arm in the blinded lot, with their kits by state."""
    shares: dict[tuple[str, str], LotShare] = {}
    for row in sealed.composition(session, actor, saved_id(blinded)):
        share = shares.setdefault((row["arm"], row["lot"]), LotShare(row["lot"], row["expiry"], 0, {}))
        share.kits += row["kits"]
        share.by_state[row["state"]] = share.by_state.get(row["state"], 0) + row["kits"]
    by_arm: dict[str, list[LotShare]] = defaultdict(list)
    for (arm, _lot), share in sorted(shares.items()):
        by_arm[arm].append(share)
    return dict(by_arm)


def quarantine_kits(session: Session, actor: Actor, kq: KitQuarantine) -> list[tuple[Kit, str | None]]:
    """The quarantine's kits in kit-number order, each with its arm."""
    numbers = members(session, kq)
    rows = list(session.scalars(select(Kit).where(col(Kit.number).in_(numbers)).order_by(col(Kit.number)))) \
        if numbers else []
    ids = [saved_id(kit) for kit in rows]
    arms = sealed.arms_of_kits(session, actor, ids, why=f"quarantine {kq.number}") if rows else {}
    return [(kit, arms.get(saved_id(kit))) for kit in rows]


def lots_by_id(session: Session, ids: set[int]) -> dict[int, Lot]:
    """The manufacturing lots with these ids (those quarantines name)."""
    if not ids:
        return {}
    return {saved_id(lot): lot for lot in session.scalars(select(Lot).where(col(Lot.id).in_(ids)))}


def lots_of_quarantines(session: Session, rows: list[KitQuarantine]) -> dict[int, Lot]:
    """The manufacturing lots these quarantines name, by id."""
    return lots_by_id(session, {kq.lot_id for kq in rows if kq.lot_id})


def user_names(session: Session) -> dict[int, str]:
    return {saved_id(u): u.full_name for u in session.scalars(select(User))}


def arm_names(study: Study) -> dict[str, str]:
    return {arm.code: arm.name for arm in studies.definition(study).arms}


# Open quarantines first (they await a decision), then newest first: a DESC walk of (open?, id).
QUARANTINE_ORDER = pagination.Order(
    "quarantines", (case((col(KitQuarantine.state) == "open", 1), else_=0), col(KitQuarantine.id)), newest_first=True)


def quarantines_page(session: Session, ask: pagination.Ask, state: str | None = None) -> pagination.Page[KitQuarantine]:
    query = select(KitQuarantine)
    if state:
        query = query.where(col(KitQuarantine.state) == state)
    return pagination.page(session, query, QUARANTINE_ORDER, ask, key=lambda kq: (int(kq.state == "open"), kq.id))


# Newest packaging runs first (ids are made in order); blinded lots in code order. Neither holds an
# arm: these lists are the unblinded supply pages', and a blinded lot holds both arms.
RUN_ORDER = pagination.Order("packaging runs", (col(PackagingRun.id),), newest_first=True)
BLINDED_LOT_ORDER = pagination.Order("blinded lots", (col(BlindedLot.code),))
RUNS_SHOWN = 5  # newest runs a study shows on the overview; the rest are on the paged list
# A run packages at most MAX_KITS_PER_RUN kits: counting the kit numbers waiting further than that
# tells a packer nothing more, and would read every waiting kit of a study on every visit.
PLANNED_COUNTED = packaging.MAX_KITS_PER_RUN


@dataclass
class RunRow:
    run: PackagingRun
    blinded_code: str


@dataclass
class BlindedLotRow:
    blinded: BlindedLot
    total: int
    by_state: list[tuple[str, str, int]]  # (state, label, kits), in state order


def runs_page(session: Session, study: Study | None, ask: pagination.Ask) -> pagination.Page[RunRow]:
    """A page of packaging runs (of the study, if given), newest first, each with its blinded lot's code."""
    query = (select(PackagingRun, col(BlindedLot.code))
             .join(BlindedLot, col(BlindedLot.id) == col(PackagingRun.blinded_lot_id)))
    if study is not None:
        query = query.where(col(PackagingRun.study_id) == study.id)
    found = pagination.page(session, query, RUN_ORDER, ask, key=lambda row: (row[0].id,))
    return pagination.Page([RunRow(run, code) for run, code in found.rows], found.next, found.first)


def blinded_lots_page(session: Session, study: Study | None,
                      ask: pagination.Ask) -> pagination.Page[BlindedLotRow]:
    """A page of blinded lots in code order, each with its kits by state from the running counts
    (read for the page's lots only: a few rows a lot, whatever the number of lots)."""
    query = select(BlindedLot)
    if study is not None:
        query = query.where(col(BlindedLot.study_id) == study.id)
    found = pagination.page(session, query, BLINDED_LOT_ORDER, ask)
    ids = [saved_id(b) for b in found.rows]
    by_lot: dict[int, dict[str, int]] = defaultdict(dict)
    if ids:
        kept = (select(col(KitCount.blinded_lot_id), col(KitCount.state), func.sum(col(KitCount.kits)))
                .where(col(KitCount.blinded_lot_id).in_(ids))
                .group_by(col(KitCount.blinded_lot_id), col(KitCount.state)))
        for lot_id, state, n in session.execute(kept):
            if n:
                by_lot[lot_id][KitState(state).value] = int(n)
    rows = []
    for blinded in found.rows:
        counts = by_lot.get(saved_id(blinded), {})
        by_state = [(s.value, kits.state_label(s), counts[s.value]) for s in KitState if counts.get(s.value)]
        rows.append(BlindedLotRow(blinded, sum(counts.values()), by_state))
    return pagination.Page(rows, found.next, found.first)


def planned_waiting(session: Session, study: Study, up_to: int = PLANNED_COUNTED) -> int:
    """The study's kit numbers waiting to be packaged, counted on the index (study, state) only up
    to `up_to`: past that the figure changes nothing for its reader."""
    waiting = select(col(Kit.id)).where(col(Kit.study_id) == study.id, col(Kit.state) == KitState.planned.value)
    return session.scalar(select(func.count()).select_from(waiting.limit(up_to).subquery())) or 0


def runs_of_blinded_lot(session: Session, blinded: BlindedLot) -> list[PackagingRun]:
    """The runs that filled this blinded lot, oldest first (on the run's blinded-lot index)."""
    return list(session.scalars(select(PackagingRun).where(col(PackagingRun.blinded_lot_id) == blinded.id)
                                .order_by(col(PackagingRun.id))))


def blinded_codes_of(session: Session, ids: set[int | None]) -> dict[int, str]:
    """The codes of these blinded lots (those a page's rows name), by id."""
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return {saved_id(b): b.code for b in session.scalars(select(BlindedLot).where(col(BlindedLot.id).in_(wanted)))}


@dataclass
class StudySupply:
    """One study on the supply overview: its lists, its newest runs (`more_runs`: there are older
    ones), its open quarantines and the kit numbers left to package (up to PLANNED_COUNTED)."""

    study: Study
    arms: dict[str, str]
    lists: list[tuple[sealed.ListHeader, Signature | None]]
    runs: list[RunRow]
    more_runs: bool
    quarantines: list[KitQuarantine]
    planned: int


def overview(session: Session, actor: Actor, secret: str) -> tuple[list[StudySupply], list[KitQuarantine]]:
    """Every study's lists, newest runs, open quarantines and kit numbers left to package; and the
    open quarantines. Nothing here grows with the years but the lists (a few a study). The lists
    are a logged read."""
    open_q = quarantines(session, "open")
    rows = []
    for study in studies.all_studies(session):
        newest = runs_page(session, study, pagination.Ask(None, secret, RUNS_SHOWN))
        rows.append(StudySupply(study, arm_names(study),
                                [(row, signature_of(session, row.signature_id))
                                 for row in sealed.lists_of(session, actor, study)],
                                newest.rows, newest.next is not None,
                                [kq for kq in open_q if kq.study_id == study.id], planned_waiting(session, study)))
    return rows, open_q
