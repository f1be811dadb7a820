"""The chain head's signature as events are appended: the first event a transaction appends moves
the head with its signature, as a lone event always did; the later ones move it unsigned, and the
head the transaction leaves is signed once, just before it commits. What commits is the same head
with the same signature (Ed25519 signs deterministically); a transaction appending thousands of
events (the demo build, an import) no longer signs each (issue 18: 6,700 signatures, 3 % of the
demo build). Nothing outside the transaction ever sees an unsigned head."""
from __future__ import annotations

from sqlalchemy import Connection, event, text
from sqlalchemy.orm import Session

from .keys import installed
from .signing import head_message

_SIGNED_IN = "cellbench.checkpoints.head_signed_in"  # Session.info: the transaction that signed a head
_UNSIGNED_IN = "cellbench.checkpoints.head_unsigned_in"  # ... and the one that left a head unsigned
_READ_HEAD = text("SELECT seq, hash FROM audit_head WHERE id = 1")
_SIGN_HEAD = text("UPDATE audit_head SET signature = :signature WHERE id = 1")


def head_signature(session: Session | Connection, seq: int, digest: str) -> str | None:
    """The signature to move the head to (seq, digest) with; None without a checkpoint key, or
    when the session's transaction signs its head at commit. A bare Connection signs every head."""
    key = installed()
    if key is None:
        return None
    if isinstance(session, Session):
        transaction = session.get_transaction()
        if session.info.get(_SIGNED_IN) is transaction:
            session.info[_UNSIGNED_IN] = transaction
            return None
        session.info[_SIGNED_IN] = transaction
    return key.sign(head_message(seq, digest))


@event.listens_for(Session, "before_commit")
def _sign_the_head_left(session: Session) -> None:
    """Sign the head as it now stands, read again: a savepoint rolled back may have moved it back."""
    transaction = session.get_transaction()
    if session.get_nested_transaction() is not None or session.info.get(_UNSIGNED_IN) is not transaction:
        return
    del session.info[_UNSIGNED_IN]
    key = installed()
    if key is None:
        return
    conn = session.connection()
    seq, digest = conn.execute(_READ_HEAD).one()
    conn.execute(_SIGN_HEAD, {"signature": key.sign(head_message(seq, digest))})
