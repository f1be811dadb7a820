"""The end of a study's blind: the database lock, then the study unblinding, then the export.

A study's data is open while the trial runs. When the last data are in and clean, the sponsor's
representative signs "locked"; only after that lock can the sponsor's representative sign
"unblinded", with a reason (the analysis plan, a DSMB decision); and only then does the sealed
compartment hand the randomisation list and the kit arms to the statistician
(`sealed.export_lists`, which asks `export_refusal` below). Each step is one signed move of one
table: open -> locked -> unblinded, never back.

Who is the sponsor's representative? The supply manager. She already acts for the sponsor in
cellbench (she signs the sponsor release of every lot and keeps the randomisation and kit lists),
and she is unblinded, so signing for the unblinding teaches her nothing. A role of its own for two
signatures a study would grow the role set and the segregation rules for no separation gained:
the separation that matters holds without it, because the statistician, who receives the arms,
signs neither the lock nor the unblinding, and no blinded role may sign or read any of it.

The lock signs the study's data as they stand: how many participants were enrolled and how many
randomised. The signed content is recomputed by `cellbench verify`, so an enrolment or a
randomisation after the lock shows as a lock signature whose record has changed.

This module names no sealed table and reveals no arm: blinded home pages run its work-queue count.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from . import audit, signatures, studies, users
from .clock import utcnow
from .errors import Conflict, NotFound
from .models import Meaning, Participant, Role, Signature, Study, StudyLock, User, saved_id
from .statemachine import Machine, Transition


class DataState(str, Enum):
    open = "open"
    locked = "locked"
    unblinded = "unblinded"


SPONSOR = frozenset({Role.supply_manager})  # the sponsor's representative (see above)
EXPORTERS = frozenset({Role.statistician})  # sealed.export_lists admits these, and only after the unblinding
# Who reads the lock and unblinding records (who, when, why; never an arm).
READERS = (Role.supply_manager, Role.statistician, Role.qa)

_T = Transition[DataState]
MOVES: dict[str, _T] = {
    "lock": _T(frozenset({DataState.open}), DataState.locked, SPONSOR, signature=Meaning.locked),
    "unblind": _T(frozenset({DataState.locked}), DataState.unblinded, SPONSOR, signature=Meaning.unblinded,
                  needs_reason=True),
}


@dataclass(frozen=True)
class Standing:
    """Where a study's data stand: its lock record, or none while open, and the signatures on it."""

    study: Study
    lock: StudyLock | None
    lock_signature: Signature | None = None
    unblinding_signature: Signature | None = None

    @property
    def state(self) -> DataState:
        return DataState(self.lock.state) if self.lock else DataState.open


MACHINE: Machine[Standing, DataState] = Machine("study database", lambda s: s.state, MOVES)


def standing(session: Session, study: Study) -> Standing:
    row = session.get(StudyLock, saved_id(study))
    sigs = [session.get(Signature, i) if i else None
            for i in ((row.lock_signature_id, row.unblinding_signature_id) if row else (None, None))]
    return Standing(study, row, *sigs)


def overview(session: Session, state: DataState | None = None) -> list[Standing]:
    """Every study (or those in `state`) with where its data stand, by study code."""
    found = [standing(session, study) for study in studies.all_studies(session)]
    return [s for s in found if state is None or s.state == state]


def export_refusal(session: Session, study: Study) -> str | None:
    """Why the study's arms may not be exported yet: the one rule `sealed.export_lists` applies."""
    state = standing(session, study).state
    if state == DataState.unblinded:
        return None
    step = "signed its database lock" if state == DataState.open else "signed the study unblinding"
    return f"{study.code} is {state.value}: the arms are exported only after the sponsor has {step}."


def _counts(session: Session, study: Study) -> tuple[int, int]:
    enrolled = session.scalar(select(func.count()).where(col(Participant.study_id) == study.id)) or 0
    randomised = session.scalar(select(func.count()).where(col(Participant.study_id) == study.id,
                                                           col(Participant.randomisation_number).is_not(None))) or 0
    return enrolled, randomised


def _row(session: Session, study_code: str) -> tuple[Study, StudyLock]:
    study = studies.by_code(session, study_code)
    row = session.get(StudyLock, saved_id(study))
    if row is None:
        raise NotFound(f"The database of {study.code} is not locked.", field="study")
    return study, row


@signatures.content_rule("study_lock")
def _lock_content(session: Session, study_code: str) -> dict:
    study, row = _row(session, study_code)
    enrolled, randomised = _counts(session, study)  # as they are now: verify sees a change since the lock
    return {"study": study.code, "eu_ct_number": study.eu_ct_number, "locked_at": row.locked_at,
            "participants": enrolled, "randomised": randomised}


@signatures.content_rule("study_unblinding")
def _unblinding_content(session: Session, study_code: str) -> dict:
    study, row = _row(session, study_code)
    lock_sig = session.get(Signature, row.lock_signature_id) if row.lock_signature_id else None
    return {"study": study.code, "eu_ct_number": study.eu_ct_number, "unblinded_at": row.unblinded_at,
            "reason": row.unblinding_reason, "lock_signature": lock_sig.record_hash if lock_sig else None}


def lock(session: Session, user: User, study: Study, password: str) -> StudyLock:
    """The sponsor's representative signs "locked" on the study's data as they stand."""
    actor = users.actor(session, user)
    MACHINE.check(standing(session, study), "lock", actor.roles)
    enrolled, randomised = _counts(session, study)
    row = StudyLock(study_id=saved_id(study), state=DataState.locked.value, locked_by=saved_id(user),
                    locked_at=utcnow(), participants=enrolled, randomised=randomised)
    code = study.code  # the failed flush below expires the study
    session.add(row)
    try:
        session.flush()  # the study's one lock row: a second lock at the same moment stops here
    except IntegrityError:
        raise Conflict(f"Someone else locked the database of {code} at the same moment.", field="study") from None
    row.lock_signature_id = signatures.sign(session, user, password, Meaning.locked, "study_lock", study.code).id
    audit.record(session, actor, "database locked", "study", study.code, field="data_state",
                 old=DataState.open.value, new=row.state)
    session.flush()
    return row


def unblind(session: Session, user: User, study: Study, password: str, reason: str | None) -> StudyLock:
    """After the lock, the sponsor's representative signs "unblinded", with a reason: from now on
    the statistician may export the arms."""
    actor = users.actor(session, user)
    MACHINE.check(standing(session, study), "unblind", actor.roles)
    reason = audit.require_reason(reason)
    now = utcnow()
    claimed = cast(CursorResult, session.execute(  # an UPDATE's result counts its rows
        update(StudyLock).where(col(StudyLock.study_id) == study.id, col(StudyLock.state) == DataState.locked.value)
        .values(state=DataState.unblinded.value, unblinded_by=saved_id(user), unblinded_at=now,
                unblinding_reason=reason)))
    if claimed.rowcount != 1:
        raise Conflict(f"Someone else unblinded {study.code} at the same moment.", field="study")
    row = session.get(StudyLock, saved_id(study))
    assert row is not None, "claimed above"
    session.refresh(row)
    row.unblinding_signature_id = signatures.sign(session, user, password, Meaning.unblinded, "study_unblinding",
                                                  study.code, reason=reason).id
    audit.record(session, actor, "study unblinded", "study", study.code, field="data_state",
                 old=DataState.locked.value, new=row.state, reason=reason)
    session.flush()
    return row


def move(session: Session, user: User, study_code: str, action: str, password: str,
         reason: str | None = None) -> StudyLock:
    """The page's and the API's one entry: `action` is a move of the table (lock, unblind)."""
    MACHINE.transition(action)  # an unknown action is refused by name
    study = studies.by_code(session, study_code)
    if action == "lock":
        return lock(session, user, study, password)
    return unblind(session, user, study, password, reason)


def actions_for(standing_: Standing, roles: Sequence[Role] | frozenset[Role]) -> list[str]:
    """What the page offers this viewer for this study now."""
    return MACHINE.allowed(standing_, roles)
