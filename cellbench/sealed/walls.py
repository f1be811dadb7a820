"""The walls of the sealed compartment, the only code that knows an arm.

It owns participant -> arm (randomisation lists), kit -> arm (kit lists), kit -> the physical
units inside it (ASC vials or saline units, and so their lots), and the seeds that reproduce the
lists. Three walls keep blinded people out:

1. No module outside this package names a sealed table (tests/test_sealed.py parses every module to check), so
   a blinded page, API response, export or report has no query that could reach one.
2. No module a blinded role can reach imports this package, directly or through others (the same test
   follows the imports of every blinded-facing route module).
3. Every function of the package refuses a blinded actor and writes an unblinded audit event for each
   read ("sealed read": who, when, what), so an unblinded person's look is on the record too.

The gate every function passes is `_admit`; a logged read is `_read`; `_door` is how a blinded
workflow comes in (doors.py), logged the same way.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit
from ..audit import Actor
from ..errors import Forbidden
from ..models import Role, SealedAllocation, SealedList, Study, Visibility
from ..sealing import ListState


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



def _door(session: Session, actor: Actor, allowed: frozenset[Role], what: str, subject: object) -> None:
    if not actor.roles & allowed:
        raise Forbidden(f"Only {' or '.join(sorted(r.value for r in allowed))} may do this.")
    subject = subject() if callable(subject) else subject
    audit.record(session, actor, "sealed assignment", "sealed", subject, field=what, visibility=Visibility.unblinded)



def _arm_of_number(session: Session, study: Study, randomisation_number: str) -> str | None:
    return session.scalar(select(col(SealedAllocation.arm))
                          .join(SealedList, col(SealedList.id) == col(SealedAllocation.list_id))
                          .where(col(SealedList.study_id) == study.id, col(SealedList.state) == ListState.sealed.value,
                                 col(SealedAllocation.participant_number) == randomisation_number))

