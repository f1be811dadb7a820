"""Preparation and administration: the preparer's scan starts the thaw (ASC) or preparation
(saline) and with it the use-by clock; each gland's injection is recorded once, in time; after the
use window an administration is refused, the dose goes to destruction and a deviation is raised;
a stopped procedure is recorded as not administered. Same fields, steps and window for both arms."""
from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from .. import audit, clock, custody, deviations, inputs, kits, users
from ..audit import Actor
from ..clock import utcnow
from ..custody import fetch, key, person
from ..errors import Conflict, InvalidInput, RecordedRefusal
from ..models import Administration, KitState, Site, Study, Visit
from .bedside import FIELD as BEDSIDE_FIELD
from .bedside import syringe_not_checked
from .doors import record_donor
from .lifecycle import FINAL, PREPARERS, VisitState, authorise, set_state, visit_state
from .participants import schedule
from .records import (
    VisitContext,
    gland_names,
    gland_short,
    hhmm,
    lock,
    participant_number,
    scan_kit,
    touch,
    use_window,
    visit_of_kit,
)

MAX_VOLUME_ML = 5.0
CLOCK_SKEW = timedelta(minutes=2)  # an administration time this far ahead of the server is still "now"
LATE_SUMMARY = "An administration after the use window was refused; the dose was sent to destruction."
# What must hold for one dose's syringe before its administration is recorded: (rule, the field its
# refusal names). Each rule says why it blocks, or None. "The syringe was drawn up and its label
# printed" (the preparer's record) is asked by the bedside scan of that label, which this rule needs.
DOSE_RULES = ((syringe_not_checked, BEDSIDE_FIELD),)


def start_preparation(session: Session, actor: Actor, code: str | None, secret_key: str, *,
                      manual: object = False, reason: str | None = None) -> VisitContext:
    """The preparer scans the dispensed kit (or types its number, marked as typed by hand with the
    reason): thawing (ASC) or preparation (saline) starts now, and with it the use-by clock. Same
    fields, same steps, same window for both arms."""
    users.require_role(actor, *PREPARERS)
    kit, entry = scan_kit(session, code, secret_key, manual=manual, reason=reason)
    visit = visit_of_kit(session, kit)
    if visit is None:
        raise InvalidInput(f"Kit {kit.number} is not dispensed for a visit ({kits.state_label(kit.state).lower()}).",
                           field="code")
    ctx = lock(session, visit, None)
    if visit_state(ctx.visit) is not VisitState.dispensed and ctx.visit.preparation_started_at is not None:
        since = hhmm(ctx.visit.preparation_started_at, ctx.site)
        raise Conflict(f"Kit {kit.number} has been in preparation since {since}.",
                       field="code")
    authorise(session, actor, ctx, "prepare", field="code")
    now = utcnow()
    kits.move(session, actor, kit, "start_preparation", reason=f"{ctx.who}; {entry.method}" if entry.typed else ctx.who)
    ctx.visit.preparation_started_at, ctx.visit.use_by = now, now + use_window(ctx.study)
    session.flush()
    to_place = f"{ctx.site.code}: in preparation"
    custody.record(session, actor, kit, "preparation started", from_place=kit.location, to_place=to_place,
                   condition=entry.note())
    custody.relocate(session, actor, kit, to_place)
    audit.record(session, actor, "preparation started", "visit", ctx.ref, field="use_by", new=ctx.visit.use_by,
                 reason=entry.note())
    set_state(session, actor, ctx, VisitState.in_preparation)
    return ctx


def parse_gland(study: Study, value: object) -> int:
    text = str(value if value is not None else "").strip().lower()
    names = gland_names(study)
    for dose, name in enumerate(names, 1):
        if text in (str(dose), name.lower(), name.split(" ")[0].lower()):
            return dose
    raise InvalidInput(f"Choose the gland: {' or '.join(n.split(' ')[0] for n in names)}.", field="gland")


def parse_volume(value: object) -> float:
    volume = inputs.number(value, "volume_ml", "volume injected in mL")
    if volume <= 0 or volume > MAX_VOLUME_ML:
        raise InvalidInput(f"The volume is more than 0 and at most {MAX_VOLUME_ML:g} mL.", field="volume_ml")
    return volume


def parse_time(value: object, site: Site, now: datetime) -> datetime:
    """A time as typed (site's local time, or ISO 8601 with an offset); empty means now."""
    if not isinstance(value, datetime) and not str(value or "").strip():
        return now
    return inputs.moment(value if isinstance(value, datetime) else str(value), "administered_at",
                         "administration time", clock.zone(site))


def _late(visit_id: int, actor: Actor, dose: int, at: datetime, volume: float,
          refusal_: list[RecordedRefusal]) -> Callable[[Session], None]:
    """What an administration after the use window leaves, after its own rollback: the kit is
    not administered (it goes to destruction), the visit says so, and a major deviation is open."""

    def record(session: Session) -> None:
        ctx = lock(session, fetch(session, Visit, visit_id, "visit"), None)
        if visit_state(ctx.visit) in FINAL:
            return  # someone else has closed the visit in the meantime
        given = given_doses(session, ctx.visit)
        kit = ctx.held_kit
        if KitState(kit.state) in kits.MOVES["not_administered"].sources:
            kits.move(session, actor, kit, "not_administered", reason=f"{ctx.who}: use window passed")
            custody.record(session, actor, kit, "not administered", from_place=kit.location,
                           to_place=f"{ctx.site.code}: for destruction", condition="use window passed")
            custody.relocate(session, actor, kit, f"{ctx.site.code}: for destruction")
        set_state(session, actor, ctx, VisitState.incomplete if given else VisitState.not_administered,
                   reason="use window passed")
        deviation = deviations.raise_deviation(
            session, actor, origin="late_administration", severity="major", blinded_summary=LATE_SUMMARY,
            kit_id=key(kit), visit_id=key(ctx.visit),
            description=(f"{ctx.study.code} {ctx.who}, site {ctx.site.code}, kit {kit.number}: administration into "
                         f"the {gland_names(ctx.study)[dose - 1]} at {hhmm(at, ctx.site)} ({volume:g} mL) was refused "
                         f"because the use window ended at {hhmm(ctx.visit.use_by, ctx.site)}. Glands already "
                         f"administered: {', '.join(gland_short(ctx.study, d) for d in given) or 'none'}. The kit "
                         f"was recorded as not administered and goes to destruction."))
        refusal_[0].message += f" Deviation {deviation.number} was raised."

    return record


def _clock_of(ctx: VisitContext) -> tuple[datetime, datetime]:
    """When the preparation started and its use-by time (set together when it starts)."""
    started, use_by = ctx.visit.preparation_started_at, ctx.visit.use_by
    if started is None or use_by is None:
        raise InvalidInput(f"The preparation for {ctx.who} has not started.", field="visit")
    return started, use_by


def given_doses(session: Session, visit: Visit) -> list[int]:
    return list(session.scalars(select(col(Administration.dose)).where(col(Administration.visit_id) == visit.id)
                                .order_by(col(Administration.dose))))


def administer(session: Session, actor: Actor, visit: Visit, *, gland: object, volume_ml: object,
               administered_at: object = None, administered_by: str | None = None,
               seen_version: int | None = None) -> Administration:
    """One gland's injection: time (default now), volume, by whom. Each gland once; after the
    use-by time it is refused, the dose goes to destruction and a deviation is raised (even
    though the request fails). With every gland recorded the kit is administered."""
    ctx = lock(session, visit, seen_version)
    authorise(session, actor, ctx, "administer")
    kit = ctx.held_kit
    started, use_by = _clock_of(ctx)
    dose = parse_gland(ctx.study, gland)
    volume = parse_volume(volume_ml)
    now = utcnow()
    at = parse_time(administered_at, ctx.site, now)
    if at > now + CLOCK_SKEW:
        raise InvalidInput("The administration time is in the future.", field="administered_at")
    if at < started.replace(second=0, microsecond=0):  # times are typed to the minute
        raise InvalidInput(f"The administration time is before the preparation started "
                           f"({hhmm(started, ctx.site)}).", field="administered_at")
    by_name = (administered_by or "").strip() or actor.name
    if len(by_name) > 200:
        raise InvalidInput("The name is at most 200 characters.", field="administered_by")
    first = not given_doses(session, ctx.visit)
    existing = session.scalars(select(Administration).where(col(Administration.visit_id) == ctx.visit.id,
                                                            col(Administration.dose) == dose)).first()
    if existing is not None:
        raise Conflict(f"The {gland_names(ctx.study)[dose - 1]} is already recorded: {existing.volume_ml:g} mL at "
                       f"{hhmm(existing.administered_at, ctx.site)} by {existing.by_name}.", field="gland")
    for rule, field in DOSE_RULES:
        if why := rule(session, ctx, dose):
            raise InvalidInput(why, field=field)
    if at > use_by:
        holder: list[RecordedRefusal] = []
        refused = RecordedRefusal(
            f"Refused: the use window of kit {kit.number} ended at {hhmm(use_by, ctx.site)}; "
            f"an administration at {hhmm(at, ctx.site)} is not allowed. The kit is recorded as not administered "
            f"and goes to destruction.", "administered_at", _late(key(ctx.visit), actor, dose, at, volume, holder))
        holder.append(refused)
        raise refused
    row = Administration(visit_id=key(ctx.visit), kit_id=key(kit), dose=dose, administered_at=at, volume_ml=volume,
                         by_user=person(actor), by_name=by_name)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict(f"The {gland_names(ctx.study)[dose - 1]} is already recorded.", field="gland") from None
    record_donor(session, actor, ctx, row)
    custody.record(session, actor, kit, "administered", from_place=kit.location,
                   to_place=f"participant {participant_number(ctx.participant)}, {gland_names(ctx.study)[dose - 1]}")
    audit.record(session, actor, "administration recorded", "visit", ctx.ref, field=gland_short(ctx.study, dose),
                 new={"at": at, "volume_ml": volume, "by": by_name})
    if first and ctx.visit.treatment == 1:
        reschedule_later_visits(session, actor, ctx, clock.today(ctx.site, at))
    if len(given_doses(session, ctx.visit)) == ctx.study.doses_per_treatment:
        kits.move(session, actor, kit, "administer", reason=ctx.who)
        custody.relocate(session, actor, kit, f"{ctx.site.code}: administered")
        set_state(session, actor, ctx, VisitState.administered)
    elif visit_state(ctx.visit) is not VisitState.administering:
        set_state(session, actor, ctx, VisitState.administering)
    else:
        touch(ctx.visit)
    return row


def reschedule_later_visits(session: Session, actor: Actor, ctx: VisitContext, first_day: date) -> None:
    """Later treatments are due counted from the actual first administration (the registry's "4
    months apart"), not from randomisation: each later visit not yet under way moves, with the
    study file's window around its new target, audited. The same for both arms."""
    for treatment, target, start, end in schedule(ctx.study, first_day)[1:]:
        visit = session.scalars(select(Visit).where(col(Visit.participant_id) == ctx.participant.id,
                                                    col(Visit.treatment) == treatment)).first()
        if visit is None or visit_state(visit) is not VisitState.planned or visit.kit_id is not None:
            continue  # a kit assigned, or the visit under way: it keeps its window
        old = {"target": visit.target_date, "from": visit.window_start, "to": visit.window_end}
        new = {"target": target, "from": start, "to": end}
        if old == new:
            continue
        visit.target_date, visit.window_start, visit.window_end = target, start, end
        touch(visit)
        session.flush()
        audit.record(session, actor, "visit rescheduled", "visit", f"{ctx.ref.rsplit('/', 1)[0]}/T{treatment}",
                     field="window", old=old, new=new,
                     reason=f"treatment 1 first administered on {first_day.isoformat()}")


def record_not_administered(session: Session, actor: Actor, visit: Visit, reason: str | None, *,
                            seen_version: int | None = None) -> None:
    """The procedure was stopped, or the window passed without an injection: the rest of the dose
    is not administered and goes to destruction."""
    ctx = lock(session, visit, seen_version)
    authorise(session, actor, ctx, "not_administered")
    reason = audit.require_reason(reason)
    kit = ctx.held_kit
    kits.move(session, actor, kit, "not_administered", reason=f"{ctx.who}: {reason}")
    custody.record(session, actor, kit, "not administered", from_place=kit.location,
                   to_place=f"{ctx.site.code}: for destruction", condition=reason)
    custody.relocate(session, actor, kit, f"{ctx.site.code}: for destruction")
    given = given_doses(session, ctx.visit)
    set_state(session, actor, ctx, VisitState.incomplete if given else VisitState.not_administered, reason=reason)


