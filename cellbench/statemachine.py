"""One shape for every state machine: lots, kits, shipments, visits, deviations, sealed lists, kit
quarantines and destructions each keep their lifecycle as one `Machine` of `Transition`s.

A transition names the states it starts from, the state it ends in, who may make it, the named
guard rules that must all pass, and the meaning of the signature it needs, if any. Pages and the
API ask the machine which actions this actor may take now (`allowed`), so a button is never shown
for a move the service would refuse; the service asks the same machine (`check`) before it changes
anything, so the two can never disagree.

A guard is a small named function returning why it blocks (a sentence for the person) or None. It
is called with whatever the machine's owner passes to `check`/`allowed` after the subject (the
session, the actor, ...), so each machine keeps the guards that fit its records. Modules that hold
rules the owner must not import (the release gates for lots, which would close an import cycle)
add them with `add_guards` when they are imported, and the machine's tests prove they are there.

Every machine registers itself by its subject (`machines()`), so tests can walk every transition
of every lifecycle, and a new one cannot be forgotten. A service takes the subject's row with
`claim` before it reads the state it checks: of two people making the same move at once, the
second then reads the first one's result and is refused, instead of both passing the check.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Generic, TypeVar

from sqlmodel import Session

from .errors import Forbidden, InvalidInput, NotFound
from .models import Meaning, Role

S = TypeVar("S", bound=Enum)
T = TypeVar("T")  # the subject: a lot, a kit, a shipment ...
Guard = Callable[..., "str | None"]


@dataclass(frozen=True)
class Transition(Generic[S]):
    """One allowed move."""

    sources: frozenset[S]
    target: S | None  # None: back to the state the subject was in before (a hold, a quarantine)
    roles: frozenset[Role]
    guards: tuple[Guard, ...] = ()
    signature: Meaning | None = None  # the move is signed with this meaning (password re-entered)
    needs_reason: bool = False


@dataclass
class Machine(Generic[T, S]):
    """A lifecycle: its name as people say it ("lot", "kit"), how to read a subject's state, and
    the table of transitions by action name."""

    subject: str
    state_of: Callable[[T], S]
    table: Mapping[str, Transition[S]]
    _extra: dict[str, tuple[Guard, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = _MACHINES.setdefault(self.subject, self)
        if known is not self:  # refusals and the race tests name machines by their subject
            raise ValueError(f"Two state machines of one subject: {self.subject}.")

    def transition(self, action: str) -> Transition[S]:
        move = self.table.get(action)
        if move is None:
            raise NotFound(f"Unknown {self.subject} action '{action}'.", field="action")
        extra = self._extra.get(action)
        return replace(move, guards=move.guards + extra) if extra else move

    def add_guards(self, action: str, guards: Iterable[Guard]) -> None:
        """Rules held elsewhere that this action must also pass (registered at import)."""
        self.transition(action)
        self._extra[action] = self._extra.get(action, ()) + tuple(guards)

    def role_refusal(self, action: str, roles: Iterable[Role]) -> str | None:
        move = self.transition(action)
        if move.roles & set(roles):
            return None
        who = " or ".join(sorted(r.value.replace("_", " ") for r in move.roles))
        return f"Only {who} may {words(action)} a {self.subject}."

    def state_refusal(self, subject: T, action: str) -> str | None:
        state = self.state_of(subject)
        if state in self.transition(action).sources:
            return None
        return f"This {self.subject} is {words(state.value)}; it cannot be moved by '{words(action)}' now."

    def guard_refusals(self, subject: T, action: str, *context: object) -> list[str]:
        return [why for guard in self.transition(action).guards if (why := guard(subject, *context))]

    def refusal(self, subject: T, action: str, roles: Iterable[Role], *context: object) -> str | None:
        """Why this actor may not make this move now, or None."""
        return (self.role_refusal(action, roles) or self.state_refusal(subject, action)
                or next(iter(self.guard_refusals(subject, action, *context)), None))

    def check(self, subject: T, action: str, roles: Iterable[Role], *context: object) -> Transition[S]:
        """The transition, if this actor may make it now; else the error that says why."""
        move = self.transition(action)
        if why := self.role_refusal(action, roles):
            raise Forbidden(why)
        if why := self.state_refusal(subject, action):
            raise InvalidInput(why, field="action")
        blocking = self.guard_refusals(subject, action, *context)
        if blocking:
            raise InvalidInput("Not yet: " + " ".join(blocking), field="action")
        return move

    def allowed(self, subject: T, roles: Iterable[Role], *context: object, guarded: bool = False) -> list[str]:
        """The actions the table allows this actor now (guards too when `guarded`): what pages show."""
        roles = frozenset(roles)
        state = self.state_of(subject)
        return [action for action, move in self.table.items()
                if state in move.sources and move.roles & roles
                and (not guarded or not self.guard_refusals(subject, action, *context))]

    def target(self, subject: T, action: str, before: S | None = None) -> S:
        """Where the move ends: its target, or the state before (for a move back)."""
        move = self.transition(action)
        if move.target is not None:
            return move.target
        if before is None:
            raise InvalidInput(f"This {self.subject} has no state to go back to.", field="action")
        return before

    def actions_into(self, state: S) -> list[str]:
        return [action for action, move in self.table.items() if move.target == state]


_MACHINES: dict[str, Machine] = {}


def machines() -> dict[str, Machine]:
    """Every machine defined so far (the modules imported so far), by subject."""
    return dict(_MACHINES)


def claim(session: Session, row: object) -> None:
    """Take this row for the transaction and read it again, before reading the state to check.

    On PostgreSQL SELECT ... FOR UPDATE: a second transaction making a move on the same row waits
    here until the first commits, then reads its result, so the state check refuses it (never a
    second signature, never a duplicate move). SQLite writers are serialised already (db.write:
    BEGIN IMMEDIATE under a process lock), so there the re-read alone is enough. Call it before
    changing the row: reading it again drops changes not yet flushed."""
    session.refresh(row, with_for_update=True)


def words(name: str) -> str:
    """An action or state name as a sentence says it."""
    return name.replace("_", " ")
