"""Label runs as records: finding them, listing them with their names and counts, and the blinded
lots a run can label. Read-only, and arm-free like the rest of the labels package."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, case, func, select
from sqlmodel import Session, col

from .. import pagination
from ..errors import NotFound
from ..models import BlindedLot, Kit, KitState, LabelRun, LabelRunKit, Study, User

# Kits a blinded lot's run labels by default: filled and not yet shipped.
DEFAULT_STATES = (KitState.packaged, KitState.released)


def kits_of(session: Session, run: LabelRun) -> list[Kit]:
    """The run's kits in kit-number order (the order they were printed in)."""
    return list(session.scalars(select(Kit).join(LabelRunKit, col(LabelRunKit.kit_id) == col(Kit.id))
                                .where(col(LabelRunKit.run_id) == run.id).order_by(col(Kit.number))))


def by_number(session: Session, number: str | None, *, field: str = "number") -> LabelRun:
    run = session.scalars(select(LabelRun).where(col(LabelRun.number) == (number or "").strip().upper())).first()
    if run is None:
        raise NotFound(f"No label run '{(number or '').strip()}'.", field=field)
    return run


def _runs(study: Study | None, open_only: bool) -> Select:
    query = select(LabelRun)
    if study is not None:
        query = query.where(col(LabelRun.study_id) == study.id)
    if open_only:
        query = query.where(col(LabelRun.reconciled_at).is_(None))
    return query


def runs(session: Session, study: Study | None = None, open_only: bool = False) -> list[LabelRun]:
    """Runs awaiting reconciliation first, then the others; newest first within each."""
    return list(session.scalars(_runs(study, open_only).order_by(*(c.desc() for c in RUN_ORDER.columns))))


# Runs awaiting reconciliation first, newest first within each: a DESC walk of (open?, id).
RUN_ORDER = pagination.Order("label runs", (case((col(LabelRun.reconciled_at).is_(None), 1), else_=0),
                                            col(LabelRun.id)), newest_first=True)


def run_page(session: Session, ask: pagination.Ask, study: Study | None = None,
             open_only: bool = False) -> pagination.Page[LabelRun]:
    """A page of `runs`, in its order."""
    return pagination.page(session, _runs(study, open_only), RUN_ORDER, ask,
                           key=lambda run: (int(run.reconciled_at is None), run.id))


def open_count(session: Session) -> int:
    return session.scalar(select(func.count(col(LabelRun.id))).where(col(LabelRun.reconciled_at).is_(None))) or 0


@dataclass(frozen=True)
class RunView:
    number: str
    study: str
    blinded_lot: str | None
    kind: str
    output: str
    kits: int
    printed: int
    applied: int | None
    spoiled: int | None
    destroyed: int | None
    created_by: str
    created_at: datetime
    reconciled_by: str | None
    reconciled_at: datetime | None

    @property
    def is_open(self) -> bool:
        return self.reconciled_at is None

    @property
    def balance(self) -> str:
        """printed = applied + spoiled + destroyed, as the reconciliation left it."""
        if self.is_open:
            return f"{self.printed} printed, not yet accounted for"
        return f"{self.printed} = {self.applied} + {self.spoiled} + {self.destroyed}"

    def as_json(self) -> dict:
        return {"number": self.number, "study": self.study, "blinded_lot": self.blinded_lot, "kind": self.kind,
                "output": self.output, "kits": self.kits, "printed": self.printed, "applied": self.applied,
                "spoiled": self.spoiled, "destroyed": self.destroyed, "created_by": self.created_by,
                "created_at": self.created_at, "reconciled_by": self.reconciled_by,
                "reconciled_at": self.reconciled_at, "reconciled": not self.is_open}


def views(session: Session, rows: Sequence[LabelRun]) -> list[RunView]:
    """Runs with names, codes and kit counts, loaded in a few queries whatever their number."""
    if not rows:
        return []
    ids = [run.id for run in rows]
    kit_counts: dict[int | None, int] = dict(
        session.execute(select(col(LabelRunKit.run_id), func.count()).where(col(LabelRunKit.run_id).in_(ids))
                        .group_by(col(LabelRunKit.run_id))).all())
    people = {u.id: u.full_name for u in session.scalars(select(User).where(col(User.id).in_(
        {r.created_by for r in rows} | {r.reconciled_by for r in rows if r.reconciled_by})))}
    codes = {s.id: s.code for s in session.scalars(select(Study).where(col(Study.id).in_({r.study_id for r in rows})))}
    lots = {b.id: b.code for b in session.scalars(select(BlindedLot).where(col(BlindedLot.id).in_(
        {r.blinded_lot_id for r in rows if r.blinded_lot_id})))}
    return [RunView(run.number, codes[run.study_id], lots.get(run.blinded_lot_id), run.kind, run.output,
                    kit_counts.get(run.id, 0), run.printed, run.applied, run.spoiled, run.destroyed,
                    people.get(run.created_by, "?"), run.created_at,
                    people.get(run.reconciled_by) if run.reconciled_by else None, run.reconciled_at)
            for run in rows]


def view(session: Session, run: LabelRun) -> RunView:
    return views(session, [run])[0]


def study_code_of_blinded_lot(session: Session, code: str) -> str:
    """The study code of the blinded lot with this code, or "" when there is none (a form's default)."""
    found = session.scalar(select(col(Study.code)).join(BlindedLot, col(BlindedLot.study_id) == col(Study.id))
                           .where(col(BlindedLot.code) == code.strip().upper()))
    return found or ""
