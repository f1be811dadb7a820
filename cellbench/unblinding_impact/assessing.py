"""Who may read an impact, its channels in order, and the assessment: one page of findings or all."""
from __future__ import annotations

from sqlmodel import Session

from .. import unblinding, users
from ..audit import Actor
from ..errors import NotFound
from ..models import Role, Study
from ..pagination import Ask
from .channels import (
    Channel,
    Impact,
    assignment_order,
    block_mates,
    own_kits,
    shared_lots_and_shipments,
)
from .paging import compose, position

READERS = (Role.qa, Role.supply_manager)
# the block channel runs after the kit channels: it lists a participant they found certain among theirs
CHANNELS: tuple[Channel, ...] = (shared_lots_and_shipments, own_kits, block_mates, assignment_order)


def assess(session: Session, actor: Actor, study: Study, participant_number: str | None,
           ask: Ask | None = None) -> Impact:
    """The impact of the participant's unblinding, as of now (later unblindings in the same block
    and later dispensing count): one page of its findings after `ask.after`, `ask.size` long, or
    every finding without `ask`; the counts in full either way."""
    users.require_role(actor, *READERS)
    participant = unblinding.participant_by_number(session, study, participant_number)
    if participant.unblinded_at is None:
        raise NotFound(f"Participant {participant.randomisation_number} has not been unblinded.", field="participant")
    impact = Impact(study, participant)
    if ask is not None:
        impact.start = position(study, participant.randomisation_number or "", ask.after, ask.secret)
        impact.limit = ask.size
    for channel in CHANNELS:
        channel(session, actor, impact)
    compose(session, impact)
    return impact

