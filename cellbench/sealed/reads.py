"""Reads for unblinded roles over the compartment's records: what a participant's unblinding
tells of their block-mates, the lists exported after the study is unblinded, the recorded kit
draws and their replay, and the supply manager's kit shortages."""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from fractions import Fraction

from sqlalchemy import and_, case, func, or_, select, update
from sqlmodel import Session, col

from .. import audit, spreadsheet, study_data
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from ..models import (
    BlindedLot,
    Kit,
    KitState,
    Participant,
    SealedAllocation,
    SealedKitArm,
    SealedKitDraw,
    SealedKitShortage,
    SealedList,
    Study,
    Visibility,
    saved_id,
)
from ..sealing import (
    LIST_KINDS,
    READERS,
    SHORTAGE_HANDLERS,
    DrawReplay,
    ListState,
    candidate_numbers,
    participant_trail,
)
from .lists import _line_table
from .walls import _admit, _arm_of_number, _read


@dataclass(frozen=True)
class BlockMates:
    """What knowing one participant's arm (and the arms of block-mates unblinded before) makes of the
    other open lines of its permuted block, stated against that arm, never as an arm: the chance
    that an open line is of the same arm now and before anything was known. Every open line shares
    it, so the block is counted in full and its open lines are read one page at a time."""

    block_size: int
    known: list[str]  # the other block-mates already unblinded, the first KNOWN_NAMED of them
    known_count: int
    open_count: int
    same_now: Fraction
    same_before: Fraction
    lines: list[str]  # open lines after `after`, in number order, at most `limit` (all, without one)
    open_among: list[str]  # those of `among` that are open lines of the block


KNOWN_NAMED = 10  # a real block has 2 to 8 lines: more names than this would only repeat on every line


def block_mates(session: Session, actor: Actor, study: Study, randomisation_number: str, *,
                after: str | None = None, limit: int | None = None, exclude: Collection[str] = (),
                among: Collection[str] = ()) -> BlockMates | None:
    """The block of this participant's line (None: the line is on no sealed list), counted by
    aggregate queries, with its open lines (neither this participant nor anyone unblinded) after
    `after` and not in `exclude`, in number order, and which of `among` are open lines. Lines not
    yet randomised are open too: the next participant given one inherits what it says. One logged
    read."""
    _read(session, actor, READERS, "randomisation block mates",
          lambda: participant_trail(session, study, randomisation_number=randomisation_number))
    line = session.execute(select(col(SealedAllocation.list_id), col(SealedAllocation.block), col(SealedAllocation.arm))
                           .join(SealedList, col(SealedList.id) == col(SealedAllocation.list_id))
                           .where(col(SealedList.study_id) == study.id, col(SealedList.state) == ListState.sealed.value,
                                  col(SealedAllocation.participant_number) == randomisation_number)).first()
    if line is None:
        return None
    list_id, block, own = line
    in_block = (col(SealedAllocation.list_id) == list_id, col(SealedAllocation.block) == block)
    unblinded_line = and_(col(Participant.study_id) == study.id, col(Participant.unblinded_at).is_not(None),
                          col(Participant.randomisation_number) == col(SealedAllocation.participant_number))
    is_own = col(SealedAllocation.participant_number) == randomisation_number
    is_unblinded = select(col(Participant.id)).where(unblinded_line).exists()
    is_known = or_(is_own, is_unblinded)
    is_same = col(SealedAllocation.arm) == own
    # The block counted from its own lines (ix_sealed_allocation_block), each line looked up as a
    # participant (study, number: unique): not every line of the list joined to its participant,
    # which read the whole list for a block of 2 to 8, nor every unblinded participant of the study
    # listed first (an IN list), which grew with the unblindings of the years (21 -> 201 us on
    # SQLite from a tenth to ten years; 6 us both ways as a lookup per line).
    size, same_total = session.execute(
        select(func.count(), func.coalesce(func.sum(case((is_same, 1), else_=0)), 0))
        .where(*in_block)).one()
    unblinded, unblinded_same, own_unblinded = session.execute(
        select(func.count(), *(func.coalesce(func.sum(case((when, 1), else_=0)), 0) for when in (is_same, is_own)))
        .where(*in_block, is_unblinded)).one()
    # this participant's own line is known (its arm is the one revealed) whether or not it is unblinded yet
    known_count = unblinded + (0 if own_unblinded else 1)
    known_same = unblinded_same + (0 if own_unblinded else 1)
    known = list(session.scalars(select(col(SealedAllocation.participant_number))
                                 .where(*in_block, ~is_own, is_known)
                                 .order_by(col(SealedAllocation.participant_number)).limit(KNOWN_NAMED)))
    query = (select(col(SealedAllocation.participant_number)).where(*in_block, ~is_known)
             .order_by(col(SealedAllocation.participant_number)))
    if after is not None:
        query = query.where(col(SealedAllocation.participant_number) > after)
    if exclude:
        query = query.where(col(SealedAllocation.participant_number).not_in(list(exclude)))
    if limit is not None:
        query = query.limit(limit)
    open_among = list(session.scalars(select(col(SealedAllocation.participant_number)).where(
        *in_block, ~is_known, col(SealedAllocation.participant_number).in_(list(among))))) if among else []
    open_count = size - known_count
    before = Fraction(same_total, size)
    now = Fraction(same_total - known_same, open_count) if open_count else before
    return BlockMates(block_size=size, known=known, known_count=known_count - 1, open_count=open_count,
                      same_now=now, same_before=before, lines=list(session.scalars(query)),
                      open_among=open_among)


# --- the study's arms, once unblinded (study_data.py) ---------------------------------------------

EXPORT_COLUMNS = {"randomisation": ("participant_number", "arm", "block", "position", "list_version"),
                  "kit": ("kit_number", "arm", "blinded_lot", "state")}


def export_lists(session: Session, actor: Actor, study: Study, kind: str) -> str:
    """The study's sealed randomisation list or kit list (with blinded lot and state) as CSV: for
    the statistician only, and only after the sponsor's signed database lock and study unblinding."""
    _admit(actor, study_data.EXPORTERS)
    if why := study_data.export_refusal(session, study):
        raise Forbidden(why)
    if kind not in EXPORT_COLUMNS:
        raise InvalidInput(f"Export the {' or the '.join(LIST_KINDS.values())}.", field="kind")
    _read(session, actor, study_data.EXPORTERS, f"{LIST_KINDS[kind]} export", study.code)
    table, number = _line_table(kind)
    extra = ((col(table.block), col(table.position), col(SealedList.version)) if kind == "randomisation"
             else (col(BlindedLot.code), col(Kit.state)))
    query = (select(number, col(table.arm), *extra).select_from(table)
             .join(SealedList, col(SealedList.id) == col(table.list_id))
             .where(col(SealedList.study_id) == study.id, col(SealedList.state) == ListState.sealed.value)
             .order_by(col(SealedList.version), col(table.position)))
    if kind == "kit":  # a kit not yet packaged has no blinded lot
        query = (query.outerjoin(Kit, col(Kit.id) == col(SealedKitArm.kit_id))
                 .outerjoin(BlindedLot, col(BlindedLot.id) == col(Kit.blinded_lot_id)))
    rows = [(*r[:3], r[3] and KitState(r[3]).value) if kind == "kit" else tuple(r) for r in session.execute(query)]
    return spreadsheet.csv_text(EXPORT_COLUMNS[kind], rows)


def study_arms(session: Session, actor: Actor, study: Study) -> tuple[dict[str, str], dict[str, str]]:
    """(participant number -> arm, kit number -> arm) of the study's sealed lists, for the unblinded
    export to the trial database (trial_export/unblinded.py): the same rule as export_lists."""
    _admit(actor, study_data.EXPORTERS)
    if why := study_data.export_refusal(session, study):
        raise Forbidden(why)
    _read(session, actor, study_data.EXPORTERS, "trial database export (arms)", study.code)
    sealed_lists = (col(SealedList.study_id) == study.id, col(SealedList.state) == ListState.sealed.value)
    participants = session.execute(select(col(SealedAllocation.participant_number), col(SealedAllocation.arm))
                                   .join(SealedList, col(SealedList.id) == col(SealedAllocation.list_id))
                                   .where(*sealed_lists)).all()
    kit_arms = session.execute(select(col(SealedKitArm.kit_number), col(SealedKitArm.arm))
                               .join(SealedList, col(SealedList.id) == col(SealedKitArm.list_id))
                               .where(*sealed_lists)).all()
    return dict(participants), dict(kit_arms)


# --- the record of draws, and the supply manager's shortages -------------------------------------


def kit_draws(session: Session, actor: Actor, study: Study, *, limit: int = 200) -> list[SealedKitDraw]:
    """The study's recorded kit draws, newest first: each one's candidates are of one arm."""
    _read(session, actor, READERS, "kit draws", study.code)
    return list(session.scalars(select(SealedKitDraw).where(col(SealedKitDraw.study_id) == study.id)
                                .order_by(col(SealedKitDraw.id).desc()).limit(limit)))


def replay_draw(session: Session, actor: Actor, draw_id: int) -> DrawReplay:
    """A recorded draw worked through again: the kit at its index among its candidates, which must
    be the kit it assigned, and the arms of the candidates, which must all be the participant's."""
    _read(session, actor, READERS, "kit draw replay", draw_id)
    row = session.get(SealedKitDraw, draw_id)
    if row is None:
        raise NotFound(f"No kit draw #{draw_id}.", field="draw")
    study = session.get(Study, row.study_id)
    assert study is not None, "a draw belongs to a stored study"
    numbers = candidate_numbers(row.candidates)
    arms = set(session.scalars(select(col(SealedKitArm.arm)).where(col(SealedKitArm.kit_number).in_(numbers))))
    chosen = session.scalar(select(col(Kit.number)).where(col(Kit.id) == row.kit_id))
    return DrawReplay(saved_id(row), tuple(numbers), row.index_drawn, chosen or "",
                      arms == {_arm_of_number(session, study, row.randomisation_number)})


def kit_shortages(session: Session, actor: Actor, *, open_only: bool = True,
                  limit: int = 200) -> list[SealedKitShortage]:
    """The "no kit" answers, with their arms and sites, oldest open one first."""
    _read(session, actor, READERS, "kit shortages", "open" if open_only else "all")
    query = select(SealedKitShortage)
    if open_only:
        query = query.where(col(SealedKitShortage.acknowledged_at).is_(None))
    return list(session.scalars(query.order_by(col(SealedKitShortage.acknowledged_at).is_not(None),
                                               col(SealedKitShortage.id)).limit(limit)))


def open_shortage_count(session: Session, actor: Actor) -> int:
    """How many shortages wait for the supply manager: a number naming no arm, site or person, for
    the home page's work queue (a read-only transaction on every visit), so not a logged read."""
    _admit(actor, SHORTAGE_HANDLERS)
    return session.scalar(select(func.count()).select_from(SealedKitShortage)
                          .where(col(SealedKitShortage.acknowledged_at).is_(None))) or 0


def acknowledge_shortage(session: Session, actor: Actor, shortage_id: int, reason: str | None) -> SealedKitShortage:
    """The supply manager has seen a shortage and says what is done about it (kits on their way)."""
    _admit(actor, SHORTAGE_HANDLERS)
    reason = audit.require_reason(reason)
    row = session.get(SealedKitShortage, shortage_id)
    if row is None:
        raise NotFound(f"No kit shortage #{shortage_id}.", field="shortage")
    now = utcnow()
    changed = session.execute(update(SealedKitShortage)
                              .where(col(SealedKitShortage.id) == row.id,
                                     col(SealedKitShortage.acknowledged_at).is_(None))
                              .values(acknowledged_at=now, acknowledged_by=actor.user_id, acknowledgement=reason)
                              .execution_options(synchronize_session=False))
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"Kit shortage #{row.id} is already acknowledged.", field="shortage")
    session.refresh(row)
    audit.record(session, actor, "kit shortage acknowledged", "kit_shortage", row.id, field="acknowledged_at",
                 new=now, reason=reason, visibility=Visibility.unblinded)
    return row
