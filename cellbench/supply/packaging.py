"""Packaging and labelling runs: released units become blinded kits, in one transaction.

The supply manager chooses how many kits and which ASC and placebo lots to fill them from; the
kit list (sealed) says which arm each next kit is on; each kit gets one unit per dose from one
lot, earliest expiry first. The kits join a blinded lot whose expiry is the earliest expiry of
every lot in it, both arms. A run's kits are released together, when every lot in the run is
released, so that no kit state ever differs by arm.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date

from sqlalchemy import Table, func, select, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col

from .. import audit, inputs, kits, sealed, studies, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import InvalidInput, NotFound
from ..lots import free_units
from ..models import (
    BlindedLot,
    Kit,
    KitState,
    LabelRun,
    Lot,
    LotState,
    PackagingRun,
    Role,
    SpecVersion,
    Study,
    Vial,
    VialState,
    Visibility,
    saved_id,
)
from ..specifications import versions as spec_versions

PACKERS = (Role.supply_manager,)
MAX_KITS_PER_RUN = 1000
# Lots whose units may go into kits: complete batch records onwards. Their kits stay "packaged"
# until every lot of the run is released.
FILLABLE_LOT_STATES = frozenset({LotState.qc_pending, LotState.initial_certified, LotState.qp_certified,
                                 LotState.released_for_shipment, LotState.released})
# A run's kits may travel when every lot in it is at least released for shipment (two-step release).
SHIPPABLE_LOT_STATES = frozenset({LotState.released_for_shipment, LotState.released})
_RUN_KITS_MOVING = frozenset({KitState.packaged, KitState.quarantined}) | kits.AWAITING_FINAL_RELEASE
# A free unit is lots.free_units(): placed, not pulled for QC, retained, destroyed nor in a kit.
FREE_VIAL = VialState.stored.value
KITTED_VIAL = VialState.kitted.value
_VIAL: Table = Vial.metadata.tables["vial"]


# --- small named rules ---------------------------------------------------------------------------


def lot_may_fill_kits(lot: Lot, lot_kind: str, kind: str, today: date) -> str | None:
    """Why this lot's units may not go into kits of this product kind, or None."""
    if lot_kind != kind:
        return f"Lot {lot.number} is not {'an ASC' if kind == 'asc' else 'a placebo'} lot."
    if LotState(lot.state) not in FILLABLE_LOT_STATES:
        return f"Lot {lot.number} is {LotState(lot.state).value.replace('_', ' ')}; its units cannot go into kits."
    if lot.expiry is None or lot.expiry <= today:
        return f"Lot {lot.number} has expired ({lot.expiry})." if lot.expiry else f"Lot {lot.number} has no expiry yet."
    return None


def lot_presents_as_study(lot: Lot, spec: SpecVersion, study: Study) -> str | None:
    """Why this lot's units may not fill kits of this study: its specification (the version it was
    made under) does not present as the study's [presentation] says, by the one rule the study's
    load and kit-list sealing apply (studies.presentation_mismatch), for the lot's arm only."""
    definition = studies.definition(study)
    arms = [arm for arm in definition.arms if arm.product_kind == spec.kind]
    made_under = spec_versions.parsed(spec)
    why = studies.presentation_mismatch(definition.model_copy(update={"arms": arms}), lambda _code: made_under)
    return f"Lot {lot.number} cannot fill kits of {study.code}: {why}." if why else None


def run_holds_every_arm(arms_in_run: set[str], study: Study) -> str | None:
    """A run, and so every blinded lot, holds kits of every arm: kits of one arm alone would let
    the lot code, or the day the run's kits are released, tell their arm."""
    missing = [arm for arm in studies.arm_codes(study) if arm not in arms_in_run]
    if missing:
        return ("These kits would all be on one arm, which the blinded lot or release date would give away. "
                "Package more kits in this run.")
    return None


def enough_units(free_by_lot: dict[int, list[Vial]], kits_needed: int, doses: int, kind: str) -> str | None:
    """Each kit takes all its doses from one lot: count whole kits' worth per lot."""
    kits_possible = sum(len(units) // doses for units in free_by_lot.values())
    if kits_possible < kits_needed:
        free = sum(len(units) for units in free_by_lot.values())
        return (f"The chosen {'ASC' if kind == 'asc' else 'placebo'} lots have {free} free units, enough for "
                f"{kits_possible} kits of {doses} units from one lot; this run needs {kits_needed}.")
    return None


def expiry_not_shortened_after_labelling(session: Session, blinded: BlindedLot, new_expiry: date) -> str | None:
    if new_expiry < blinded.expiry and session.scalar(select(func.count(col(LabelRun.id)))
                                                     .where(col(LabelRun.blinded_lot_id) == blinded.id)):
        return (f"Labels of {blinded.code} are printed with expiry {blinded.expiry}; these lots would bring it "
                f"forward to {new_expiry}. Package them into a new blinded lot instead.")
    return None


# --- the run --------------------------------------------------------------------------------------


def _expiry(lot: Lot) -> date:
    """The expiry of a lot that may fill kits (lot_may_fill_kits refuses a lot without one)."""
    assert lot.expiry is not None, f"lot {lot.number} was let into a run without an expiry"
    return lot.expiry


def _lots(session: Session, study: Study, numbers: list[str], kind: str, field: str, today: date) -> list[Lot]:
    found = []
    for number in dict.fromkeys(n.strip() for n in numbers if n and n.strip()):
        lot = session.scalars(select(Lot).where(col(Lot.number) == number)).first()
        if lot is None:
            raise NotFound(f"No lot '{number}'.", field=field)
        spec = session.get(SpecVersion, lot.spec_version_id)
        if why := lot_may_fill_kits(lot, spec.kind if spec else "", kind, today):
            raise InvalidInput(why, field=field)
        assert spec is not None, "a lot of the right kind has its specification"
        if why := lot_presents_as_study(lot, spec, study):
            raise InvalidInput(why, field=field)
        found.append(lot)
    if not found:
        raise InvalidInput(f"Choose at least one {'ASC' if kind == 'asc' else 'placebo'} lot.", field=field)
    return found


def _free_units(session: Session, lots: list[Lot]) -> dict[int, list[Vial]]:
    by_lot: dict[int, list[Vial]] = defaultdict(list)
    for vial in session.scalars(select(Vial).where(col(Vial.lot_id).in_([lot.id for lot in lots]),
                                                   free_units())
                                .order_by(col(Vial.lot_id), col(Vial.seq))):
        by_lot[vial.lot_id].append(vial)
    return by_lot


def _next_code(session: Session, study: Study) -> str:
    prefix = f"{studies.definition(study).study.participant_prefix}B{utcnow():%y}-"
    last = session.scalar(select(func.max(col(BlindedLot.code))).where(col(BlindedLot.code).like(prefix + "%")))
    return f"{prefix}{(int(last.rsplit('-', 1)[1]) if last else 0) + 1:03d}"


def _run_number(session: Session) -> str:
    prefix = f"PR-{utcnow():%Y}-"
    last = session.scalar(select(func.max(col(PackagingRun.number)))
                          .where(col(PackagingRun.number).like(prefix + "%")))
    return f"{prefix}{(int(last.rsplit('-', 1)[1]) if last else 0) + 1:04d}"


def _kit_count(value: object) -> int:
    count = inputs.whole(value, "kit_count", "number of kits")
    if not 1 <= count <= MAX_KITS_PER_RUN:
        raise InvalidInput(f"A run packages 1 to {MAX_KITS_PER_RUN} kits.", field="kit_count")
    return count


def package(session: Session, actor: Actor, study: Study, *, kit_count: object, asc_lots: list[str],
            placebo_lots: list[str], blinded_lot_code: str | None = None) -> PackagingRun:
    """One packaging run, all or nothing."""
    users.require_role(actor, *PACKERS)
    count = _kit_count(kit_count)
    today = utcnow().date()
    lots_by_kind = {"asc": _lots(session, study, asc_lots, "asc", "asc_lots", today),
                    "placebo": _lots(session, study, placebo_lots, "placebo", "placebo_lots", today)}
    blinded = None
    if (blinded_lot_code or "").strip():
        blinded = kits.blinded_lot_by_code(session, blinded_lot_code)
        if blinded.study_id != study.id:
            raise InvalidInput(f"Blinded lot {blinded.code} belongs to another study.", field="blinded_lot")
        session.refresh(blinded, with_for_update=True)  # two runs extending one blinded lot queue here

    planned = sealed.next_planned_kits(session, actor, study, count)
    if len(planned) < count:
        raise InvalidInput(f"Only {len(planned)} kit numbers of {study.code} are waiting on sealed kit lists; "
                           "generate and seal a further kit list first.", field="kit_count")
    if why := run_holds_every_arm({arm for _, arm in planned}, study):
        raise InvalidInput(why, field="kit_count")

    doses = study.doses_per_treatment
    kind_of_arm = {arm.code: arm.product_kind for arm in studies.definition(study).arms}
    free = {kind: _free_units(session, chosen) for kind, chosen in lots_by_kind.items()}
    for kind in lots_by_kind:
        if why := enough_units(free[kind], sum(1 for _, arm in planned if kind_of_arm[arm] == kind), doses, kind):
            raise InvalidInput(why, field="asc_lots" if kind == "asc" else "placebo_lots")
    fill: dict[int, list[Vial]] = {}
    used_lots: dict[str, Lot] = {}
    for kit, arm in sorted(planned, key=lambda pair: pair[0].number):
        kind = kind_of_arm[arm]
        # earliest expiry first; one lot per kit, so a kit's doses share one donor and one lot
        source = next(lot for lot in sorted(lots_by_kind[kind], key=lambda lot: (_expiry(lot), lot.number))
                      if len(free[kind][saved_id(lot)]) >= doses)
        fill[saved_id(kit)] = [free[kind][saved_id(source)].pop(0) for _ in range(doses)]
        used_lots[source.number] = source

    earliest = min(_expiry(lot) for lot in used_lots.values())
    if blinded is None:
        blinded = BlindedLot(code=_next_code(session, study), study_id=saved_id(study), expiry=earliest,
                             created_at=utcnow())
        session.add(blinded)
        session.flush()
        audit.record(session, actor, "blinded lot created", "blinded_lot", blinded.code, field="expiry", new=earliest)
    elif earliest < blinded.expiry:
        if why := expiry_not_shortened_after_labelling(session, blinded, earliest):
            raise InvalidInput(why, field="blinded_lot")
        old, blinded.expiry = blinded.expiry, earliest
        blinded.row_version += 1
        audit.record(session, actor, "blinded lot expiry brought forward", "blinded_lot", blinded.code,
                     field="expiry", old=old, new=earliest,
                     reason="the earliest expiry of the lots in it, across both arms")

    run = PackagingRun(number=_run_number(session), study_id=saved_id(study), blinded_lot_id=saved_id(blinded),
                       kit_count=count, created_by=kits.maker_id(actor), created_at=utcnow())
    session.add(run)
    session.flush()
    audit.record(session, actor, "packaging run", "packaging_run", run.number,
                 new={"study": study.code, "blinded_lot": blinded.code, "kits": count})
    audit.record(session, actor, "packaging run lots", "packaging_run", run.number, field="lots",
                 new=sorted(used_lots), visibility=Visibility.unblinded)
    in_order = [kit for kit, _arm in sorted(planned, key=lambda pair: pair[0].number)]  # random: says nothing
    _mark_kitted(session, [vial for kit in in_order for vial in fill[saved_id(kit)]])
    sealed.put_units_many(session, actor, [(kit, fill[saved_id(kit)]) for kit in in_order], saved_id(run))
    where = f"packaging run {run.number}, blinded lot {blinded.code}"
    kits.move_many(session, actor, in_order, "package", reason=where, also={"blinded_lot_id": blinded.id})
    release_runs_ready(session, actor, [saved_id(run)], why="packaging")
    return run


def _mark_kitted(session: Session, vials: list[Vial]) -> None:
    """The units are in kits now: one UPDATE per few hundred, not one per unit."""
    ids = [vial.id for vial in vials]
    for start in range(0, len(ids), 500):
        session.execute(update(_VIAL).where(_VIAL.c.id.in_(ids[start:start + 500])).values(state=KITTED_VIAL))
    for vial in vials:
        set_committed_value(vial, "state", KITTED_VIAL)


def release_runs_ready(session: Session, actor: Actor, run_ids: list[int], *, why: str) -> int:
    """Release the kits of every run whose lots are now all released: packaged kits, and kits
    awaiting final release wherever they are. A run whose lots are all at least released for
    shipment (two-step release) has its packaged kits await final release: they may travel, but
    not be assigned. A run holds every arm, so its kits move together, both arms at once (the unit
    is the run, not the blinded lot: a blinded lot's earlier runs stay as they are). Returns how many."""
    released = 0
    for run_id, lots in sealed.lots_of_runs(session, actor, run_ids, why=why).items():
        states = {LotState(lot.state) for lot in lots}
        if not states <= SHIPPABLE_LOT_STATES:
            continue
        run = session.get(PackagingRun, run_id)
        ids = sealed.kit_ids_of_run(session, actor, run_id, why=why)
        moving = sorted((kit for start in range(0, len(ids), 500)
                         for kit in session.scalars(select(Kit).where(
                             col(Kit.state).in_([s.value for s in _RUN_KITS_MOVING]),
                             col(Kit.id).in_(ids[start:start + 500])))), key=lambda kit: kit.number)
        name = run.number if run else run_id
        packaged = [kit for kit in moving if KitState(kit.state) is KitState.packaged]
        if states != {LotState.released}:
            kits.move_many(session, actor, packaged, "release_for_shipment",
                           reason=f"every lot of packaging run {name} is released for shipment under quarantine")
            released += len(packaged)
            continue
        reason = f"every lot of packaging run {name} is released"
        kits.move_many(session, actor, packaged, "release", reason=reason)
        released += len(packaged) + kits.release_finally(session, actor, moving, reason=reason)
    return released


def after_lot_release(session: Session, actor: Actor, lot: Lot) -> None:
    """Called in the transaction of a lot's sponsor release, release for shipment or final
    certification after one: its kits move with it."""
    runs = sealed.runs_with_lot(session, actor, lot, why="lot released")
    if runs:
        release_runs_ready(session, actor, runs, why="lot released")


def runs(session: Session, study: Study | None = None) -> list[PackagingRun]:
    query = select(PackagingRun).order_by(col(PackagingRun.id).desc())
    if study is not None:
        query = query.where(col(PackagingRun.study_id) == study.id)
    return list(session.scalars(query))


def run_by_number(session: Session, number: str) -> PackagingRun:
    run = session.scalars(select(PackagingRun).where(col(PackagingRun.number) == (number or "").strip())).first()
    if run is None:
        raise NotFound(f"No packaging run '{number}'.", field="run")
    return run


def fillable_lots(session: Session, kind: str) -> list[tuple[Lot, int]]:
    """Lots a run may draw from, with their free units, for the packaging form."""
    today = utcnow().date()
    rows = session.execute(select(Lot, func.count(col(Vial.id)))
                           .join(SpecVersion, col(SpecVersion.id) == col(Lot.spec_version_id))
                           .join(Vial, (col(Vial.lot_id) == col(Lot.id)) & free_units())
                           .where(col(SpecVersion.kind) == kind,
                                  col(Lot.state).in_([s.value for s in FILLABLE_LOT_STATES]),
                                  # in date, in the query: years of released lots past their expiry
                                  # are not read (their vials were counted, then dropped, on every visit)
                                  col(Lot.expiry).is_not(None), col(Lot.expiry) > today)
                           .group_by(col(Lot.id)).order_by(col(Lot.expiry), col(Lot.number)))
    return [(lot, free) for lot, free in rows]

