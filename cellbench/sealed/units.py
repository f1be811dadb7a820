"""Kits and what is inside them: the arms of kits, the units (vials, so lots) put in at packaging,
and the unblinded views of a kit's or a blinded lot's contents."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlmodel import Session, col

from .. import audit
from ..audit import Actor
from ..models import Kit, KitState, Lot, Role, SealedKitArm, SealedKitUnit, SealedList, Study, Vial, Visibility
from ..sealing import FILLERS, READERS, ListState
from .walls import _admit, _read

# The unblinded preparer checks each scanned unit against the kit it came in (besides the readers).
UNIT_CHECKERS = READERS | {Role.preparer}


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
    return contents_of_kits(session, actor, [kit])[kit.id or 0]


def contents_of_kits(session: Session, actor: Actor,
                     kits: Sequence[Kit]) -> dict[int, tuple[str | None, list[tuple[int, Vial, Lot]]]]:
    """kit id -> `contents`, for a page of kits in two statements, whatever its length. Still one
    logged read per kit: the trail says whose contents were seen, kit by kit."""
    _admit(actor, READERS)  # refused even for no kits
    for kit in kits:
        _read(session, actor, READERS, "kit contents", kit.number)
    ids = [kit.id for kit in kits]
    found: dict[int, tuple[str | None, list[tuple[int, Vial, Lot]]]] = {kit.id or 0: (None, []) for kit in kits}
    if not ids:
        return found
    for kit_id, arm in session.execute(select(col(SealedKitArm.kit_id), col(SealedKitArm.arm))
                                       .where(col(SealedKitArm.kit_id).in_(ids))):
        found[kit_id] = (arm, found[kit_id][1])
    units = session.execute(select(col(SealedKitUnit.kit_id), col(SealedKitUnit.dose), Vial, Lot)
                            .join(Vial, col(Vial.id) == col(SealedKitUnit.vial_id))
                            .join(Lot, col(Lot.id) == col(Vial.lot_id)).where(col(SealedKitUnit.kit_id).in_(ids))
                            .order_by(col(SealedKitUnit.kit_id), col(SealedKitUnit.dose)))
    for kit_id, dose, vial, lot in units:
        found[kit_id][1].append((dose, vial, lot))
    return found


def unit_codes(session: Session, actor: Actor, kit: Kit) -> dict[int, str]:
    """The codes of a kit's units by their place in it (1 = the first dose's first unit), without the
    arm: what the preparer's scans are checked against. A logged read like every other."""
    _read(session, actor, UNIT_CHECKERS, "kit units (preparation check)", kit.number)
    rows = session.execute(select(col(SealedKitUnit.dose), col(Vial.code))
                           .join(Vial, col(Vial.id) == col(SealedKitUnit.vial_id))
                           .where(col(SealedKitUnit.kit_id) == kit.id).order_by(col(SealedKitUnit.dose)))
    return {int(position): str(code) for position, code in rows}


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

