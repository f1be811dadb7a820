"""The sealed compartment's rules that need no sealed table: who may do what in it, the kinds of
list it keeps and their one lifecycle, the shape of a list line, and how its log names a
participant. `sealed` (the only module that names a sealed table) applies them; this module never
imports it, so supply's list work can share them without an import cycle.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from sqlmodel import Session, col, select

from .models import Meaning, Participant, Role, Study
from .statemachine import Machine, Transition

LIST_KINDS = {"randomisation": "randomisation list", "kit": "kit list"}
LIST_MAKERS = frozenset({Role.supply_manager})  # generate, import, seal and discard lists
# see lists, contents and compositions; QC analysts too, because their OOS result quarantines kits
READERS = frozenset({Role.supply_manager, Role.qa, Role.qp, Role.qc_analyst})
FILLERS = frozenset({Role.supply_manager})  # packaging runs put units into kits
SHORTAGE_HANDLERS = frozenset({Role.supply_manager})  # told of "no kit" answers, with the arm; acknowledge them


@dataclass(frozen=True)
class Line:
    """One line of a randomisation or kit list, as generated, imported or stored."""

    position: int
    block: int
    key: str  # participant number or kit number
    arm: str


class ListState(str, Enum):
    draft = "draft"
    sealed = "sealed"
    discarded = "discarded"


class _Stated(Protocol):  # what the list machine reads of a list: its state (the header, never its lines)
    @property
    def state(self) -> str: ...


_L = Transition[ListState]
_DRAFT = frozenset({ListState.draft})

# The lifecycle of a randomisation or kit list: checked as a draft, then sealed with a signature
# (for ever) or discarded with a reason. A sealed list is never discarded.
LIST_MOVES: dict[str, _L] = {
    "seal": _L(_DRAFT, ListState.sealed, LIST_MAKERS, signature=Meaning.approved),
    "discard": _L(_DRAFT, ListState.discarded, LIST_MAKERS, needs_reason=True),
}
LIST_MACHINE: Machine[_Stated, ListState] = Machine("list", lambda row: ListState(row.state), LIST_MOVES)


def participant_trail(session: Session, study: Study, *, participant_id: int | None = None,
                      randomisation_number: str | None = None) -> str:
    """The participant's id in the audit trail, as pharmacy.participant_ref writes it everywhere
    ("<study code>/<screening number>"), so that the compartment's log entries are found with the
    rest of the participant's trail. What was asked for, if no such participant exists."""
    query = select(Participant.screening_number).where(col(Participant.study_id) == study.id)
    if participant_id is not None:
        query = query.where(col(Participant.id) == participant_id)
    else:
        query = query.where(col(Participant.randomisation_number) == randomisation_number)
    screening = session.scalar(query)
    return f"{study.code}/{screening}" if screening else f"{study.code}/{participant_id or randomisation_number}"


# --- a kit draw's record --------------------------------------------------------------------------


def candidate_text(numbers: Iterable[str]) -> str:
    """A draw's candidates as stored: kit numbers (which hold no comma), in the order given."""
    return ",".join(numbers)


def candidate_numbers(text: str) -> list[str]:
    return [number for number in text.split(",") if number]


@dataclass(frozen=True)
class DrawReplay:
    """A recorded kit draw worked through again (sealed.replay_draw)."""

    draw_id: int
    candidates: tuple[str, ...]  # in kit-number order, as recorded
    index: int
    assigned: str  # the kit the draw assigned, as recorded
    one_arm: bool  # every candidate is of the participant's arm

    @property
    def reproduced(self) -> str | None:
        """The kit at the recorded index among the recorded candidates."""
        return self.candidates[self.index] if 0 <= self.index < len(self.candidates) else None

    @property
    def holds(self) -> bool:
        return self.reproduced == self.assigned and self.one_arm and list(self.candidates) == sorted(self.candidates)
