"""Electronic signatures: their own records, bound to the exact content signed.

A signature stores the canonical JSON of what was signed and its SHA-256, the signer's printed
name, the UTC time and the meaning. Its own fields are hashed into `record_hash`, which is written
into the audit chain, so neither the signature nor the signed content can be altered unnoticed.
Signing needs the signer's password again; a wrong one counts toward lock-out.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import String, select, type_coerce
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from . import audit, users
from .audit import Actor
from .checkpoints.store import after_signature
from .clock import utcnow
from .errors import Conflict, Forbidden, InvalidInput, NotFound
from .models import AuditEvent, Meaning, Role, Signature, User, Visibility, saved_id, utc_text

# entity type -> function(session, entity_id) -> the content a signature on it covers.
ContentRule = Callable[[Session, str], dict[str, Any]]
_CONTENT_RULES: dict[str, ContentRule] = {}


def content_rule(entity_type: str) -> Callable[[ContentRule], ContentRule]:
    """Register how to read the signable content of an entity type (used at signing and verify)."""

    def register(fn: ContentRule) -> ContentRule:
        _CONTENT_RULES[entity_type] = fn
        return fn

    return register


def signable_types() -> frozenset[str]:
    """The entity types whose signed content cellbench knows how to read (the modules imported so far)."""
    return frozenset(_CONTENT_RULES)


def canonical(content: dict[str, Any]) -> str:
    return json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=audit.as_text)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _record_hash(sig: Signature) -> str:
    fields = [sig.id, sig.signer_id, sig.signer_name, utc_text(sig.at), Meaning(sig.meaning).value,
              sig.entity_type, sig.entity_id, sig.content_hash]
    return _sha256(json.dumps(fields, ensure_ascii=False, separators=(",", ":")))


def may_sign(user: User, roles: frozenset[Role]) -> str | None:
    """Why this user cannot sign, or None. Admins manage accounts; they never sign GMP records."""
    if Role.admin in roles:
        return "Administrators cannot sign records."
    if not user.active:
        return "This account is deactivated."
    if user.locked:
        return "This account is locked."
    return None


def sign(
    session: Session,
    signer: User,
    password: str,
    meaning: Meaning,
    entity_type: str,
    entity_id: str,
    *,
    reason: str | None = None,
    visibility: Visibility = Visibility.everyone,
) -> Signature:
    """Sign the current content of an entity, inside the caller's transaction. `visibility` is
    the audit event's: a signature on something arm-revealing is hidden from blinded roles."""
    signer_actor = users.actor(session, signer)  # kept per transaction: its roles and the audit event's who
    if why := may_sign(signer, signer_actor.roles):
        raise Forbidden(why)
    users.reauthenticate(session, signer, password)
    rule = _CONTENT_RULES.get(entity_type)
    if rule is None:
        raise NotFound(f"{entity_type} records cannot be signed.")
    content = canonical(rule(session, entity_id))
    sig = Signature(
        signer_id=saved_id(signer), signer_name=signer.full_name, at=utcnow(), meaning=Meaning(meaning),
        entity_type=entity_type, entity_id=str(entity_id), content=content, content_hash=_sha256(content),
        record_hash="",
    )
    session.flush()  # the caller's own changes first: an error in them stays theirs
    session.add(sig)
    try:
        session.flush()  # the id is part of the record hash
    except IntegrityError:
        # The services claim their rows first, so this is the database's backstop
        # (uq_signature_standing): someone signed the same thing with this meaning a moment ago.
        raise Conflict(f"This {entity_type.replace('_', ' ')} was signed '{Meaning(meaning).value}' by someone else "
                       "a moment ago. Reload it to see their signature.") from None
    sig.record_hash = _record_hash(sig)
    sig.audit_seq = audit.record(
        session, signer_actor, "signed", entity_type, entity_id,
        field=f"signature:{sig.meaning.value}", new=f"#{sig.id} {sig.record_hash}", reason=reason,
        visibility=visibility,
    )
    session.flush()
    after_signature(session, entity_type)  # QA reviews and certifications: a checkpoint once this commits
    return sig


def invalidate(session: Session, actor: Actor, sig: Signature, reason: str | None) -> None:
    """A correction of signed data voids the signature on it; the record needs signing again."""
    reason = audit.require_reason(reason, kind="cited_reason")  # it cites the correction's reason
    if sig.invalidated_at is not None:
        raise InvalidInput("This signature is already invalidated.")
    sig.invalidated_at = utcnow()
    sig.invalidated_reason = reason
    audit.record(session, actor, "signature invalidated", sig.entity_type, sig.entity_id,
                 field=f"signature:{Meaning(sig.meaning).value}", old=f"#{sig.id}", reason=reason)
    session.flush()


def standing_ids(session: Session, ids: Iterable[int | None]) -> set[int]:
    """Which of these signatures still stand (exist, not invalidated), in one statement: a gate
    asking of every entry of a batch record read them one by one (issue 18: 600 reads in the demo)."""
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return set()
    return set(session.scalars(select(col(Signature.id)).where(col(Signature.id).in_(wanted),
                                                              col(Signature.invalidated_at).is_(None))))


def signatures_for(session: Session, entity_type: str, entity_id: str) -> list[Signature]:
    query = select(Signature).where(col(Signature.entity_type) == entity_type,
                                    col(Signature.entity_id) == str(entity_id))
    return list(session.scalars(query.order_by(col(Signature.id))))


# One encoder for every record hash verify recomputes: json.dumps with these settings builds a new
# one per call, which cost verify more than the two digests of the signature.
_FIELDS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _hash_of_fields(*fields: Any) -> str:
    """What _record_hash computes, from the columns as read (verify reads no ORM objects)."""
    return _sha256(_FIELDS.encode(list(fields)))


# The signature columns verify_all checks, in this order (`integrity` reads them with the plain
# driver, the voiding time as the text stored, and hands them in with columns of its own after).
VERIFIED_COLUMNS = ("id", "signer_id", "signer_name", "at", "meaning", "entity_type", "entity_id", "content",
                    "content_hash", "record_hash", "audit_seq", "invalidated_at")


def verify_all(session: Session, *, events_matched: bool = False,
               rows: Iterable[Sequence[Any]] | None = None) -> tuple[int, list[str]]:
    """Check every signature: its content hash, its record hash, its audit event, and (while it
    stands) that the entity still has exactly the content that was signed. `events_matched`: the
    caller has matched every signature to its "signed" event already (integrity.signed does, in
    SQL, both ways), so that is not done again here. `rows`: the signature rows in id order, as
    VERIFIED_COLUMNS (more columns may follow), when the caller has read them already.

    Columns, not ORM objects, and the time as the text stored: building one object per signature
    cost more than checking it."""
    problems: list[str] = []
    signed_events: Mapping[int, str] = {}
    if not events_matched:
        event = AuditEvent.__table__.c  # type: ignore[attr-defined]  # a table model has its Table
        query = select(event.seq, event.new_value).where(event.action == "signed")
        signed_events = dict(session.execute(query).all())
    if rows is None:
        table = Signature.__table__.c  # type: ignore[attr-defined]
        # The voiding time as stored too: only whether there is one matters here.
        columns = [type_coerce(table[name], String) if name in ("at", "invalidated_at") else table[name]
                   for name in VERIFIED_COLUMNS]
        # All rows in one fetch (the Result's row-by-row iteration cost a third of the check).
        rows = session.execute(select(*columns).order_by(table.id)).all()
    count = 0
    for (sig_id, signer_id, signer_name, at, meaning, entity_type, entity_id, content, content_hash, record_hash,
         audit_seq, invalidated_at, *_) in rows:
        count += 1
        # The meaning as stored: one that is not a Meaning fails the record hash, which was made of a Meaning's value.
        if _sha256(content) != content_hash:
            why = "the stored content does not match its hash"
        elif _hash_of_fields(sig_id, signer_id, signer_name, at, meaning, entity_type,
                             entity_id, content_hash) != record_hash:
            why = "the signature record was changed after signing"
        elif not events_matched and signed_events.get(audit_seq) != f"#{sig_id} {record_hash}":
            why = "it does not match its audit event"
        elif entity_type not in _CONTENT_RULES:
            why = f"cellbench has no rule for what a {entity_type} signature covers"
        elif invalidated_at is None and (rule := _CONTENT_RULES[entity_type]) is not None:
            try:
                current = canonical(rule(session, entity_id))
            except NotFound:
                current = None
            if current == content:
                continue
            why = "the signed record has changed since it was signed"
        else:
            continue
        # Name the first; the rest follow from fixing or explaining it.
        return count, [f"signature {sig_id} ({meaning} by {signer_name} on {entity_type} {entity_id}): {why}"]
    return count, problems
