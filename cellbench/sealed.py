"""The sealed compartment: the only code that knows an arm.

It owns participant -> arm (randomisation lists), kit -> arm (kit lists), kit -> the physical
units inside it (ASC vials or saline units, and so their lots), and the seeds that reproduce the
lists. Three walls keep blinded people out:

1. No other module names a sealed table (tests/test_sealed.py parses every module to check), so
   a blinded page, API response, export or report has no query that could reach one.
2. No module a blinded role can reach imports this one, directly or through others (the same test
   follows the imports of every blinded-facing route module).
3. Every function here refuses a blinded actor and writes an unblinded audit event for each
   read ("sealed read": who, when, what), so an unblinded person's look is on the record too.
"""
from __future__ import annotations

import hashlib
import random
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from fractions import Fraction
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlmodel import Session, col

from . import audit, kits, signatures, spreadsheet, study_data
from .audit import Actor
from .clock import utcnow
from .errors import Conflict, Forbidden, InvalidInput, NotFound
from .models import (
    BlindedLot,
    Kit,
    KitState,
    Lot,
    Participant,
    Role,
    SealedAllocation,
    SealedKitArm,
    SealedKitDraw,
    SealedKitShortage,
    SealedKitUnit,
    SealedList,
    Study,
    User,
    Vial,
    Visibility,
    saved_id,
)
from .sealing import (
    FILLERS,
    LIST_KINDS,
    LIST_MACHINE,
    LIST_MAKERS,
    READERS,
    SHORTAGE_HANDLERS,
    DrawReplay,
    Line,
    ListState,
    candidate_numbers,
    candidate_text,
    participant_trail,
)

# What lists.py hands back to its callers: a list's header (kind, seed, state, signature), which
# names no arm; the lines stay in the tables only this module names.
ListHeader = SealedList
# A list not discarded: its participant and kit numbers are taken.
_LIVE = col(SealedList.state) != ListState.discarded.value


def _admit(actor: Actor, allowed: frozenset[Role]) -> None:
    """The one gate of the compartment."""
    if actor.is_blinded:
        raise Forbidden("That information is sealed: blinded roles cannot see which arm a kit or a participant is on.")
    if not actor.roles & allowed:
        raise Forbidden(f"Only {' or '.join(sorted(r.value for r in allowed))} may do this.")


def _read(session: Session, actor: Actor, allowed: frozenset[Role], what: str, subject: object) -> None:
    """`subject` may be a function: then it is worked out only once the actor is admitted."""
    _admit(actor, allowed)
    subject = subject() if callable(subject) else subject
    audit.record(session, actor, "sealed read", "sealed", subject, field=what, visibility=Visibility.unblinded)


# --- lists -------------------------------------------------------------------------------------


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
    audit.record(session, actor, f"{LIST_KINDS[kind]} created", "sealed_list", row.id,
                 new={"study": study.code, "version": version, "method": method, "size": len(lines),
                      "arms": dict(Counter(line.arm for line in lines)),
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


def list_lines(session: Session, actor: Actor, row: SealedList, *, offset: int = 0, limit: int = 200) -> list[Line]:
    _read(session, actor, READERS, "list entries", f"{row.id}:{offset}+{limit}")
    return [Line(*values) for values in session.execute(_lines_query(row).offset(offset).limit(limit))]


def arm_counts(session: Session, actor: Actor, row: SealedList) -> dict[str, int]:
    _read(session, actor, READERS, "list arm counts", row.id)
    table, _number = _line_table(row.kind)
    query = select(col(table.arm), func.count()).where(col(table.list_id) == row.id).group_by(col(table.arm))
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
    _check_move(row, actor, "discard")
    _record_move(session, actor, row, "discard", reason)
    return row


# --- kits and what is inside them ----------------------------------------------------------------


def arms_of_kits(session: Session, actor: Actor, kit_ids: Iterable[int], *, why: str) -> dict[int, str]:
    ids = sorted(set(kit_ids))
    _read(session, actor, READERS, f"kit arms ({why})", f"{len(ids)} kits")
    found: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        rows = session.execute(select(col(SealedKitArm.kit_id), col(SealedKitArm.arm))
                               .where(col(SealedKitArm.kit_id).in_(ids[start:start + 500])))
        found.update((kit_id, arm) for kit_id, arm in rows if kit_id is not None)
    return found


def next_planned_kits(session: Session, actor: Actor, study: Study, count: int) -> list[tuple[Kit, str]]:
    """The next `count` planned kits in kit-list order, with their arms, for a packaging run."""
    _read(session, actor, FILLERS, "planned kits for packaging", study.code)
    rows = session.execute(select(Kit, col(SealedKitArm.arm))
                           .join(SealedKitArm, col(SealedKitArm.kit_id) == col(Kit.id))
                           .join(SealedList, col(SealedList.id) == col(SealedKitArm.list_id))
                           .where(col(Kit.study_id) == study.id, col(Kit.state) == KitState.planned,
                                  col(SealedList.state) == ListState.sealed.value)
                           .order_by(col(SealedList.version), col(SealedKitArm.position)).limit(count))
    return [(kit, arm) for kit, arm in rows]


def put_units(session: Session, actor: Actor, kit: Kit, vials: Sequence[Vial], run_id: int) -> None:
    """Record which units fill the kit, one per dose, in dose order (left gland first)."""
    put_units_many(session, actor, [(kit, vials)], run_id)


def put_units_many(session: Session, actor: Actor, fills: Sequence[tuple[Kit, Sequence[Vial]]], run_id: int) -> None:
    """`put_units` for a whole packaging run: one multi-row INSERT, one audit event per kit."""
    _admit(actor, FILLERS)
    rows = [{"kit_id": kit.id, "vial_id": vial.id, "dose": dose, "packaging_run_id": run_id}
            for kit, vials in fills for dose, vial in enumerate(vials, 1)]
    if rows:
        session.execute(insert(SealedKitUnit), rows)
    for kit, vials in fills:
        audit.record(session, actor, "kit filled", "sealed", kit.number, field="units",
                     new=[vial.code for vial in vials], visibility=Visibility.unblinded)


def _lots_in_units() -> Any:
    """Lots joined to the units filled from them (a select to narrow with where())."""
    return (select(Lot).join(Vial, col(Vial.lot_id) == col(Lot.id))
            .join(SealedKitUnit, col(SealedKitUnit.vial_id) == col(Vial.id)))


def kits_containing_lot(session: Session, actor: Actor, lot: Lot, *, why: str) -> list[Kit]:
    _read(session, actor, READERS, f"kits of a lot ({why})", lot.number)
    return list(session.scalars(select(Kit).join(SealedKitUnit, col(SealedKitUnit.kit_id) == col(Kit.id))
                                .join(Vial, col(Vial.id) == col(SealedKitUnit.vial_id))
                                .where(col(Vial.lot_id) == lot.id).distinct().order_by(col(Kit.number))))


def lots_of_runs(session: Session, actor: Actor, run_ids: Iterable[int], *, why: str) -> dict[int, list[Lot]]:
    """For each packaging run, the lots its kits were filled from."""
    ids = sorted(set(run_ids))
    _read(session, actor, READERS, f"lots of packaging runs ({why})", ",".join(map(str, ids)))
    found: dict[int, list[Lot]] = defaultdict(list)
    rows = session.execute(_lots_in_units().add_columns(col(SealedKitUnit.packaging_run_id))
                           .where(col(SealedKitUnit.packaging_run_id).in_(ids)).distinct().order_by(col(Lot.number)))
    for lot, run_id in rows:
        found[run_id].append(lot)
    return dict(found)


def lots_of_kits(session: Session, actor: Actor, kit_ids: Iterable[int], *, why: str) -> list[Lot]:
    ids = sorted(set(kit_ids))
    _read(session, actor, READERS, f"lots of kits ({why})", f"{len(ids)} kits")
    found: dict[int | None, Lot] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        found.update((lot.id, lot) for lot in session.scalars(_lots_in_units()
                                                               .where(col(SealedKitUnit.kit_id).in_(chunk))))
    return sorted(found.values(), key=lambda lot: lot.number)


def runs_with_lot(session: Session, actor: Actor, lot: Lot, *, why: str) -> list[int]:
    _read(session, actor, READERS, f"packaging runs of a lot ({why})", lot.number)
    return list(session.scalars(select(col(SealedKitUnit.packaging_run_id))
                                .join(Vial, col(Vial.id) == col(SealedKitUnit.vial_id))
                                .where(col(Vial.lot_id) == lot.id).distinct()))


def kit_ids_of_run(session: Session, actor: Actor, run_id: int, *, why: str) -> list[int]:
    _read(session, actor, READERS, f"kits of a packaging run ({why})", run_id)
    return list(session.scalars(select(col(SealedKitUnit.kit_id))
                                .where(col(SealedKitUnit.packaging_run_id) == run_id).distinct()))


def lots_of_blinded_lot(session: Session, actor: Actor, blinded_lot_id: int, *, why: str) -> list[Lot]:
    _read(session, actor, READERS, f"lots of a blinded lot ({why})", blinded_lot_id)
    return list(session.scalars(_lots_in_units().join(Kit, col(Kit.id) == col(SealedKitUnit.kit_id))
                                .where(col(Kit.blinded_lot_id) == blinded_lot_id).distinct().order_by(col(Lot.number))))


def contents(session: Session, actor: Actor, kit: Kit) -> tuple[str | None, list[tuple[int, Vial, Lot]]]:
    """A kit's arm and its units (dose, vial, lot): the unblinded kit view."""
    _read(session, actor, READERS, "kit contents", kit.number)
    arm = session.scalar(select(col(SealedKitArm.arm)).where(col(SealedKitArm.kit_id) == kit.id))
    units = session.execute(select(col(SealedKitUnit.dose), Vial, Lot)
                            .join(Vial, col(Vial.id) == col(SealedKitUnit.vial_id))
                            .join(Lot, col(Lot.id) == col(Vial.lot_id)).where(col(SealedKitUnit.kit_id) == kit.id)
                            .order_by(col(SealedKitUnit.dose)))
    return arm, [(dose, vial, lot) for dose, vial, lot in units]


def composition(session: Session, actor: Actor, blinded_lot_id: int) -> list[dict]:
    """Per arm and manufacturing lot: how many kits of a blinded lot, in which states."""
    _read(session, actor, READERS, "blinded lot composition", blinded_lot_id)
    arm, lot, state = col(SealedKitArm.arm), col(Lot.number), col(Kit.state)
    rows = session.execute(select(arm, lot, col(Lot.expiry), state, func.count(func.distinct(col(Kit.id))))
                           .join(Kit, col(Kit.id) == col(SealedKitArm.kit_id))
                           .join(SealedKitUnit, col(SealedKitUnit.kit_id) == col(Kit.id))
                           .join(Vial, col(Vial.id) == col(SealedKitUnit.vial_id))
                           .join(Lot, col(Lot.id) == col(Vial.lot_id))
                           .where(col(Kit.blinded_lot_id) == blinded_lot_id)
                           .group_by(arm, lot, col(Lot.expiry), state).order_by(arm, lot))
    return [{"arm": arm, "lot": number, "expiry": expiry, "state": KitState(state).value, "kits": count}
            for arm, number, expiry, state, count in rows]


# --- the blind-safe doors -------------------------------------------------------------------------
#
# Blinded workflows need the compartment to act on an arm without learning it: randomising a
# participant and assigning the kit of the right arm at a visit. These functions are the only
# ones a blinded actor may call; they return a number or a kit, never an arm, and log the call.
# tests/test_sealed.py allows blinded-facing code to use exactly these names.
BLIND_SAFE = ("randomise", "assign_kit", "unblind_participant")


# Where the kit draws' randomness comes from: the operating system's CSPRNG, so that no one can
# predict the next kit from the ones before. A test wanting a reproducible run replaces it with a
# seeded random.Random (monkeypatch); nothing else does.
_draws: random.Random = secrets.SystemRandom()
# Narrows the eligible kits (all of one arm) further, run inside the compartment: it may only take
# kits out. A "same donor as an earlier treatment" rule belongs here, written in this module.
CandidateFilter = Callable[[Session, list[Kit]], list[Kit]]


def _door(session: Session, actor: Actor, allowed: frozenset[Role], what: str, subject: object) -> None:
    if not actor.roles & allowed:
        raise Forbidden(f"Only {' or '.join(sorted(r.value for r in allowed))} may do this.")
    subject = subject() if callable(subject) else subject
    audit.record(session, actor, "sealed assignment", "sealed", subject, field=what, visibility=Visibility.unblinded)


def randomise(session: Session, actor: Actor, study: Study, participant_id: int) -> str:
    """The next free line of the study's sealed randomisation lists, in list order: its number."""
    _door(session, actor, frozenset({Role.investigator}), "randomisation",
          lambda: participant_trail(session, study, participant_id=participant_id))
    taken = select(col(Participant.randomisation_number)).where(
        col(Participant.study_id) == study.id, col(Participant.randomisation_number).is_not(None))
    number = session.scalar(select(col(SealedAllocation.participant_number))
                            .join(SealedList, col(SealedList.id) == col(SealedAllocation.list_id))
                            .where(col(SealedList.study_id) == study.id, col(SealedList.kind) == "randomisation",
                                   col(SealedList.state) == ListState.sealed.value,
                                   col(SealedAllocation.participant_number).not_in(taken))
                            .order_by(col(SealedList.version), col(SealedAllocation.position)).limit(1))
    if number is None:
        raise InvalidInput(f"The sealed randomisation list of {study.code} has no free line left; the supply "
                           "manager must seal a further list.", field="participant")
    return number


def _arm_of_number(session: Session, study: Study, randomisation_number: str) -> str | None:
    return session.scalar(select(col(SealedAllocation.arm))
                          .join(SealedList, col(SealedList.id) == col(SealedAllocation.list_id))
                          .where(col(SealedList.study_id) == study.id, col(SealedList.state) == ListState.sealed.value,
                                 col(SealedAllocation.participant_number) == randomisation_number))


def assign_kit(session: Session, actor: Actor, study: Study, randomisation_number: str, site_id: int, *,
               in_date_on: date, exclude: Sequence[int] = (), narrow: CandidateFilter | None = None) -> Kit | None:
    """A kit of the participant's arm, available at the site and in date on `in_date_on`, drawn
    uniformly at random (a CSPRNG) among every such kit, so the order of assignments carries no
    order a blinded person could read arms from; the draw is recorded (SealedKitDraw) and can be
    replayed. `narrow` takes further candidates out inside the compartment (the place for a
    "same donor as an earlier treatment" rule). None when there is none: the shortage is recorded
    with its arm for the supply manager, and the caller says so in words the same for both arms."""
    _door(session, actor, frozenset({Role.pharmacist}), "kit assignment",
          lambda: participant_trail(session, study, randomisation_number=randomisation_number))
    arm = _arm_of_number(session, study, randomisation_number)
    if arm is None:
        raise InvalidInput(f"{randomisation_number} is not on a sealed randomisation list.", field="participant")
    candidates = _eligible(session, study, arm, site_id, in_date_on, exclude)
    if narrow is not None:
        kept = narrow(session, candidates)
        if not {kit.number for kit in kept} <= {kit.number for kit in candidates}:
            raise ValueError("A candidate filter may only take kits out.")
        candidates = sorted(kept, key=lambda kit: kit.number)
    if not candidates:
        session.add(SealedKitShortage(study_id=saved_id(study), site_id=site_id, arm=arm, in_date_on=in_date_on,
                                      randomisation_number=randomisation_number, reported_by=actor.user_id,
                                      reported_at=utcnow()))
        session.flush()
        return None
    index = _draws.randrange(len(candidates))
    kit = candidates[index]
    session.add(SealedKitDraw(study_id=saved_id(study), randomisation_number=randomisation_number, site_id=site_id,
                              candidates=candidate_text(kit.number for kit in candidates), index_drawn=index,
                              kit_id=saved_id(kit), drawn_by=actor.user_id, drawn_at=utcnow()))
    session.flush()
    return kit


def _eligible(session: Session, study: Study, arm: str, site_id: int, in_date_on: date,
              exclude: Sequence[int]) -> list[Kit]:
    """The kits of this arm a visit may have: in the site's stock (received, not assigned, not
    held), in date through `in_date_on`, none excluded; in kit-number order, the draw's canonical
    order (sorted here, not by the engine, whose collation may differ)."""
    query = (select(Kit).join(SealedKitArm, col(SealedKitArm.kit_id) == col(Kit.id))
             .join(BlindedLot, col(BlindedLot.id) == col(Kit.blinded_lot_id))
             .where(col(Kit.study_id) == study.id, col(Kit.site_id) == site_id, col(Kit.state) == KitState.at_site,
                    col(Kit.quarantine_id).is_(None), col(SealedKitArm.arm) == arm,
                    col(BlindedLot.expiry) >= in_date_on))
    if exclude:
        query = query.where(col(Kit.id).not_in(list(exclude)))
    return sorted(session.scalars(query), key=lambda kit: kit.number)


def unblind_participant(session: Session, actor: Actor, study: Study, randomisation_number: str) -> str:
    """The arm of one participant, for the emergency unblinding (unblinding.py re-authenticates,
    signs and notifies first). The one door that returns an arm to a blinded role, by design."""
    _door(session, actor, frozenset({Role.investigator}), "emergency unblinding",
          lambda: participant_trail(session, study, randomisation_number=randomisation_number))
    arm = _arm_of_number(session, study, randomisation_number)
    if arm is None:
        raise NotFound(f"{randomisation_number} is not on a sealed randomisation list.", field="participant")
    return arm


def arm_of_participant(session: Session, actor: Actor, study: Study, randomisation_number: str) -> str | None:
    """For unblinded roles (trace, accountability by manufacturing lot)."""
    _read(session, actor, READERS, "participant arm",
          lambda: participant_trail(session, study, randomisation_number=randomisation_number))
    return _arm_of_number(session, study, randomisation_number)


def block_mates(session: Session, actor: Actor, study: Study, randomisation_number: str) -> list[dict]:
    """What knowing this participant's arm (and the arms of block-mates unblinded before) makes of
    each other line of the same permuted block, stated against this participant's arm, never as an
    arm: `same` or `other`, its probability now and before anything was known, and the block's size.
    Lines not yet randomised are listed too: the next participant given one inherits what it says."""
    _read(session, actor, READERS, "randomisation block mates",
          lambda: participant_trail(session, study, randomisation_number=randomisation_number))
    line = session.execute(select(col(SealedAllocation.list_id), col(SealedAllocation.block), col(SealedAllocation.arm))
                           .join(SealedList, col(SealedList.id) == col(SealedAllocation.list_id))
                           .where(col(SealedList.study_id) == study.id, col(SealedList.state) == ListState.sealed.value,
                                  col(SealedAllocation.participant_number) == randomisation_number)).first()
    if line is None:
        return []
    list_id, block, own = line
    block_rows = session.execute(select(col(SealedAllocation.participant_number), col(SealedAllocation.arm))
                                 .where(col(SealedAllocation.list_id) == list_id, col(SealedAllocation.block) == block)
                                 .order_by(col(SealedAllocation.position))).all()
    numbers = [number for number, _arm in block_rows]
    known = {randomisation_number, *session.scalars(select(col(Participant.randomisation_number)).where(
        col(Participant.study_id) == study.id, col(Participant.unblinded_at).is_not(None),
        col(Participant.randomisation_number).in_(numbers)))}
    size, open_lines = len(block_rows), [number for number in numbers if number not in known]
    same_left = sum(1 for number, arm in block_rows if arm == own and number not in known)
    before = Fraction(sum(1 for _number, arm in block_rows if arm == own), size)
    now = Fraction(same_left, len(open_lines)) if open_lines else before
    return [{"participant": number, "block_size": size, "known": sorted(known - {randomisation_number}),
             "same_now": now, "same_before": before} for number in open_lines]


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
