"""The impact sent to the sponsor's emergency contact: every finding (the message is the sponsor's
whole copy, so it is not paged), and which unblindings still wait for theirs."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select, update
from sqlmodel import Session, col

from .. import audit, notifications, unblinding
from ..audit import Actor
from ..custody import fetch
from ..models import AuditEvent, Notification, Participant, Study, Unblinding, Visibility
from .assessing import assess
from .channels import Impact
from .paging import as_json

NOTIFICATION_KIND = "unblinding_impact"
SENT = "unblinding impact sent"


def body(impact: Impact, actor: Actor) -> str:
    data = as_json(impact)
    lines = [f"What the emergency unblinding of {data['participant']} ({data['study']}) reveals, as assessed by "
             f"{actor.name} from the sealed randomisation and kit lists.", "",
             "Participants whose arm is now certain or more probable:"]
    lines += [f"- {e['participant']} ({e['site']}): {e['strength']}: {'; '.join(e['why'])}"
              for e in data["findings"]] or ["- none"]
    lines += ["", "This participant's kits (of the revealed arm):"]
    lines += [f"- {k['kit']}: {k['why']}" for k in data["kits"]] or ["- none"]
    if data["notes"]:
        lines += ["", "Looked at, and nothing follows:"] + [f"- {note}" for note in data["notes"]]
    lines += ["", "CONFIDENTIAL: this message reveals treatment allocations. Do not forward it to blinded trial staff."]
    return "\n".join(lines)


def send(session: Session, actor: Actor, study: Study, participant_number: str | None) -> Notification:
    """Queue the impact, every finding of it, for the sponsor's emergency contact, and record what was sent."""
    impact = assess(session, actor, study, participant_number)
    latest = session.scalars(select(Unblinding).where(col(Unblinding.participant_id) == impact.participant.id)
                             .order_by(col(Unblinding.id).desc())).first()
    row = fetch(session, Unblinding, latest.id if latest else None, "unblinding")
    note = notifications.unblinding_impact(
        session, actor, study=study, site_id=impact.participant.site_id,
        subject=f"Emergency unblinding impact: {study.code} participant {impact.participant.randomisation_number}",
        body=body(impact, actor))
    seq = audit.record(session, actor, SENT, "unblinding", row.id, field="impact", new=as_json(impact),
                       reason=f"notification {note.id} to {note.to_address}", visibility=Visibility.unblinded)
    # The first sending takes it off the queue, at its event's time (verify replays it). Only where
    # no sending is marked yet, in the database's own check: two QA sending at once both read the
    # row unmarked, and the second to commit must not put its later time over the first's.
    at = session.scalar(select(col(AuditEvent.at)).where(col(AuditEvent.seq) == seq))
    session.execute(update(Unblinding).where(col(Unblinding.id) == row.id, col(Unblinding.impact_sent_at).is_(None))
                    .values(impact_sent_at=at))
    return note


def sent(session: Session, unblinding_ids: list[int]) -> list[AuditEvent]:
    """The impacts sent for these unblindings, newest first."""
    return list(session.scalars(select(AuditEvent).where(
        col(AuditEvent.action) == SENT, col(AuditEvent.entity_type) == "unblinding",
        col(AuditEvent.entity_id).in_([str(i) for i in unblinding_ids])).order_by(col(AuditEvent.seq).desc())))


def _impact_unsent() -> Any:
    """The condition that no impact was sent for an unblinding: along the partial index of the
    unsent ones (models.IMPACT_UNSENT), not a probe of the audit trail per unblinding."""
    return col(Unblinding.impact_sent_at).is_(None)


def awaiting(session: Session) -> list[unblinding.Record]:
    """Participants whose latest unblinding's impact has not been sent to the sponsor yet, every one
    of them (a queue that stopped at the newest 200 unblindings would lose the oldest unsent impact)."""
    return unblinding.latest_records_where(session, _impact_unsent())


def awaiting_query() -> Select:
    """The same participants as a query, newest unblinding first, for a queue line that reads at most
    two of them and counts the rest in the database (web/home.py line_of), not 1,389 records."""
    return (select(Participant).join(Unblinding, col(Unblinding.participant_id) == col(Participant.id))
            .where(unblinding.is_latest(), _impact_unsent()).order_by(col(Unblinding.id).desc()))
