"""The pharmacy's only way into the sealed compartment: its blind-safe doors, which return a
randomisation number or a kit (or nothing) and never an arm. No other part of the pharmacy imports `sealed`,
so the wall has one gate here to review."""
from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from .. import sealed
from ..audit import Actor
from ..custody import key
from ..errors import InvalidInput
from ..models import Administration, Kit, Participant, Study
from .records import VisitContext, in_date_on, replaced_kits


def randomisation_number(session: Session, actor: Actor, study: Study, participant: Participant) -> str:
    """The next free line of the study's sealed randomisation list: its number, never its arm."""
    return sealed.randomise(session, actor, study, key(participant))


def kit_for(session: Session, actor: Actor, ctx: VisitContext, window: timedelta) -> Kit | None:
    """A kit of the participant's arm at the visit's site, in date through the use window, none
    this visit has had before, drawn at random by the compartment (which records the draw); None
    when there is none (the same for both arms: the compartment records the shortage, with the
    arm, for the supply manager). For a later treatment the compartment applies the study's donor
    policy itself (same donor as treatment 1 for an active participant; nothing for a placebo one)."""
    number = ctx.participant.randomisation_number
    if number is None:
        raise InvalidInput(f"{ctx.participant.screening_number} is not randomised yet.", field="participant")
    return sealed.assign_kit(session, actor, ctx.study, number, key(ctx.site),
                             in_date_on=in_date_on(ctx.site, window), exclude=replaced_kits(ctx.visit),
                             treatment=ctx.visit.treatment)


def record_donor(session: Session, actor: Actor, ctx: VisitContext, administration: Administration) -> None:
    """Whose cells the dose just administered was (no one's, for a placebo dose), kept in the
    compartment for the same-donor rule; the pharmacy learns nothing back."""
    number = ctx.participant.randomisation_number
    assert number is not None, "an administered visit is of a randomised participant"
    sealed.record_dose_donor(session, actor, ctx.study, number, ctx.visit.treatment, administration.dose,
                             ctx.held_kit)
