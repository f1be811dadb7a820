"""What a database owner can do without the checkpoint key, done the way they would: with SQL, the
append-only guards dropped, and hashes recomputed by cellbench's own code (audit.event_hash and
signatures' record hash), so that the chain and every signature check out as before issue 17."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, text
from sqlmodel import Session

from cellbench import audit, signatures
from cellbench.db import Database
from cellbench.models import AuditReview, Signature

EVENT_COLUMNS = (*audit.HASHED_COLUMNS, "prev_hash", "hash")


@contextlib.contextmanager
def unguarded(db: Database) -> Iterator[Connection]:
    """One transaction with the audit trail's append-only triggers out of the way (an owner can)."""
    with db.engine.begin() as conn:
        if db.is_sqlite:
            conn.execute(text("DROP TRIGGER audit_event_no_update"))
            conn.execute(text("DROP TRIGGER audit_event_no_delete"))
        else:
            conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
        yield conn
        if db.is_sqlite:
            for verb in ("UPDATE", "DELETE"):
                conn.execute(text(f"CREATE TRIGGER audit_event_no_{verb.lower()} BEFORE {verb} ON audit_event "
                                  "BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END"))
        else:
            conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only"))


def head(db: Database) -> tuple[int, str, str | None]:
    with db.engine.connect() as conn:
        seq, hashed, signature = conn.execute(text("SELECT seq, hash, signature FROM audit_head WHERE id = 1")).one()
    return seq, hashed, signature


def set_head(conn: Connection, seq: int, hashed: str, signature: str | None) -> None:
    conn.execute(text("UPDATE audit_head SET seq = :s, hash = :h, signature = :g WHERE id = 1"),
                 {"s": seq, "h": hashed, "g": signature})


def events(conn: Connection, since: int = 1) -> list[dict[str, Any]]:
    rows = conn.execute(text(f"SELECT {', '.join(EVENT_COLUMNS)} FROM audit_event "
                             "WHERE seq >= :s ORDER BY seq"), {"s": since})
    return [dict(row._mapping) for row in rows]


def truncate_to(db: Database, seq: int, saved_head: tuple[int, str, str | None]) -> None:
    """Cut the chain after `seq`, hide the checkpoints after it, and put back a head (with its
    genuine signature) saved when the chain ended there, as an old copy of the database holds."""
    with unguarded(db) as conn:
        conn.execute(text("DELETE FROM audit_event WHERE seq > :s"), {"s": seq})
        conn.execute(text("DELETE FROM checkpoint WHERE seq > :s"), {"s": seq})
        set_head(conn, *saved_head)


def append_event(db: Database) -> int:
    """One more event, correctly hashed onto the chain, and the head moved to it (keeping the
    signature there: nobody without the key can make a new one)."""
    with unguarded(db) as conn:
        seq, prev, signature = conn.execute(text("SELECT seq, hash, signature FROM audit_head WHERE id = 1")).one()
        row = {"seq": seq + 1, "at": "2026-12-06T12:00:00.000000Z", "user_id": None, "user_name": "Nobody",
               "action": "updated", "entity_type": "lot", "entity_id": "ASC-2026-0001", "field": "expiry",
               "old_value": "2027-01-01", "new_value": "2031-01-01", "reason": None, "visibility": "everyone"}
        row["prev_hash"] = prev
        row["hash"] = audit.event_hash(prev, [row[c] for c in audit.HASHED_COLUMNS])
        conn.execute(text(f"INSERT INTO audit_event ({', '.join(EVENT_COLUMNS)}) "
                          f"VALUES ({', '.join(':' + c for c in EVENT_COLUMNS)})"), row)
        set_head(conn, row["seq"], row["hash"], signature)
    return row["seq"]


def rewrite_from(db: Database, seq: int, change: dict[str, Any]) -> None:
    """Change event `seq` and re-hash it and every later one, re-creating the audit-trail reviews'
    signatures (which pin a hash) on the way, then move the head: the chain and every signature
    check out again. The head keeps its old signature (making a new one needs the key)."""
    with unguarded(db) as conn:
        chain = events(conn, since=seq)
        prev = chain[0]["prev_hash"]
        new_hashes: dict[int, str] = {}
        reviews = {str(r.id): r for r in _reviews(conn)}
        for event in chain:
            if event["seq"] == seq:
                event.update(change)
            if event["action"] == "signed" and event["entity_type"] == "audit_review":
                event["new_value"] = _resign_review(conn, reviews[event["entity_id"]], new_hashes)
            event["prev_hash"] = prev
            event["hash"] = prev = audit.event_hash(prev, [event[c] for c in audit.HASHED_COLUMNS])
            new_hashes[event["seq"]] = prev
            conn.execute(text(f"UPDATE audit_event SET {', '.join(f'{c} = :{c}' for c in EVENT_COLUMNS)} "
                              "WHERE seq = :seq"), event)
        _, _, signature = conn.execute(text("SELECT seq, hash, signature FROM audit_head WHERE id = 1")).one()
        set_head(conn, chain[-1]["seq"], prev, signature)


def _reviews(conn: Connection) -> list[AuditReview]:
    rows = conn.execute(text("SELECT id, from_seq, to_seq, head_hash, comment, signature_id FROM audit_review"))
    return [AuditReview(**row._mapping) for row in rows]


def _resign_review(conn: Connection, review: AuditReview, new_hashes: dict[int, str]) -> str:
    """The review's signature made again over the rewritten chain (the same fields cellbench hashes)."""
    pinned = new_hashes.get(review.to_seq, review.head_hash)
    conn.execute(text("UPDATE audit_review SET head_hash = :h WHERE id = :i"), {"h": pinned, "i": review.id})
    with Session(bind=conn) as session:  # read through the model: its time as cellbench hashes it
        sig = session.get(Signature, review.signature_id)
        session.expunge(sig)
    content = signatures.canonical({"from_seq": review.from_seq, "to_seq": review.to_seq, "head_hash": pinned,
                                    "chain_hash_now": pinned, "comment": review.comment})
    sig.content, sig.content_hash = content, signatures._sha256(content)
    sig.record_hash = signatures._record_hash(sig)
    conn.execute(text("UPDATE signature SET content = :c, content_hash = :h, record_hash = :r WHERE id = :i"),
                 {"c": sig.content, "h": sig.content_hash, "r": sig.record_hash, "i": sig.id})
    return f"#{sig.id} {sig.record_hash}"
