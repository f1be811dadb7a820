"""The study's quarantine policy: which kits a lot's quarantine holds (supply.quarantine reads it)."""
from __future__ import annotations

from sqlmodel import Session

from .. import audit, users
from ..audit import Actor
from ..errors import InvalidInput
from ..models import Role, Study

QUARANTINE_POLICIES = {
    "proportionate": "the lot's kits and a random, proportionate set of placebo kits of the same blinded lot",
    "blinded_lot": "every kit of each blinded lot the lot is in",
}


def set_quarantine_policy(session: Session, actor: Actor, study: Study, policy: str, reason: str | None) -> None:
    users.require_role(actor, Role.supply_manager)
    policy = (policy or "").strip()
    if policy not in QUARANTINE_POLICIES:
        raise InvalidInput(f"Choose a quarantine policy: {', '.join(QUARANTINE_POLICIES)}.", field="quarantine_policy")
    if policy == study.quarantine_policy:
        return
    reason = audit.require_reason(reason)
    old, study.quarantine_policy = study.quarantine_policy, policy
    session.flush()
    audit.record(session, actor, "quarantine policy changed", "study", study.code, field="quarantine_policy",
                 old=old, new=policy, reason=reason)
