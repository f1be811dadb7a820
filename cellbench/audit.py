"""The audit trail: one append-only, SHA-256 hash-chained table of events.

Every service function that changes GMP data calls `record()` in the same transaction as the
change. Each event's hash covers the previous event's hash and this event's canonical content, so
a changed, deleted or inserted row breaks the chain at that row; `verify_chain()` finds it.
"""
from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    exists,
    false,
    literal,
    or_,
    select,
    text,
    union_all,
)
from sqlmodel import Session, SQLModel, col

from . import checkpoints, limits, pagination
from .audit_scope import (  # noqa: F401 - re-exported
    BLINDED_SCOPES,
    TRIAL_RECORDS,
    USER_RECORDS,
    kind_rules,
    site_trial_records,
    trail_scope,
)
from .clock import utcnow
from .display import times_in
from .errors import InvalidInput
from .models import (
    BLINDED_ROLES,
    AuditEvent,
    AuditHead,
    Role,
    User,
    Visibility,
    utc_text,
)
from .pipelined import Pipelined
from .spreadsheet import csv_text

GENESIS_HASH = "0" * 64
# Who may read the audit trail (pages and API alike); blinded readers get the blinded view.
AUDIT_READERS = (Role.qa, Role.qp, Role.monitor, Role.admin)
_HEAD = SQLModel.metadata.tables[AuditHead.__tablename__]
# The columns, in the order they are hashed. Changing this order breaks every existing chain.
HASHED_COLUMNS = (
    "seq", "at", "user_id", "user_name", "action", "entity_type", "entity_id",
    "field", "old_value", "new_value", "reason", "visibility",
)
# A plain text statement: the values stored are exactly the strings that were hashed, with no
# type processing in between.
# The SQL is built from the constant column names above; every value is a bound parameter.
_COLUMNS = ", ".join(HASHED_COLUMNS)
_INSERT = text(f"INSERT INTO audit_event ({_COLUMNS}, prev_hash, hash) VALUES ("  # noqa: S608 - constant names
               + ", ".join(":" + c for c in HASHED_COLUMNS) + ", :prev_hash, :hash)")
_LOCK_HEAD = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1).with_for_update()
# Built once, like the two above: building an update() on every call cost more than the INSERT.
# The head's signature is written by the same statement that moves it (checkpoints: a head moved
# by hand carries no signature that holds); NULL when the process has no checkpoint key.
_MOVE_HEAD = text("UPDATE audit_head SET seq = :seq, hash = :hash, signature = :signature WHERE id = 1")
_RAW_HEAD = "SELECT seq, hash FROM audit_head WHERE id = 1"
_RAW_INSERT = (f"INSERT INTO audit_event ({_COLUMNS}, prev_hash, hash) "  # noqa: S608 - constant names
               f"VALUES ({', '.join('?' for _ in range(len(HASHED_COLUMNS) + 2))})")
_RAW_MOVE_HEAD = "UPDATE audit_head SET seq = ?, hash = ?, signature = ? WHERE id = 1"


@dataclass(frozen=True)
class Actor:
    """Who is acting: a signed-in user, or the command line on behalf of a named person.

    `sites` and `studies` are the ids a site-role user works for (users.scope reads them, so every
    rule can check without a query); None means global (supply, QA, QP, the lab, the command line)."""

    user_id: int | None
    name: str
    roles: frozenset[Role] = frozenset()
    sites: frozenset[int] | None = None
    studies: frozenset[int] | None = None

    @property
    def is_blinded(self) -> bool:
        return bool(self.roles & BLINDED_ROLES)


def event_hash(prev_hash: str, content: Sequence[Any]) -> str:
    canonical = json.dumps(list(content), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}|{canonical}".encode()).hexdigest()


def as_text(value: Any) -> str | None:
    """How a value is written into the audit trail: readable, stable, never ambiguous."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, (set, frozenset)):
        value = sorted(as_text(v) for v in value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=as_text)
    return str(value)


def record(
    session: Session | Connection,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: Any,
    *,
    field: str | None = None,
    old: Any = None,
    new: Any = None,
    reason: str | None = None,
    visibility: Visibility = Visibility.everyone,
) -> int:
    """Append one event to the chain inside the caller's transaction; returns its sequence number."""
    # Locking the head row serialises concurrent appenders on PostgreSQL, so the chain stays one
    # line with several workers; on SQLite the transaction already holds the write lock.
    # Core statements only: skip the ORM execute path three times. A bare Connection (the scan's
    # lean path, Database.write_connection) is used as it is.
    conn = session if isinstance(session, Connection) else session.connection()
    # On SQLite the driver's own connection (same transaction) skips SQLAlchemy's statement
    # machinery, which cost more than the three statements themselves on the scan path.
    raw = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
    seq, prev = raw.execute(_RAW_HEAD).fetchone() if raw is not None else conn.execute(_LOCK_HEAD).one()
    row, digest = _event(seq + 1, prev, actor, action, entity_type, entity_id, field=field, old=old, new=new,
                         reason=reason, visibility=visibility)
    values = [row[c] for c in HASHED_COLUMNS]
    signature = checkpoints.head_signature(session, row["seq"], digest)  # or signed at commit
    if raw is None:
        conn.execute(_INSERT, {**row, "prev_hash": prev, "hash": digest})
        conn.execute(_MOVE_HEAD, {"seq": row["seq"], "hash": digest, "signature": signature})
    else:  # the engine's NUL guard does not see driver-level statements: the same check here
        if any(isinstance(v, str) and "\x00" in v for v in values):
            raise InvalidInput("Text must not contain NUL characters.", field=field)
        raw.execute(_RAW_INSERT, (*values, prev, digest))
        raw.execute(_RAW_MOVE_HEAD, (row["seq"], digest, signature))
    return row["seq"]


def _event(seq: int, prev: str, actor: Actor, action: str, entity_type: str, entity_id: Any, *,
           field: str | None = None, old: Any = None, new: Any = None, reason: str | None = None,
           visibility: Visibility = Visibility.everyone) -> tuple[dict[str, Any], str]:
    """An event's hashed columns, and its hash chained to `prev`."""
    row = {
        "seq": seq,
        "at": utc_text(utcnow()),
        "user_id": actor.user_id,
        "user_name": actor.name,
        "action": action,
        "entity_type": entity_type,
        "entity_id": str(entity_id),
        "field": field,
        "old_value": as_text(old),
        "new_value": as_text(new),
        "reason": reason,
        "visibility": Visibility(visibility).value,
    }
    try:
        return row, event_hash(prev, [row[c] for c in HASHED_COLUMNS])
    except UnicodeEncodeError:  # a lone surrogate from a JSON client: bad input, not a crash
        raise InvalidInput("Text must not contain unpaired surrogate characters.", field=field) from None


def _head_signature(seq: int, digest: str) -> str | None:
    key = checkpoints.installed()
    return key.sign(checkpoints.head_message(seq, digest)) if key is not None else None


# One event to append with record_all: record's arguments after the connection, its keywords in the dict.
Change = tuple[Actor, str, str, Any, dict[str, Any]]


def record_all(conn: Connection | Pipelined, changes: Sequence[Change]) -> None:
    """Several events appended at once in the caller's transaction (the scans of one group commit):
    the head locked, read, moved and signed once, and the events inserted in one statement. The
    lock is taken here, so a caller writes what it can before calling this, and holds it only for
    these three statements and its commit. In a pipelined transaction (PostgreSQL's scan group) the
    lock's read takes the writes queued before it, and the insert and the move go with the commit."""
    if not changes:
        return
    seq, prev = conn.rows(_LOCK_HEAD)[0] if isinstance(conn, Pipelined) else conn.execute(_LOCK_HEAD).one()
    rows = []
    for change in changes:
        seq += 1
        actor, action, entity_type, entity_id, keywords = change
        row, digest = _event(seq, prev, actor, action, entity_type, entity_id, **keywords)
        rows.append({**row, "prev_hash": prev, "hash": digest})
        prev = digest
    head = {"seq": seq, "hash": prev, "signature": _head_signature(seq, prev)}
    if isinstance(conn, Pipelined):
        conn.send(_INSERT, rows)
        conn.send(_MOVE_HEAD, [head])
    else:
        conn.execute(_INSERT, rows)
        conn.execute(_MOVE_HEAD, head)


def require_reason(reason: str | None, field: str = "reason", kind: str = "reason") -> str:
    """Corrections, invalidations and other second thoughts must say why, within limits.REASON."""
    if reason is None or not reason.strip():
        raise InvalidInput("A reason is required for this change.", field=field)
    return limits.text(reason, field, "reason", kind) or ""


def initialise_head(session: Session) -> None:
    if session.get(AuditHead, 1) is None:
        session.add(AuditHead(id=1, seq=0, hash=GENESIS_HASH))
        session.flush()


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrailFilter:
    user: str | None = None  # matches username-independent printed name or user id
    entity_type: str | None = None
    entity_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None


def visible_events(viewer: Actor, *, whole: bool = False, kind: str | None = None) -> Select[AuditEvent]:
    """The events a viewer may read: its scope (trail_scope; `whole` for a statement that reads them
    all), and for blinded viewers never an arm-revealing event. With `kind`, the events of that kind
    only, under that kind's one rule: the OR of every kind's costs PostgreSQL milliseconds to plan."""
    rules = kind_rules(viewer, whole=whole)
    if kind is None:
        query = select(AuditEvent).where(trail_scope(viewer, rules))
    elif rules is not None and kind not in rules:
        # A kind a blinded scope never names matches nothing: said at once, not found by reading
        # every event of that kind (a lot's 250,000 at ten years) to reject each.
        query = select(AuditEvent).where(false())
    else:
        rule = rules.get(kind) if rules is not None else None
        query = select(AuditEvent).where(col(AuditEvent.entity_type) == kind, *(() if rule is None else (rule,)))
    if viewer.is_blinded:
        query = query.where(col(AuditEvent.visibility) == Visibility.everyone.value)
    return query


def _filtered(viewer: Actor, flt: TrailFilter, *, whole: bool = False,
              session: Session | None = None) -> Select[AuditEvent]:
    query = visible_events(viewer, whole=whole, kind=flt.entity_type)
    if flt.user:
        if flt.user.isdigit():
            query = query.where(col(AuditEvent.user_id) == int(flt.user))
        else:
            query = query.where(_by_name(flt.user, session))
    if flt.entity_id:
        query = query.where(col(AuditEvent.entity_id) == flt.entity_id)
    if flt.action:
        query = query.where(col(AuditEvent.action) == flt.action)
    if flt.since:
        query = query.where(col(AuditEvent.at) >= flt.since)
    if flt.until:
        query = query.where(col(AuditEvent.at) < flt.until)
    return query


def _by_name(name: str, session: Session | None) -> ColumnElement[bool]:
    """Events whose printed name holds `name`, read along (user_id, seq) rather than by testing
    every event's name (1.8 s at two million): a user's events carry the name the user was created
    with (users.create_user; it never changes), so only the events of the users so named, and those
    of no user (the command line, the system), can match. The name test itself still decides."""
    pattern = f"%{name}%"
    named = select(col(User.id)).where(col(User.full_name).ilike(pattern))
    # Read first when a session is at hand: given the ids, PostgreSQL knows how many events they hold.
    ids = list(session.scalars(named)) if session is not None else named
    nobody = col(AuditEvent.user_id).is_(None)
    who = or_(col(AuditEvent.user_id).in_(ids), nobody) if ids != [] else nobody  # SQLite: no OR, the index
    return and_(who, col(AuditEvent.user_name).ilike(pattern))


def trail_query(viewer: Actor, flt: TrailFilter) -> Select[AuditEvent]:
    """The viewer's filtered trail, oldest first, as a query (to stream, not to load): every event
    read, so the planner may hash the reader's scope once (audit_scope._asked)."""
    return _filtered(viewer, flt, whole=True).order_by(col(AuditEvent.seq))


def trail(session: Session, viewer: Actor, flt: TrailFilter, *, limit: int | None = 500,
          newest_first: bool = True) -> list[AuditEvent]:
    order = col(AuditEvent.seq).desc() if newest_first else col(AuditEvent.seq)
    query = _filtered(viewer, flt, session=session).order_by(order)
    if limit and newest_first and flt.user and flt.user.isdigit() and flt == TrailFilter(user=flt.user) \
            and not viewer.is_blinded:
        # A user's newest events (every home page: "what I did lately"), picked on (user_id, seq)
        # first: given the whole row, PostgreSQL walks the trail backwards by seq and filters by
        # user, 54 ms for a user whose events are old at two million (0.3 ms this way). Only with
        # no other filter and for unblinded readers, whose scope takes nothing from the ten picked.
        newest = (select(col(AuditEvent.seq)).where(col(AuditEvent.user_id) == int(flt.user))
                  .order_by(col(AuditEvent.seq).desc()).limit(limit))
        query = query.where(col(AuditEvent.seq).in_(newest.scalar_subquery()))
    if limit:
        query = query.limit(limit)
    return list(session.scalars(query))


# Newest first by sequence number. Cursors are sealed (pagination): a blinded reader never learns
# a sequence number, whose gaps would betray the events it may not see.
TRAIL_ORDER = pagination.Order("audit trail", (col(AuditEvent.seq),), newest_first=True)


def trail_page(session: Session, viewer: Actor, flt: TrailFilter, ask: pagination.Ask) -> pagination.Page[AuditEvent]:
    """One page of the viewer's trail, newest first."""
    return pagination.page(session, _filtered(viewer, flt, session=session), TRAIL_ORDER, ask)


def history(session: Session, viewer: Actor, entity_type: str, entity_id: str) -> list[AuditEvent]:
    return trail(session, viewer, TrailFilter(entity_type=entity_type, entity_id=entity_id),
                 limit=None, newest_first=False)


def entity_types(session: Session, viewer: Actor) -> list[str]:
    """The kinds of record in the viewer's trail (the filter's choices). Read by skipping from one
    kind to the next along the index (a few dozen seeks), not by a DISTINCT over every event: the
    trail grows by the million, its kinds do not. A blinded viewer's kinds are those its scope
    reaches at least once."""
    kinds = list(session.scalars(text(
        "WITH RECURSIVE kinds(kind) AS (SELECT min(entity_type) FROM audit_event UNION ALL "
        "SELECT (SELECT min(entity_type) FROM audit_event WHERE entity_type > kind) FROM kinds WHERE kind IS NOT NULL) "
        "SELECT kind FROM kinds WHERE kind IS NOT NULL")))
    rules = kind_rules(viewer)
    if rules is None:
        return kinds
    # Only the kinds a blinded scope names can be in it (the rest would each be read to the end to
    # find nothing); a kind it holds whole is in the trail already; the others are asked, each
    # under its own rule, in one statement.
    candidates = [kind for kind in kinds if kind in rules]
    asked = {kind: rule for kind, rule in rules.items() if kind in candidates and rule is not None}
    found = set(candidates) - set(asked)
    if asked:
        found |= set(session.scalars(union_all(*(
            select(literal(kind)).where(exists().where(col(AuditEvent.entity_type) == kind, rule))
            for kind, rule in asked.items()))))
    return [kind for kind in candidates if kind in found]


# Times in the site's zone with their offset, as on the pages (seconds kept: an export is a record);
# keys and values as stored, their ISO times read in site time too.
CSV_COLUMNS = ("time", "user_id", "user", "action", "entity_type", "entity_id", "field",
               "old_value", "new_value", "reason")


def csv_header(viewer: Actor) -> tuple[str, ...]:
    """Blinded viewers get no sequence numbers or hashes: a gap in them would show that something
    they may not see happened in between."""
    return (*(() if viewer.is_blinded else ("seq", "hash")), *CSV_COLUMNS)


def csv_row(e: AuditEvent, viewer: Actor) -> tuple[object, ...]:
    ids: tuple[object, ...] = () if viewer.is_blinded else (e.seq, e.hash)
    return (*ids, e.at, e.user_id, e.user_name, e.action, e.entity_type, e.entity_id,
            e.field, *(times_in(v) if v else v for v in (e.old_value, e.new_value, e.reason)))


def to_csv(events: list[AuditEvent], viewer: Actor) -> str:
    """CSV export of these events (the whole trail streams: audit_export.csv_chunks)."""
    return csv_text(csv_header(viewer), [csv_row(e, viewer) for e in events])
