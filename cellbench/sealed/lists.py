"""Randomisation and kit lists: created as drafts, sealed (signed) or discarded; their lines and
counts; the kit and participant numbers they take."""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlmodel import Session, col

from .. import audit, kits, pagination, signatures
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..models import Kit, SealedAllocation, SealedKitArm, SealedList, SealedListArm, Study, User, Visibility
from ..sealing import LIST_KINDS, LIST_MACHINE, LIST_MAKERS, READERS, Line, ListState
from ..statemachine import claim
from .walls import _admit, _read

# What lists.py hands back to its callers: a list's header (kind, seed, state, signature), which
# names no arm; the lines stay in the tables only this module names.
ListHeader = SealedList
# A list not discarded: its participant and kit numbers are taken.
_LIVE = col(SealedList.state) != ListState.discarded.value


def _line_table(kind: str) -> tuple[type[SealedAllocation] | type[SealedKitArm], Any]:
    """Where a list's lines are kept, and the column of their numbers."""
    if kind == "randomisation":
        return SealedAllocation, col(SealedAllocation.participant_number)
    return SealedKitArm, col(SealedKitArm.kit_number)


def _lines_query(row: SealedList) -> Any:
    """The list's lines (position, block, number, arm) in list order."""
    table, number = _line_table(row.kind)
    return (select(col(table.position), col(table.block), number, col(table.arm))
            .where(col(table.list_id) == row.id).order_by(col(table.position)))


def _entries_sha256(session: Session, row: SealedList) -> str:
    digest = hashlib.sha256()
    for line in session.execute(_lines_query(row)):
        digest.update(("\t".join(str(v) for v in line) + "\n").encode("utf-8"))
    return digest.hexdigest()


@signatures.content_rule("sealed_list")
def _list_content(session: Session, list_id: str) -> dict:
    row = session.get(SealedList, int(list_id))
    if row is None:
        raise NotFound("No such sealed list.")
    study = session.get(Study, row.study_id)
    return {"study": study.code if study else None, "kind": row.kind, "version": row.version, "method": row.method,
            "seed": row.seed, "block_sizes": row.block_sizes, "source_sha256": row.source_sha256, "size": row.size,
            "entries_sha256": _entries_sha256(session, row)}


def create_list(session: Session, actor: Actor, study: Study, kind: str, lines: Sequence[Line], *, method: str,
                seed: str | None = None, block_sizes: Sequence[int] | None = None,
                source_sha256: str | None = None, asked: int | None = None) -> SealedList:
    """Store a generated or imported list as a draft, to be checked and then sealed."""
    _admit(actor, LIST_MAKERS)
    if kind not in LIST_KINDS:
        raise InvalidInput(f"A list is a {' or a '.join(LIST_KINDS)}.", field="kind")
    assert study.id is not None, "a stored study"
    keys = [line.key for line in lines]
    if kind == "kit":
        if taken := _kit_numbers_taken(session, keys):
            more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
            raise Conflict(f"Kit number {taken[0]} is already in use{more}: kit numbers are unique across all "
                           "studies.", field="file")
    elif used := _participants_listed(session, study, keys):
        raise Conflict(f"Participant number {used[0]} is already on a list of {study.code}.", field="file")
    version = (session.scalar(select(func.max(col(SealedList.version)))
                              .where(col(SealedList.study_id) == study.id, col(SealedList.kind) == kind)) or 0) + 1
    row = SealedList(study_id=study.id, kind=kind, version=version, method=method, seed=seed,
                     block_sizes=",".join(str(b) for b in block_sizes) if block_sizes else None,
                     source_sha256=source_sha256, size=len(lines), created_by=kits.maker_id(actor), created_at=utcnow())
    session.add(row)
    session.flush()
    table, number = _line_table(kind)
    session.execute(insert(table), [{"list_id": row.id, "position": line.position, "block": line.block,
                                     number.key: line.key, "arm": line.arm} for line in lines])
    arms = Counter(line.arm for line in lines)
    if arms:
        session.execute(insert(SealedListArm), [{"list_id": row.id, "arm": arm, "lines": n}
                                                for arm, n in sorted(arms.items())])
    audit.record(session, actor, f"{LIST_KINDS[kind]} created", "sealed_list", row.id,
                 new={"study": study.code, "version": version, "method": method, "size": len(lines),
                      "arms": dict(arms),
                      **({"asked": asked} if asked not in (None, len(lines)) else {})},
                 visibility=Visibility.unblinded)
    return row


def _kit_numbers_taken(session: Session, numbers: Sequence[str]) -> list[str]:
    taken: list[str] = []
    for start in range(0, len(numbers), 500):
        chunk = list(numbers[start:start + 500])
        taken += session.scalars(select(col(Kit.number)).where(col(Kit.number).in_(chunk)))
        taken += session.scalars(select(col(SealedKitArm.kit_number))
                                 .join(SealedList, col(SealedList.id) == col(SealedKitArm.list_id))
                                 .where(col(SealedKitArm.kit_number).in_(chunk), _LIVE))
    return sorted(set(taken))


def kit_number_taken(session: Session, number: str) -> bool:
    """For drawing new random kit numbers: is this one on any kit or live kit list? Reveals no arm."""
    return bool(_kit_numbers_taken(session, [number]))


def _allocations(study: Study) -> Any:
    """The study's participant lines on lists not discarded (a select of SealedAllocation joined)."""
    return (select(col(SealedAllocation.participant_number))
            .join(SealedList, col(SealedList.id) == col(SealedAllocation.list_id))
            .where(col(SealedList.study_id) == study.id, _LIVE))


def _participants_listed(session: Session, study: Study, numbers: Sequence[str]) -> list[str]:
    found: list[str] = []
    for start in range(0, len(numbers), 500):
        chunk = list(numbers[start:start + 500])
        found += session.scalars(_allocations(study).where(col(SealedAllocation.participant_number).in_(chunk)))
    return sorted(found)


def next_participant_start(session: Session, actor: Actor, study: Study) -> int:
    """Where the numbering of a further randomisation list continues."""
    _read(session, actor, LIST_MAKERS, "randomisation list size", study.code)
    return (session.scalar(select(func.count()).select_from(_allocations(study).subquery())) or 0) + 1


def get_list(session: Session, actor: Actor, list_id: int) -> SealedList:
    _read(session, actor, READERS, "list", list_id)
    row = session.get(SealedList, list_id)
    if row is None:
        raise NotFound(f"No list #{list_id}.", field="list")
    return row


def lists_of(session: Session, actor: Actor, study: Study) -> list[SealedList]:
    _read(session, actor, READERS, "lists", study.code)
    return list(session.scalars(select(SealedList).where(col(SealedList.study_id) == study.id)
                                .order_by(col(SealedList.kind), col(SealedList.version))))


def list_lines(session: Session, actor: Actor, row: SealedList, *, limit: int = 200) -> list[Line]:
    """The list's first `limit` lines (a whole list, for a caller that knows its size)."""
    _read(session, actor, READERS, "list entries", f"{row.id}:first {limit}")
    return [Line(*values) for values in session.execute(_lines_query(row).limit(limit))]


def list_page(session: Session, actor: Actor, row: SealedList, ask: pagination.Ask) -> pagination.Page[Line]:
    """A page of the list's lines in list order, after the cursor (keyset on the position, unique in
    its list). The list's id is bound into its cursors: another list's cursor is refused."""
    _read(session, actor, READERS, "list entries", f"{row.id}:page of {ask.size}")
    table, _number = _line_table(row.kind)
    order = pagination.Order(f"sealed list {row.id}", (col(table.position),))
    found = pagination.page(session, _lines_query(row).order_by(None), order, ask, key=lambda line: (line[0],))
    return pagination.Page([Line(*values) for values in found.rows], found.next, found.first)


def arm_counts(session: Session, actor: Actor, row: SealedList) -> dict[str, int]:
    """The list's lines by arm, as counted when it was made (a few rows, however long the list)."""
    _read(session, actor, READERS, "list arm counts", row.id)
    query = (select(col(SealedListArm.arm), col(SealedListArm.lines))
             .where(col(SealedListArm.list_id) == row.id).order_by(col(SealedListArm.arm)))
    return dict(session.execute(query).all())


def _check_move(row: SealedList, actor: Actor, action: str) -> None:
    """The list machine's word on this move: only a draft is sealed or discarded, and it says so."""
    if LIST_MACHINE.state_refusal(row, action):
        if action == "discard" and row.state == ListState.sealed.value:
            raise InvalidInput("A sealed list is never discarded; only a draft can be.", field="list")
        raise InvalidInput(f"This {LIST_KINDS[row.kind]} is {row.state}; only a draft can be "
                           f"{LIST_MACHINE.target(row, action).value}.", field="list")
    LIST_MACHINE.check(row, action, actor.roles)


def _record_move(session: Session, actor: Actor, row: SealedList, action: str, reason: str | None = None) -> None:
    old, row.state = row.state, LIST_MACHINE.target(row, action).value
    session.flush()
    audit.record(session, actor, f"{LIST_KINDS[row.kind]} {row.state}", "sealed_list", row.id, field="state",
                 old=old, new=row.state, reason=reason, visibility=Visibility.unblinded)


def seal_list(session: Session, user: User, actor: Actor, row: SealedList, password: str) -> SealedList:
    """Sign the list; a kit list's kits come into being now, every one in the same state."""
    _admit(actor, LIST_MAKERS)
    claim(session, row)  # two sealing at once: the second finds it sealed (one signature, one set of kits)
    _check_move(row, actor, "seal")
    meaning = LIST_MACHINE.transition("seal").signature
    assert meaning is not None, "sealing is signed"
    # the signed content names no state: the list is signed as it is sealed
    row.signature_id = signatures.sign(session, user, password, meaning, "sealed_list", str(row.id),
                                       visibility=Visibility.unblinded).id
    _record_move(session, actor, row, "seal")
    if row.kind == "kit":
        _create_kits(session, actor, row)
    session.flush()
    return row


def _create_kits(session: Session, actor: Actor, row: SealedList) -> None:
    study = session.get(Study, row.study_id)
    assert study is not None, "a list belongs to a stored study"
    numbers = list(session.scalars(select(col(SealedKitArm.kit_number)).where(col(SealedKitArm.list_id) == row.id)
                                   .order_by(col(SealedKitArm.kit_number))))  # number order: random, says nothing
    kits.issue(session, actor, study, numbers, reason=f"{study.code} kit list")
    kit_of_line = select(col(Kit.id)).where(col(Kit.number) == col(SealedKitArm.kit_number)).scalar_subquery()
    session.execute(update(SealedKitArm).where(col(SealedKitArm.list_id) == row.id).values(kit_id=kit_of_line)
                    .execution_options(synchronize_session=False))
    session.flush()


def discard_list(session: Session, actor: Actor, row: SealedList, reason: str | None) -> SealedList:
    _admit(actor, LIST_MAKERS)
    reason = audit.require_reason(reason)
    claim(session, row)
    _check_move(row, actor, "discard")
    _record_move(session, actor, row, "discard", reason)
    return row

