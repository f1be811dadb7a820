"""The visit state machine: one table, `VISIT_MOVES` (`MACHINE`), says which visit states an action
starts from, where it ends, who may take it (the kit's own roles, from kits.MOVES) and the named
guards it must pass (the window, the previous treatment). Every use case asks it before it changes
a visit, and pages offer exactly `actions()`.

Concurrency: a second person acting on a visit someone has just moved on gets a Conflict (the
action is no longer possible), not a plain refusal.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit, clock, kits, study_data, users
from ..audit import Actor
from ..errors import Conflict, Forbidden, InvalidInput
from ..models import Role, Study, Visit
from ..statemachine import Machine, Transition
from . import counts
from .records import Earlier, VisitContext, touch

ENROLLERS = (Role.investigator,)
RANDOMISERS = (Role.investigator,)
# Who may read participants and visits (no arm is ever on them).
READERS = (Role.investigator, Role.pharmacist, Role.preparer, Role.monitor, Role.supply_manager, Role.qa)
PHARMACY = tuple(kits.MOVES["dispense"].roles)
PREPARERS = tuple(kits.MOVES["start_preparation"].roles)
ADMINISTRATORS = tuple(kits.MOVES["administer"].roles)


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


def visit_state(visit: Visit | Earlier) -> VisitState:
    return VisitState(visit.state)


def visit_label(visit: Visit | Earlier) -> str:
    return VISIT_LABELS[visit_state(visit)]


# --- the guards: each says why it blocks, or None ------------------------------------------------------


def outside_window(visit: Visit, today: date) -> str | None:
    if today < visit.window_start:
        return (f"Treatment {visit.treatment} may be given from {visit.window_start} to {visit.window_end}; "
                f"today is {today}.")
    if today > visit.window_end:
        return f"The window of treatment {visit.treatment} closed on {visit.window_end}; today is {today}."
    return None


def previous_not_administered(session: Session, visit: Visit,
                              previous: Visit | Earlier | None = None) -> str | None:
    """Why the previous treatment blocks this one; `previous`: that visit when already read."""
    if visit.treatment == 1:
        return None
    if previous is None:
        previous = session.scalars(select(Visit).where(col(Visit.participant_id) == visit.participant_id,
                                                       col(Visit.treatment) == visit.treatment - 1)).one()
    if visit_state(previous) is not VisitState.administered:
        return (f"Treatment {previous.treatment} is not recorded as administered ({visit_label(previous).lower()}); "
                f"treatment {visit.treatment} cannot be dispensed.")
    return None


def study_locked(session: Session, study: Study) -> str | None:
    """Why no more blinded site work is recorded in this study: its database is locked (and
    perhaps unblinded since, study_data). Enrolment, randomisation and every visit action ask it."""
    if study_data.standing(session, study).state is study_data.DataState.open:
        return None
    return (f"The database of {study.code} is locked: no enrolment, randomisation, kit assignment, dispensing, "
            "preparation or administration is recorded in it any more.")


def require_study_open(session: Session, study: Study) -> None:
    """Refuse enrolment or randomisation in a locked study (study_locked), naming the study."""
    if why := study_locked(session, study):
        raise InvalidInput(why, field="study")


# The table's guards are called with the visit's context, the session and the site's day.
# A page of visits reads the lock and the previous visits once (ctx.ahead); a single visit reads them here.
def database_open(ctx: VisitContext, session: Session, today: date) -> str | None:
    return ctx.ahead.study_locked if ctx.ahead else study_locked(session, ctx.study)


def in_window(ctx: VisitContext, session: Session, today: date) -> str | None:
    return outside_window(ctx.visit, today)


def previous_given(ctx: VisitContext, session: Session, today: date) -> str | None:
    return previous_not_administered(session, ctx.visit, ctx.ahead.previous if ctx.ahead else None)


# The field a guard's refusal names (pages show it beside that field; clients read it).
GUARD_FIELDS = {in_window: "window", previous_given: "treatment", database_open: "study"}
# Asked before every visit action, whatever the table's own guards.
EVERY_ACTION = (database_open,)

_S = VisitState
_T = Transition[VisitState]
VISIT_MOVES: dict[str, _T] = {
    "assign": _T(frozenset({_S.planned}), _S.kit_assigned, kits.MOVES["allocate"].roles,
                 guards=(in_window, previous_given)),
    "dispense": _T(frozenset({_S.kit_assigned}), _S.dispensed, kits.MOVES["dispense"].roles, guards=(in_window,)),
    # the assigned kit is damaged or missing before preparation: a new one, with re-authentication
    # (back to planned; a new kit, when one is found, assigns the visit again)
    "replace": _T(frozenset({_S.kit_assigned, _S.dispensed}), _S.planned, frozenset({Role.pharmacist}),
                  needs_reason=True),
    # the participant did not come: the kit goes back into the site's stock
    "unallocate": _T(frozenset({_S.kit_assigned}), _S.planned, kits.MOVES["unallocate"].roles, needs_reason=True),
    "prepare": _T(frozenset({_S.dispensed}), _S.in_preparation, kits.MOVES["start_preparation"].roles),
    # one gland at a time: administering until the last, then administered
    "administer": _T(frozenset({_S.in_preparation, _S.administering}), _S.administered,
                     kits.MOVES["administer"].roles),
    # incomplete instead when some glands were already given
    "not_administered": _T(frozenset({_S.in_preparation, _S.administering}), _S.not_administered,
                           kits.MOVES["not_administered"].roles, needs_reason=True),
}


def _state_of(subject: Visit | VisitContext) -> VisitState:
    """A visit's state, from the visit or its context."""
    visit = subject.visit if isinstance(subject, VisitContext) else subject
    if not isinstance(visit, Visit):
        raise TypeError(f"A visit's state is read from a visit, not {type(subject).__name__}.")
    return visit_state(visit)


MACHINE: Machine[Visit | VisitContext, VisitState] = Machine("visit", _state_of, VISIT_MOVES)
# How pages name each action (buttons, and the refusals that name it).
ACTION_LABELS = {
    "assign": "Assign a kit",
    "dispense": "Scan and dispense",
    "replace": "Replace the kit",
    "unallocate": "Put the kit back in stock",
    "prepare": "Thaw or prepare",
    "administer": "Record administration",
    "not_administered": "Record not administered",
}


def set_state(session: Session, actor: Actor, ctx: VisitContext, new: VisitState, reason: str | None = None) -> None:
    old = visit_state(ctx.visit)
    ctx.visit.state = new.value
    touch(ctx.visit)
    session.flush()
    audit.record(session, actor, "visit state changed", "visit", ctx.ref, field="state", old=VISIT_LABELS[old],
                 new=VISIT_LABELS[new], reason=reason)
    counts.moved(session, ctx.participant, old, new)  # after the audit event: see counts.py


def guards(session: Session, ctx: VisitContext, action: str, today: date | None = None) -> list[tuple[str, str]]:
    """The table's guards this action fails now, after the study's lock: (field a refusal names, why)."""
    rules = (*EVERY_ACTION, *MACHINE.transition(action).guards)
    day = today or clock.today(ctx.site)
    return [(GUARD_FIELDS.get(rule, "visit"), why) for rule in rules if (why := rule(ctx, session, day))]


def _only(action: str) -> str:
    return f"Only {' or '.join(sorted(r.value for r in VISIT_MOVES[action].roles))} may do this."


def refusal(session: Session, actor: Actor, ctx: VisitContext, action: str, today: date | None = None) -> str | None:
    """Why this person may not take this action on this visit now, or None."""
    if MACHINE.role_refusal(action, actor.roles):
        return _only(action)
    if outside := users.scope_refusal(actor, ctx.site, ctx.study):
        return outside[1]
    if MACHINE.state_refusal(ctx, action):
        return f"The visit is {visit_label(ctx.visit).lower()}."
    blocked = guards(session, ctx, action, today)
    return blocked[0][1] if blocked else None


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    blocked: str | None  # why not now (the person's role allows it, the visit does not)


def actions(session: Session, actor: Actor, ctx: VisitContext) -> list[Action]:
    """The actions the table allows this person's roles at this visit's state, with any guard
    that blocks them now. Pages show the first as buttons and the second as reasons."""
    today = clock.today(ctx.site)
    return [Action(name, ACTION_LABELS[name], refusal(session, actor, ctx, name, today))
            for name in MACHINE.allowed(ctx, actor.roles)]


def authorise(session: Session, actor: Actor, ctx: VisitContext, action: str, *, field: str = "visit") -> _T:
    """The table's move, if this person may take it on this visit now; else the refusal. Every visit
    action passes here, so this is where a visit outside the person's sites or studies is refused."""
    move = MACHINE.transition(action)
    if MACHINE.role_refusal(action, actor.roles):
        raise Forbidden(_only(action))
    # another site's or study's visit: refused before its state is said (the same for both arms)
    users.require_scope(actor, ctx.site, ctx.study)
    if MACHINE.state_refusal(ctx, action):
        state, label = visit_state(ctx.visit), ACTION_LABELS[action].lower()
        who = f"{ctx.who[0].upper()}{ctx.who[1:]}"
        if _ORDER.index(state) > max(_ORDER.index(s) for s in move.sources):
            # someone has already done this, or more: a second person acting at the same moment
            raise Conflict(f"{who} is {visit_label(ctx.visit).lower()}: '{label}' is no longer possible. Reload and "
                           "check the visit.", field=field)
        raise InvalidInput(f"{who} is {visit_label(ctx.visit).lower()}: '{label}' is not possible now.", field=field)
    for name, why in guards(session, ctx, action):
        raise InvalidInput(why, field=name)
    return move
