"""What an emergency unblinding really reveals: the participants whose arm it makes certain or more
probable, each with why and how strongly, and this participant's own kits. For unblinded roles and
the sponsor only.

The investigator's unblinding reaches the sealed compartment through its one door, which returns
that participant's arm and nothing else, so her request cannot work this out (and must not: the
block sizes stay sealed, and she must not be handed a list of whose arm she now knows). QA or the
supply manager reads it here, every sealed read logged under their name, and sends it to the
sponsor's emergency contact with one click; their work queue shows every unblinding whose impact
has not been sent.

Parts: channels (each way to infer arms, one function of `CHANNELS`), paging (one page of the
findings after a cursor, the counts in full), sending (the sponsor's message, which holds every
finding, and the queue of impacts not yet sent).
"""
from __future__ import annotations

from .assessing import CHANNELS, READERS, assess
from .channels import CERTAIN, MORE_PROBABLE, Impact
from .paging import PAGE_SIZE, as_json
from .sending import NOTIFICATION_KIND, SENT, awaiting, awaiting_query, body, send, sent

__all__ = ["CERTAIN", "CHANNELS", "MORE_PROBABLE", "NOTIFICATION_KIND", "PAGE_SIZE", "READERS", "SENT", "Impact",
           "as_json", "assess", "awaiting", "awaiting_query", "body", "send", "sent"]
