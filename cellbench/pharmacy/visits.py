"""The site: participants and their treatment visits, kit assignment and dispensing, the
preparation clock, administration per gland, and kits coming back to the pharmacy.

Blinding: this module knows no arm. It reaches the sealed compartment through its two blind-safe
doors only (`sealed.randomise`, `sealed.assign_kit`), which return a number or a kit. Every
state, clock, check, message, custody event and audit event below is the same for an active and
a placebo participant; the only words that differ between two participants are their numbers.

Visits have one transition table, VISIT_MOVES: which visit states an action starts from and who
may take it (the kit's own roles, from kits.MOVES). Its guards (the window, the previous
treatment) are small named rules; pages offer exactly `actions()`.

Concurrency: every use case on a visit locks the visit row (SELECT ... FOR UPDATE; SQLite's
writers are serialised anyway) and re-reads it, so two people acting on one visit at the same
moment are served one after the other and the second gets a Conflict, never a duplicate.
Pages and API clients may send the visit's version they saw: a stale one is a Conflict too.
"""
from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from .. import audit, clock, custody, deviations, kits, sealed, studies, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, Forbidden, InvalidInput, NotFound, RecordedRefusal
from ..models import (
    Administration,
    BlindedLot,
    Kit,
    KitState,
    Notification,
    Participant,
    Role,
    Site,
    Study,
    StudySite,
    User,
    Visit,
)
from ..specifications import versions as spec_versions

ENROLLERS = (Role.investigator,)
RANDOMISERS = (Role.investigator,)
# Who may read participants and visits (no arm is ever on them).
READERS = (Role.investigator, Role.pharmacist, Role.preparer, Role.monitor, Role.supply_manager, Role.qa)
PHARMACY = tuple(kits.MOVES["dispense"].roles)
PREPARERS = tuple(kits.MOVES["start_preparation"].roles)
ADMINISTRATORS = tuple(kits.MOVES["administer"].roles)
USE_WINDOW_SPEC = "asc-cs10"  # both arms' specifications carry the same window (parity-checked)
MAX_VOLUME_ML = 5.0
CLOCK_SKEW = timedelta(minutes=2)  # an administration time this far ahead of the server is still "now"
NO_KIT_MESSAGE = "No kit is available for this visit at this site; the supply manager has been told."
LATE_SUMMARY = "An administration after the use window was refused; the dose was sent to destruction."
_SCREENING = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,31}$")


class VisitState(str, enum.Enum):
    planned = "planned"
    kit_assigned = "kit_assigned"
    dispensed = "dispensed"
    in_preparation = "in_preparation"
    administering = "administering"  # some glands recorded
    administered = "administered"
    not_administered = "not_administered"
    incomplete = "incomplete"  # some glands administered, the rest not (window passed or aborted)


VISIT_LABELS = {
    VisitState.planned: "Planned",
    VisitState.kit_assigned: "Kit assigned, awaiting dispensing",
    VisitState.dispensed: "Dispensed to the preparer",
    VisitState.in_preparation: "Thawing or preparing",
    VisitState.administering: "Being administered",
    VisitState.administered: "Administered",
    VisitState.not_administered: "Not administered",
    VisitState.incomplete: "Partly administered",
}
FINAL = frozenset({VisitState.administered, VisitState.not_administered, VisitState.incomplete})
_ORDER = list(VisitState)  # the order a visit goes through (the three final states last)
OPEN = frozenset(VisitState) - FINAL


@dataclass(frozen=True)
class VisitMove:
    sources: frozenset[VisitState]
    roles: frozenset[Role]
    label: str


_S = VisitState
VISIT_MOVES: dict[str, VisitMove] = {
    "assign": VisitMove(frozenset({_S.planned}), kits.MOVES["allocate"].roles, "Assign a kit"),
    "dispense": VisitMove(frozenset({_S.kit_assigned}), kits.MOVES["dispense"].roles, "Scan and dispense"),
    # the assigned kit is damaged or missing before preparation: a new one, with re-authentication
    "replace": VisitMove(frozenset({_S.kit_assigned, _S.dispensed}), frozenset({Role.pharmacist}), "Replace the kit"),
    # the participant did not come: the kit goes back into the site's stock
    "unallocate": VisitMove(frozenset({_S.kit_assigned}), kits.MOVES["unallocate"].roles, "Put the kit back in stock"),
    "prepare": VisitMove(frozenset({_S.dispensed}), kits.MOVES["start_preparation"].roles, "Thaw or prepare"),
    "administer": VisitMove(frozenset({_S.in_preparation, _S.administering}), kits.MOVES["administer"].roles,
                            "Record administration"),
    "not_administered": VisitMove(frozenset({_S.in_preparation, _S.administering}),
                                  kits.MOVES["not_administered"].roles, "Record not administered"),
}


class NoKitAvailable(Conflict):
    """No kit of the participant's arm at the site: the same words for both arms. Raised by the
    routes after `assign` has committed what the attempt leaves (the supply manager's notification,
    the audit event, the sealed door's own log of the attempt)."""

    def __init__(self) -> None:
        super().__init__(NO_KIT_MESSAGE, field="kit")


# --- small helpers ----------------------------------------------------------------------------------


def visit_state(visit: Visit) -> VisitState:
    return VisitState(visit.state)


def visit_label(visit: Visit) -> str:
    return VISIT_LABELS[visit_state(visit)]


def use_window(session: Session) -> timedelta:
    """Thaw (ASC) or preparation (saline) start to the last administration: one window, both arms."""
    minutes = spec_versions.parsed(spec_versions.effective(session, USE_WINDOW_SPEC)).product.use_window_minutes
    return timedelta(minutes=minutes)


def gland_names(study: Study) -> list[str]:
    """Dose 1, 2, ... as the study names them (left, right submandibular gland)."""
    return list(studies.definition(study).schedule.dose_sites)


def gland_short(study: Study, dose: int) -> str:
    return gland_names(study)[dose - 1].split(" ")[0]


def participant_ref(study: Study, participant: Participant) -> str:
    """A participant's one entity id in the audit trail: "<study code>/<screening number>".

    The screening number is known from enrolment on and never changes; the randomisation number
    comes only at randomisation, so events before it (enrolment) and after it would otherwise
    sit under two ids. Every module writes participant events under this id (unblinding
    through `unblinding.participant_key`, the sealed compartment's log of its doors too), and
    visits under "<this>/T<treatment>", so one participant's history is one list."""
    return f"{study.code}/{participant.screening_number}"


def participant_number(participant: Participant) -> str:
    """How people call the participant: the randomisation number once there is one."""
    return participant.randomisation_number or participant.screening_number


@dataclass
class VisitContext:
    """A visit with what every rule and page needs around it, read once."""

    visit: Visit
    participant: Participant
    study: Study
    site: Site
    kit: Kit | None = None

    @property
    def ref(self) -> str:
        return f"{participant_ref(self.study, self.participant)}/T{self.visit.treatment}"

    @property
    def who(self) -> str:
        return f"participant {participant_number(self.participant)}, treatment {self.visit.treatment}"


def _context(session: Session, visit: Visit) -> VisitContext:
    participant = session.get(Participant, visit.participant_id)
    return VisitContext(visit, participant, session.get(Study, participant.study_id),
                        session.get(Site, participant.site_id),
                        session.get(Kit, visit.kit_id) if visit.kit_id else None)


def _lock(session: Session, visit: Visit, seen_version: int | None) -> VisitContext:
    """The visit row, locked and fresh, for a use case that changes it."""
    locked = session.scalars(select(Visit).where(Visit.id == visit.id).with_for_update()
                             .execution_options(populate_existing=True)).one()
    if seen_version is not None and int(seen_version) != locked.row_version:
        raise Conflict("Someone else acted on this visit since you opened it. Reload the page and check it.",
                       field="visit_version")
    return _context(session, locked)


def _touch(visit: Visit) -> None:
    visit.row_version += 1


def _set_state(session: Session, actor: Actor, ctx: VisitContext, new: VisitState, reason: str | None = None) -> None:
    old = visit_state(ctx.visit)
    ctx.visit.state = new.value
    _touch(ctx.visit)
    session.flush()
    audit.record(session, actor, "visit state changed", "visit", ctx.ref, field="state", old=VISIT_LABELS[old],
                 new=VISIT_LABELS[new], reason=reason)


def _replaced(visit: Visit) -> list[int]:
    return [int(part) for part in (visit.replaced_kit_ids or "").split(",") if part]


def _detach_kit(visit: Visit) -> None:
    """The visit lets go of its kit (replaced, returned, put back) and remembers it."""
    visit.replaced_kit_ids = ",".join(str(i) for i in [*_replaced(visit), visit.kit_id])
    visit.kit_id = None


def _in_date_on(site: Site, window: timedelta) -> date:
    """The kit must still be in date at the end of the use window, at the site."""
    return clock.today(site, utcnow() + window)


# --- rules (each says why it blocks, or None) --------------------------------------------------------


def outside_window(visit: Visit, today: date) -> str | None:
    if today < visit.window_start:
        return (f"Treatment {visit.treatment} may be given from {visit.window_start} to {visit.window_end}; "
                f"today is {today}.")
    if today > visit.window_end:
        return f"The window of treatment {visit.treatment} closed on {visit.window_end}; today is {today}."
    return None


def previous_not_administered(session: Session, visit: Visit) -> str | None:
    if visit.treatment == 1:
        return None
    previous = session.scalars(select(Visit).where(Visit.participant_id == visit.participant_id,
                                                   Visit.treatment == visit.treatment - 1)).one()
    if visit_state(previous) is not VisitState.administered:
        return (f"Treatment {previous.treatment} is not recorded as administered ({visit_label(previous).lower()}); "
                f"treatment {visit.treatment} cannot be dispensed.")
    return None


def kit_expired(session: Session, kit: Kit, on: date) -> str | None:
    blinded = kits.blinded_lot_of(session, kit)
    if blinded is None or blinded.expiry < on:
        return f"Kit {kit.number} expires {blinded.expiry if blinded else '(no expiry)'}: do not use it."
    return None


# --- the transition table: what may happen now --------------------------------------------------------


def guards(session: Session, ctx: VisitContext, action: str, today: date | None = None) -> list[tuple[str, str]]:
    """The named rules an action must pass besides the table: (field a refusal names, why)."""
    found = []
    if action in ("assign", "dispense"):
        if why := outside_window(ctx.visit, today or clock.today(ctx.site)):
            found.append(("window", why))
    if action == "assign":
        if why := previous_not_administered(session, ctx.visit):
            found.append(("treatment", why))
    return found


def refusal(session: Session, actor: Actor, ctx: VisitContext, action: str, today: date | None = None) -> str | None:
    """Why this person may not take this action on this visit now, or None."""
    move = VISIT_MOVES[action]
    if not actor.roles & move.roles:
        return f"Only {' or '.join(sorted(r.value for r in move.roles))} may do this."
    if visit_state(ctx.visit) not in move.sources:
        return f"The visit is {visit_label(ctx.visit).lower()}."
    blocked = guards(session, ctx, action, today)
    return blocked[0][1] if blocked else None


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    blocked: str | None  # why not now (the person's role allows it, the visit does not)


def actions(session: Session, actor: Actor, ctx: VisitContext) -> list[Action]:
    """The actions of VISIT_MOVES this person's roles allow at this visit's state, with any guard
    that blocks them now. Pages show the first as buttons and the second as reasons."""
    found = []
    today = clock.today(ctx.site)
    for name, move in VISIT_MOVES.items():
        if actor.roles & move.roles and visit_state(ctx.visit) in move.sources:
            found.append(Action(name, move.label, refusal(session, actor, ctx, name, today)))
    return found


def _authorise(session: Session, actor: Actor, ctx: VisitContext, action: str, *, field: str = "visit") -> None:
    move = VISIT_MOVES[action]
    if not actor.roles & move.roles:
        raise Forbidden(f"Only {' or '.join(sorted(r.value for r in move.roles))} may do this.")
    state = visit_state(ctx.visit)
    if state not in move.sources:
        if _ORDER.index(state) > max(_ORDER.index(s) for s in move.sources):
            # someone has already done this, or more: a second person acting at the same moment
            raise Conflict(f"{ctx.who[0].upper()}{ctx.who[1:]} is {visit_label(ctx.visit).lower()}: "
                           f"'{move.label.lower()}' is no longer possible. Reload and check the visit.", field=field)
        raise InvalidInput(f"{ctx.who[0].upper()}{ctx.who[1:]} is {visit_label(ctx.visit).lower()}: "
                           f"'{move.label.lower()}' is not possible now.", field=field)
    for name, why in guards(session, ctx, action):
        raise InvalidInput(why, field=name)


# --- participants ----------------------------------------------------------------------------------


def _screening_number(text: str | None) -> str:
    number = (text or "").strip().upper()
    if not _SCREENING.match(number) or not any(c.isdigit() for c in number):
        raise InvalidInput("A screening number is letters, digits and hyphens with at least one digit, such as "
                           "SCR-014. Never a name.", field="screening_number")
    return number


def _site_of_study(session: Session, study: Study, site_code: str | None) -> Site:
    code = (site_code or "").strip().upper()
    site = session.scalars(select(Site).where(Site.code == code)).first()
    if site is None or session.get(StudySite, (study.id, site.id)) is None:
        raise InvalidInput(f"Choose a site of {study.code}.", field="site")
    return site


def enrol(session: Session, actor: Actor, study: Study, *, site_code: str | None,
          screening_number: str | None) -> Participant:
    """A participant by screening number (no names are kept in cellbench), at a site of the study."""
    users.require_role(actor, *ENROLLERS)
    site = _site_of_study(session, study, site_code)
    number = _screening_number(screening_number)
    taken = select(Participant.id).where(Participant.study_id == study.id, Participant.screening_number == number)
    if session.scalar(taken) is not None:
        raise Conflict(f"Screening number {number} is already enrolled in {study.code}.", field="screening_number")
    participant = Participant(study_id=study.id, site_id=site.id, screening_number=number,
                              enrolled_by=actor.user_id, enrolled_at=utcnow())
    try:
        with session.begin_nested():  # two enrolments of one number at the same moment: one wins
            session.add(participant)
            session.flush()
    except IntegrityError:
        raise Conflict(f"Screening number {number} is already enrolled in {study.code}.",
                       field="screening_number") from None
    audit.record(session, actor, "participant enrolled", "participant", participant_ref(study, participant),
                 field="site", new=site.code)
    return participant


def schedule(study: Study, day: date) -> list[tuple[int, date, date, date]]:
    """(treatment, target, window start, window end) from the randomisation day: treatment 1 on
    that day, its window from that day to window_days later; treatment k at (k-1) intervals,
    ± window_days."""
    window = timedelta(days=study.window_days)
    rows = [(1, day, day, day + window)]
    for k in range(2, study.treatments + 1):
        target = day + timedelta(days=(k - 1) * study.interval_days)
        rows.append((k, target, target - window, target + window))
    return rows


def randomise(session: Session, actor: Actor, participant: Participant) -> Participant:
    """The next line of the sealed randomisation list gives the randomisation number (never the
    arm); the treatment visits follow from the study's schedule."""
    users.require_role(actor, *RANDOMISERS)
    study = session.get(Study, participant.study_id)
    # one randomisation at a time per study: two would read the same free line
    session.execute(select(Study.id).where(Study.id == study.id).with_for_update())
    participant = session.scalars(select(Participant).where(Participant.id == participant.id).with_for_update()
                                  .execution_options(populate_existing=True)).one()
    if participant.randomisation_number is not None:
        raise Conflict(f"{participant.screening_number} is already randomised as {participant.randomisation_number}.",
                       field="participant")
    number = sealed.randomise(session, actor, study, participant.id)
    now = utcnow()
    participant.randomisation_number, participant.randomised_at = number, now
    session.flush()
    ref = participant_ref(study, participant)
    audit.record(session, actor, "participant randomised", "participant", ref, field="randomisation_number",
                 new=number)
    site = session.get(Site, participant.site_id)
    for treatment, target, start, end in schedule(study, clock.today(site, now)):
        session.add(Visit(participant_id=participant.id, treatment=treatment, target_date=target, window_start=start,
                          window_end=end, state=VisitState.planned.value))
        session.flush()
        audit.record(session, actor, "visit planned", "visit", f"{ref}/T{treatment}", field="window",
                     new={"target": target, "from": start, "to": end})
    return participant


# --- dispensing -------------------------------------------------------------------------------------


def _notify_no_kit(session: Session, actor: Actor, ctx: VisitContext) -> None:
    today = clock.today(ctx.site)
    session.add(Notification(
        kind="no_kit_available", to_address=ctx.study.emergency_email, created_at=utcnow(),
        subject=f"{ctx.study.code}: no kit available at {ctx.site.code}",
        body=(f"No kit could be assigned to {ctx.who} at site {ctx.site.code} ({ctx.site.name}) on {today}. "
              f"The visit window is {ctx.visit.window_start} to {ctx.visit.window_end}. "
              f"Requested by {actor.name}. Please send kits to the site.")))
    audit.record(session, actor, "no kit available", "visit", ctx.ref, field="kit", new=None,
                 reason="supply manager notified")
    session.flush()


def _pick(session: Session, actor: Actor, ctx: VisitContext, window: timedelta) -> Kit | None:
    return sealed.assign_kit(session, actor, ctx.study, ctx.participant.randomisation_number, ctx.site.id,
                             in_date_on=_in_date_on(ctx.site, window), exclude=_replaced(ctx.visit))


def _allocate(session: Session, actor: Actor, ctx: VisitContext, kit: Kit, why: str) -> None:
    kits.move(session, actor, kit, "allocate", reason=f"{ctx.who}: {why}")
    ctx.visit.kit_id, ctx.kit = kit.id, kit
    session.flush()
    audit.record(session, actor, "kit assigned", "visit", ctx.ref, field="kit", new=kit.number, reason=why)
    _set_state(session, actor, ctx, VisitState.kit_assigned)


def assign(session: Session, actor: Actor, visit: Visit, *, seen_version: int | None = None) -> Kit | None:
    """A kit of the participant's arm, at the site, in date through the use window: chosen by the
    sealed compartment, allocated to the visit. The pharmacist then scans it to dispense.

    None when there is no such kit: the visit stays as it was and the supply manager is told, in
    the caller's transaction, which commits it; the caller then refuses with NoKitAvailable (the
    same words for both arms)."""
    ctx = _lock(session, visit, seen_version)
    _authorise(session, actor, ctx, "assign")
    kit = _pick(session, actor, ctx, use_window(session))
    if kit is None:
        _notify_no_kit(session, actor, ctx)
        return None
    _allocate(session, actor, ctx, kit, "assigned at the visit")
    return kit


def dispense(session: Session, actor: Actor, visit: Visit, code: str | None, secret_key: str, *,
             seen_version: int | None = None, kit_version: int | None = None) -> Kit:
    """The pharmacist scans the label of the kit in hand: the assigned kit is dispensed to the
    preparer; any other kit is refused, naming both numbers and nothing else."""
    ctx = _lock(session, visit, seen_version)
    _authorise(session, actor, ctx, "dispense")
    scanned = _scan(session, code, secret_key)
    assigned = ctx.kit
    if scanned.id != assigned.id:
        raise InvalidInput(f"This is kit {scanned.number}; the kit assigned to this visit is {assigned.number}.",
                           field="code")
    if KitState(assigned.state) is not KitState.allocated:
        raise InvalidInput(f"Kit {assigned.number} is {kits.state_label(assigned.state).lower()}: do not use it; "
                           "replace it.", field="code")
    if kit_version is not None and int(kit_version) != assigned.row_version:
        raise Conflict(f"Someone else acted on kit {assigned.number} at the same moment. Reload and check it.",
                       field="kit_version")
    if why := kit_expired(session, assigned, _in_date_on(ctx.site, use_window(session))):
        raise InvalidInput(f"{why} Replace it (it is unusable).", field="code")
    kits.move(session, actor, assigned, "dispense", reason=ctx.who, seen_version=kit_version)
    to_place = f"{ctx.site.code}: with the preparer"
    custody.record(session, actor, assigned, "dispensed", from_place=assigned.location, to_place=to_place,
                   condition="label scanned and matched")
    _relocate(session, actor, assigned, to_place)
    _set_state(session, actor, ctx, VisitState.dispensed)
    return assigned


def _relocate(session: Session, actor: Actor, kit: Kit, place: str) -> None:
    if kit.location != place:
        old, kit.location = kit.location, place[:100]
        session.flush()
        audit.record(session, actor, "kit moved", "kit", kit.number, field="location", old=old, new=kit.location)


REPLACEMENT_MOVES = {"damaged": "damage", "missing": "lose", "unusable": "unallocate"}


def replace_kit(session: Session, user: User, password: str, visit: Visit, *, what: str | None,
                reason: str | None, seen_version: int | None = None) -> Kit | None:
    """The assigned kit is damaged or missing before preparation (or unusable, such as past its
    expiry, while still in the pharmacy): the pharmacist says why and re-enters the password; the
    old kit is recorded damaged or missing (an unusable one goes back to stock, where the sealed
    assignment never picks it again for this visit) and a new kit is assigned, excluding every kit
    this visit had. With no kit left, the old kit's fate is still recorded, the visit waits for a
    kit, and the supply manager is told: returns None."""
    actor = users.actor(session, user)
    ctx = _lock(session, visit, seen_version)
    _authorise(session, actor, ctx, "replace")
    move = REPLACEMENT_MOVES.get((what or "").strip())
    if move is None:
        raise InvalidInput("Say what happened to the kit: damaged, missing or unusable.", field="what")
    old = ctx.kit
    held = KitState(old.state) is KitState.quarantined  # taken out of use after assignment: QA decides its fate
    if move == "unallocate" and not held and KitState(old.state) is not KitState.allocated:
        raise InvalidInput(f"Kit {old.number} has left the pharmacy; record it damaged or missing, or return it.",
                           field="what")
    reason = audit.require_reason(reason)
    users.reauthenticate(session, user, password)
    if not held:
        kits.move(session, actor, old, move, reason=f"{ctx.who}: {reason}")
        if move != "unallocate":
            custody.record(session, actor, old, what, from_place=old.location, condition=reason)
    _detach_kit(ctx.visit)
    session.flush()
    audit.record(session, actor, "kit replaced", "visit", ctx.ref, field="kit", old=old.number, new=None,
                 reason=f"{what}: {reason}")
    _set_state(session, actor, ctx, VisitState.planned, reason=f"kit {old.number} {what}")
    ctx.kit = None
    if outside_window(ctx.visit, clock.today(ctx.site)):
        return None
    new = _pick(session, actor, ctx, use_window(session))
    if new is None:
        _notify_no_kit(session, actor, ctx)
        return None
    _allocate(session, actor, ctx, new, f"replaces kit {old.number}")
    return new


def unallocate(session: Session, actor: Actor, visit: Visit, reason: str | None, *,
               seen_version: int | None = None) -> Kit:
    """The participant did not come: the assigned kit goes back into the site's stock."""
    ctx = _lock(session, visit, seen_version)
    _authorise(session, actor, ctx, "unallocate")
    reason = audit.require_reason(reason)
    kit = ctx.kit
    kits.move(session, actor, kit, "unallocate", reason=f"{ctx.who}: {reason}")
    _detach_kit(ctx.visit)
    session.flush()
    audit.record(session, actor, "kit put back in stock", "visit", ctx.ref, field="kit", old=kit.number, new=None,
                 reason=reason)
    _set_state(session, actor, ctx, VisitState.planned, reason=reason)
    return kit


# --- preparation ------------------------------------------------------------------------------------


def _scan(session: Session, code: str | None, secret_key: str) -> Kit:
    """A scanned label or typed number; an unknown kit is bad input to the scan field, not a missing page."""
    try:
        return kits.scan(session, code, secret_key)
    except NotFound as missing:
        raise InvalidInput(missing.message, field="code") from None


def visit_of_kit(session: Session, kit: Kit) -> Visit | None:
    return session.scalars(select(Visit).where(Visit.kit_id == kit.id)).first()


def start_preparation(session: Session, actor: Actor, code: str | None, secret_key: str) -> VisitContext:
    """The preparer scans the dispensed kit: thawing (ASC) or preparation (saline) starts now, and
    with it the use-by clock. Same fields, same steps, same window for both arms."""
    users.require_role(actor, *PREPARERS)
    kit = _scan(session, code, secret_key)
    visit = visit_of_kit(session, kit)
    if visit is None:
        raise InvalidInput(f"Kit {kit.number} is not dispensed for a visit ({kits.state_label(kit.state).lower()}).",
                           field="code")
    ctx = _lock(session, visit, None)
    if visit_state(ctx.visit) is not VisitState.dispensed and ctx.visit.preparation_started_at is not None:
        since = _hhmm(ctx.visit.preparation_started_at, ctx.site)
        raise Conflict(f"Kit {kit.number} has been in preparation since {since}.",
                       field="code")
    _authorise(session, actor, ctx, "prepare", field="code")
    now = utcnow()
    kits.move(session, actor, kit, "start_preparation", reason=ctx.who)
    ctx.visit.preparation_started_at, ctx.visit.use_by = now, now + use_window(session)
    session.flush()
    to_place = f"{ctx.site.code}: in preparation"
    custody.record(session, actor, kit, "preparation started", from_place=kit.location, to_place=to_place)
    _relocate(session, actor, kit, to_place)
    audit.record(session, actor, "preparation started", "visit", ctx.ref, field="use_by", new=ctx.visit.use_by)
    _set_state(session, actor, ctx, VisitState.in_preparation)
    return ctx


def _hhmm(moment: datetime, site: Site) -> str:
    here = moment.astimezone(clock.zone(site))
    offset = here.strftime("%z")
    return f"{here:%Y-%m-%d %H:%M} {offset[:3]}:{offset[3:]}"


# --- administration --------------------------------------------------------------------------------


def parse_gland(study: Study, value: object) -> int:
    text = str(value if value is not None else "").strip().lower()
    names = gland_names(study)
    for dose, name in enumerate(names, 1):
        if text in (str(dose), name.lower(), name.split(" ")[0].lower()):
            return dose
    raise InvalidInput(f"Choose the gland: {' or '.join(n.split(' ')[0] for n in names)}.", field="gland")


def parse_volume(value: object) -> float:
    text = str(value if value is not None else "").strip().replace(",", ".")
    try:
        volume = float(text)
    except ValueError:
        raise InvalidInput("Give the volume injected in mL, such as 1.0.", field="volume_ml") from None
    if not math.isfinite(volume) or volume <= 0 or volume > MAX_VOLUME_ML:
        raise InvalidInput(f"The volume is more than 0 and at most {MAX_VOLUME_ML:g} mL.", field="volume_ml")
    return volume


def parse_time(value: object, site: Site, now: datetime) -> datetime:
    """A time as typed (site's local time, or ISO 8601 with an offset); empty means now."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value or "").strip()
        if not text:
            return now
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput("Give the time as YYYY-MM-DD HH:MM.", field="administered_at") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=clock.zone(site))
    return moment


def _late(visit_id: int, actor: Actor, dose: int, at: datetime, volume: float,
          refusal_: list[RecordedRefusal]) -> Callable[[Session], None]:
    """What an administration after the use window leaves, after its own rollback: the kit is
    not administered (it goes to destruction), the visit says so, and a major deviation is open."""

    def record(session: Session) -> None:
        ctx = _lock(session, session.get(Visit, visit_id), None)
        if visit_state(ctx.visit) in FINAL:
            return  # someone else has closed the visit in the meantime
        given = _given(session, ctx.visit)
        kit = ctx.kit
        if KitState(kit.state) in kits.MOVES["not_administered"].sources:
            kits.move(session, actor, kit, "not_administered", reason=f"{ctx.who}: use window passed")
            custody.record(session, actor, kit, "not administered", from_place=kit.location,
                           to_place=f"{ctx.site.code}: for destruction", condition="use window passed")
            _relocate(session, actor, kit, f"{ctx.site.code}: for destruction")
        _set_state(session, actor, ctx, VisitState.incomplete if given else VisitState.not_administered,
                   reason="use window passed")
        deviation = deviations.raise_deviation(
            session, actor, origin="late_administration", severity="major", blinded_summary=LATE_SUMMARY,
            kit_id=kit.id, visit_id=ctx.visit.id,
            description=(f"{ctx.study.code} {ctx.who}, site {ctx.site.code}, kit {kit.number}: administration into "
                         f"the {gland_names(ctx.study)[dose - 1]} at {_hhmm(at, ctx.site)} ({volume:g} mL) was refused "
                         f"because the use window ended at {_hhmm(ctx.visit.use_by, ctx.site)}. Glands already "
                         f"administered: {', '.join(gland_short(ctx.study, d) for d in given) or 'none'}. The kit "
                         f"was recorded as not administered and goes to destruction."))
        refusal_[0].message += f" Deviation {deviation.number} was raised."

    return record


def _given(session: Session, visit: Visit) -> list[int]:
    return list(session.scalars(select(Administration.dose).where(Administration.visit_id == visit.id)
                                .order_by(Administration.dose)))


def administer(session: Session, actor: Actor, visit: Visit, *, gland: object, volume_ml: object,
               administered_at: object = None, administered_by: str | None = None,
               seen_version: int | None = None) -> Administration:
    """One gland's injection: time (default now), volume, by whom. Each gland once; after the
    use-by time it is refused, the dose goes to destruction and a deviation is raised (even
    though the request fails). With every gland recorded the kit is administered."""
    ctx = _lock(session, visit, seen_version)
    _authorise(session, actor, ctx, "administer")
    dose = parse_gland(ctx.study, gland)
    volume = parse_volume(volume_ml)
    now = utcnow()
    at = parse_time(administered_at, ctx.site, now)
    if at > now + CLOCK_SKEW:
        raise InvalidInput("The administration time is in the future.", field="administered_at")
    if at < ctx.visit.preparation_started_at.replace(second=0, microsecond=0):  # times are typed to the minute
        raise InvalidInput(f"The administration time is before the preparation started "
                           f"({_hhmm(ctx.visit.preparation_started_at, ctx.site)}).", field="administered_at")
    by_name = (administered_by or "").strip() or actor.name
    if len(by_name) > 200:
        raise InvalidInput("The name is at most 200 characters.", field="administered_by")
    existing = session.scalars(select(Administration).where(Administration.visit_id == ctx.visit.id,
                                                            Administration.dose == dose)).first()
    if existing is not None:
        raise Conflict(f"The {gland_names(ctx.study)[dose - 1]} is already recorded: {existing.volume_ml:g} mL at "
                       f"{_hhmm(existing.administered_at, ctx.site)} by {existing.by_name}.", field="gland")
    if at > ctx.visit.use_by:
        holder: list[RecordedRefusal] = []
        refused = RecordedRefusal(
            f"Refused: the use window of kit {ctx.kit.number} ended at {_hhmm(ctx.visit.use_by, ctx.site)}; "
            f"an administration at {_hhmm(at, ctx.site)} is not allowed. The kit is recorded as not administered "
            f"and goes to destruction.", "administered_at", _late(ctx.visit.id, actor, dose, at, volume, holder))
        holder.append(refused)
        raise refused
    row = Administration(visit_id=ctx.visit.id, kit_id=ctx.kit.id, dose=dose, administered_at=at, volume_ml=volume,
                         by_user=actor.user_id, by_name=by_name)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict(f"The {gland_names(ctx.study)[dose - 1]} is already recorded.", field="gland") from None
    kit = ctx.kit
    custody.record(session, actor, kit, "administered", from_place=kit.location,
                   to_place=f"participant {participant_number(ctx.participant)}, {gland_names(ctx.study)[dose - 1]}")
    audit.record(session, actor, "administration recorded", "visit", ctx.ref, field=gland_short(ctx.study, dose),
                 new={"at": at, "volume_ml": volume, "by": by_name})
    if len(_given(session, ctx.visit)) == ctx.study.doses_per_treatment:
        kits.move(session, actor, kit, "administer", reason=ctx.who)
        _relocate(session, actor, kit, f"{ctx.site.code}: administered")
        _set_state(session, actor, ctx, VisitState.administered)
    elif visit_state(ctx.visit) is not VisitState.administering:
        _set_state(session, actor, ctx, VisitState.administering)
    else:
        _touch(ctx.visit)
    return row


def record_not_administered(session: Session, actor: Actor, visit: Visit, reason: str | None, *,
                            seen_version: int | None = None) -> None:
    """The procedure was stopped, or the window passed without an injection: the rest of the dose
    is not administered and goes to destruction."""
    ctx = _lock(session, visit, seen_version)
    _authorise(session, actor, ctx, "not_administered")
    reason = audit.require_reason(reason)
    kit = ctx.kit
    kits.move(session, actor, kit, "not_administered", reason=f"{ctx.who}: {reason}")
    custody.record(session, actor, kit, "not administered", from_place=kit.location,
                   to_place=f"{ctx.site.code}: for destruction", condition=reason)
    _relocate(session, actor, kit, f"{ctx.site.code}: for destruction")
    given = _given(session, ctx.visit)
    _set_state(session, actor, ctx, VisitState.incomplete if given else VisitState.not_administered, reason=reason)


# --- returns ----------------------------------------------------------------------------------------


def return_kit(session: Session, actor: Actor, code: str | None, secret_key: str, condition: str | None) -> Kit:
    """A kit in the site's stock, or assigned or dispensed but not prepared, comes back to the
    pharmacy with its condition. A visit it was assigned to waits for another kit."""
    users.require_role(actor, *kits.MOVES["return"].roles)
    kit = _scan(session, code, secret_key)
    condition = (condition or "").strip()
    if not condition:
        raise InvalidInput("Describe the kit's condition as it comes back (e.g. intact, seal broken).",
                           field="condition")
    if len(condition) > 200:
        raise InvalidInput("The condition is at most 200 characters.", field="condition")
    if KitState(kit.state) not in kits.MOVES["return"].sources:
        raise InvalidInput(f"Kit {kit.number} is {kits.state_label(kit.state).lower()}: only a kit in stock, "
                           "assigned or dispensed but not yet prepared can be returned.", field="code")
    visit = visit_of_kit(session, kit)
    if visit is not None:
        ctx = _lock(session, visit, None)
        _detach_kit(ctx.visit)
        session.flush()
        audit.record(session, actor, "kit returned", "visit", ctx.ref, field="kit", old=kit.number, new=None,
                     reason=condition)
        _set_state(session, actor, ctx, VisitState.planned, reason=f"kit {kit.number} returned")
    kits.move(session, actor, kit, "return", reason=condition)
    site = session.get(Site, kit.site_id) if kit.site_id else None
    to_place = f"{site.code if site else kit.location}: pharmacy returns"
    custody.record(session, actor, kit, "returned", from_place=kit.location, to_place=to_place, condition=condition)
    _relocate(session, actor, kit, to_place)
    return kit


# --- reading ----------------------------------------------------------------------------------------


def participant_by_ref(session: Session, study_code: str, screening_number: str) -> Participant:
    study = studies.by_code(session, study_code)
    number = (screening_number or "").strip().upper()
    participant = session.scalars(select(Participant).where(Participant.study_id == study.id,
                                                            Participant.screening_number == number)).first()
    if participant is None:
        raise NotFound(f"No participant {number} in {study.code}.", field="participant")
    return participant


def visit_by_ref(session: Session, study_code: str, screening_number: str, treatment: object) -> Visit:
    participant = participant_by_ref(session, study_code, screening_number)
    try:
        number = int(str(treatment))
    except ValueError:
        raise NotFound(f"No treatment '{treatment}'.", field="treatment") from None
    visit = session.scalars(select(Visit).where(Visit.participant_id == participant.id,
                                                Visit.treatment == number)).first()
    if visit is None:
        raise NotFound(f"{participant_number(participant)} has no treatment {number} visit"
                       f"{'' if participant.randomisation_number else ' (not randomised yet)'}.", field="treatment")
    return visit


def participants(session: Session, study: Study | None = None) -> list[tuple[Participant, Study, Site]]:
    query = (select(Participant, Study, Site).join(Study, Study.id == Participant.study_id)
             .join(Site, Site.id == Participant.site_id))
    if study is not None:
        query = query.where(Participant.study_id == study.id)
    return list(session.execute(query.order_by(Study.code, Participant.screening_number)).all())


def visits_of(session: Session, participant: Participant) -> list[Visit]:
    return list(session.scalars(select(Visit).where(Visit.participant_id == participant.id).order_by(Visit.treatment)))


def context(session: Session, visit: Visit) -> VisitContext:
    return _context(session, visit)


@dataclass
class AdministrationView:
    gland: str
    administered_at: datetime
    volume_ml: float
    administered_by: str
    recorded_by: str


@dataclass
class VisitView:
    """Everything a page or the API shows of a visit: the same shape and words for both arms."""

    ref: str
    study: str
    site: str
    participant: str
    screening_number: str
    treatment: int
    target_date: date
    window_start: date
    window_end: date
    state: str
    state_label: str
    kit_number: str | None
    kit_state_label: str | None
    blinded_lot: str | None
    expiry: date | None
    preparation_started_at: datetime | None
    use_by: datetime | None
    administrations: list[AdministrationView]
    glands: list[str]
    replaced_kits: list[str]
    visit_version: int
    kit_version: int | None
    actions: list[Action] = field(default_factory=list)

    @property
    def allowed(self) -> list[str]:
        return [a.name for a in self.actions if a.blocked is None]

    def may(self, name: str) -> bool:
        return name in self.allowed


def view(session: Session, actor: Actor, visit: Visit) -> VisitView:
    ctx = _context(session, visit)
    blinded = session.get(BlindedLot, ctx.kit.blinded_lot_id) if ctx.kit and ctx.kit.blinded_lot_id else None
    names = gland_names(ctx.study)
    given = []
    for row in session.scalars(select(Administration).where(Administration.visit_id == visit.id)
                               .order_by(Administration.dose)):
        recorder = session.get(User, row.by_user)
        given.append(AdministrationView(names[row.dose - 1], row.administered_at, row.volume_ml, row.by_name,
                                        recorder.full_name if recorder else ""))
    replaced = [session.get(Kit, kit_id).number for kit_id in _replaced(visit)]
    return VisitView(
        ref=ctx.ref, study=ctx.study.code, site=ctx.site.code, participant=participant_number(ctx.participant),
        screening_number=ctx.participant.screening_number, treatment=visit.treatment, target_date=visit.target_date,
        window_start=visit.window_start, window_end=visit.window_end, state=visit.state, state_label=visit_label(visit),
        kit_number=ctx.kit.number if ctx.kit else None,
        kit_state_label=kits.state_label(ctx.kit.state) if ctx.kit else None,
        blinded_lot=blinded.code if blinded else None, expiry=blinded.expiry if blinded else None,
        preparation_started_at=visit.preparation_started_at, use_by=visit.use_by, administrations=given,
        glands=names, replaced_kits=replaced, visit_version=visit.row_version,
        kit_version=ctx.kit.row_version if ctx.kit else None, actions=actions(session, actor, ctx))


def _open_visits(session: Session, states: frozenset[VisitState]):
    return session.execute(select(Visit, Participant, Site).join(Participant, Participant.id == Visit.participant_id)
                           .join(Site, Site.id == Participant.site_id)
                           .where(Visit.state.in_([s.value for s in states]))
                           .order_by(Visit.window_end, Participant.screening_number, Visit.treatment)).all()


def due_today(session: Session, states: frozenset[VisitState] = OPEN) -> list[Visit]:
    """Open visits whose window includes today at their site."""
    return [visit for visit, _p, site in _open_visits(session, states)
            if visit.window_start <= clock.today(site) <= visit.window_end]


def awaiting_dispensing(session: Session) -> list[Visit]:
    return due_today(session, frozenset({VisitState.planned, VisitState.kit_assigned}))


def to_prepare(session: Session) -> list[Visit]:
    return [visit for visit, _p, _s in _open_visits(session, frozenset({VisitState.dispensed}))]


def preparations_running(session: Session) -> list[Visit]:
    """Preparations whose clock is running, soonest use-by first (past ones too, until closed)."""
    rows = [visit for visit, _p, _s in _open_visits(session, frozenset({VisitState.in_preparation,
                                                                        VisitState.administering}))]
    return sorted(rows, key=lambda v: v.use_by)


def minutes_left(visit: Visit, now: datetime | None = None) -> int:
    return max(0, math.ceil(((visit.use_by - (now or utcnow())).total_seconds()) / 60)) if visit.use_by else 0
