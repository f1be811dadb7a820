"""The blinded lot's evidence packet, for the trial site (pharmacist, investigator, monitor): the
code on their labels, its kits and their audit events as blinded roles read them, the signatures
those events name, all signed with the checkpoint key.

It is built from blind-safe modules only (kits, audit's blinded view, users' scope), never the
sealed compartment, so an active and a placebo kit in the same situation come out the same but for
their numbers. It proves less than the lot's packet, and says so in its README: a proof of the chain
needs the events between, and even the sequence numbers of the site's own events would show how
many hidden events lie between them.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select
from sqlmodel import Session, col

from .. import audit, kits, users
from ..audit import Actor
from ..db import Database
from ..errors import NotFound
from ..models import AuditEvent, BlindedLot, Kit, Role, Site, Study, Visibility
from . import readme
from .packet import Built, Packet, plain, signature_dict, signatures_named_by, signing_key

# The blinded site roles whose audit trail covers a blinded lot's kits (audit.BLINDED_SCOPES).
REQUESTERS = (Role.pharmacist, Role.investigator, Role.monitor)
BUILT = "evidence packet built"
# The blinded audit view's columns (audit.CSV_COLUMNS): no sequence number, no hash.
COLUMNS = ("at", "user_id", "user_name", "action", "entity_type", "entity_id", "field", "old_value", "new_value",
           "reason")


def _blinded_lot(session: Session, actor: Actor, code: str) -> BlindedLot:
    blinded = kits.blinded_lot_by_code(session, code, field="code")
    if actor.studies is not None and blinded.study_id not in actor.studies:
        raise NotFound(f"No blinded lot '{code.strip()}'.", field="code")  # another study's: as if none
    return blinded


def _kits(session: Session, actor: Actor, blinded: BlindedLot) -> list[dict[str, Any]]:
    """The blinded lot's kits the requester's sites may see (theirs, and the bench's stock)."""
    query = (select(col(Kit.number), col(Kit.state), col(Kit.packaged_at), col(Site.code))
             .outerjoin(Site, col(Site.id) == col(Kit.site_id)).where(col(Kit.blinded_lot_id) == blinded.id))
    query = users.within(query, actor, site=col(Kit.site_id), study=col(Kit.study_id), bench_too=True)
    return [{"number": number, "state": plain(state), "state_label": kits.state_label(state),
             "packaged_at": plain(packaged), "site": site}
            for number, state, packaged, site in session.execute(query.order_by(col(Kit.number)))]


def _events(session: Session, actor: Actor, code: str, kit_numbers: list[str]) -> list[AuditEvent]:
    entity, key = col(AuditEvent.entity_type), col(AuditEvent.entity_id)
    about = or_(and_(entity == "blinded_lot", key == code), and_(entity == "kit", key.in_(kit_numbers or ["-"])))
    # Earlier packets' own "built" events are left out: they say nothing about the kits, and with them
    # two downloads a moment apart would differ (the second holding the first's event).
    query = audit.visible_events(actor).where(about, col(AuditEvent.visibility) == Visibility.everyone.value,
                                              col(AuditEvent.action) != BUILT)
    return list(session.scalars(query.order_by(col(AuditEvent.seq))))


def build(db: Database, actor: Actor, code: str) -> Built:
    """The blinded lot's packet as a ZIP, its building on the audit trail (one transaction: it
    signs no checkpoint, so it need not wait for one)."""
    users.require_role(actor, *REQUESTERS)
    with db.write() as session:
        blinded = _blinded_lot(session, actor, code)
        key = signing_key()  # after the lot: an unknown code is "not found" whatever the server's keys
        audit.record(session, actor, BUILT, "blinded_lot", blinded.code, field="evidence packet",
                     new=f"blinded lot {blinded.code}")
        study = session.get(Study, blinded.study_id)
        kit_rows = _kits(session, actor, blinded)
        events = _events(session, actor, blinded.code, [k["number"] for k in kit_rows])
        named = signatures_named_by(session, events, same_records=False)
        sigs = [signature_dict(s, blinded=True) for s in named]
        rows = [{c: plain(getattr(e, c)) for c in COLUMNS} for e in events]
        packet = Packet(f"evidence-{blinded.code}")
        packet.add("README.txt", readme.blinded_readme(blinded.code, events=len(rows), kits=len(kit_rows),
                                                       signatures=len(sigs)))
        packet.add_json("blinded-lot.json", {"blinded_lot": {"code": blinded.code, "expiry": plain(blinded.expiry),
                                                             "study": study.code if study else None},
                                             "kits": kit_rows})
        packet.add_json("audit/events.json", rows)
        packet.add("audit/events.csv", audit.to_csv(events, actor))
        packet.add_json("signatures.json", sigs)
        return Built(f"evidence-{blinded.code}.zip", packet.seal(key, actor, "blinded_lot", blinded.code))
