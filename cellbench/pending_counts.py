"""The running counters' changes (kit_counts, place_counts, storage_counts, unpackaged_counts), collected in the unit of
work and written once, just before it commits: one upsert per counter table per
transaction, whatever the number of moves in it.

A use case moves kits in several calls (a receipt: the kits received, those held, each kit shelved
back on its box's tank; the demo's story: hundreds), and each call wrote its counter rows at once,
one upsert per row touched, three tables each time. Now each call adds its deltas here, in the
session, and they are written:
- before the transaction commits (Session before_commit), in the same transaction as the moves and
  after their audit events: on PostgreSQL the audit chain's head is locked by then, so counter rows
  are written by one writer at a time, each table in key order (no deadlock), and each upsert adds
  its delta to the row as it stands (no lost update);
- before a statement of the session reads a counter table (do_orm_execute), so that a use case, or a
  test, reads its own moves in its own transaction;
- never when the transaction rolls back: its deltas are dropped with it. A delta belongs to the
  innermost transaction it was added in: a savepoint rolled back drops its own deltas, and gives back
  those of the transactions around it that a read inside it had written.
The deltas hold keys and numbers only, the same for both arms."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import TextClause, event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlalchemy.sql.util import find_tables

# Writes one counter table's changes, sorted by key, in one statement (db.add_to_rows).
Writer = Callable[[Any, list[Any]], None]  # (session, [(key, delta), ...])

_INFO = "cellbench.pending_counts"
COUNTER_TABLES = frozenset({"kit_count", "place_count", "place_lot_count", "storage_count", "unpackaged_count"})


@dataclass
class _Pending:
    # owner transaction -> writer -> deltas by key
    deltas: dict[SessionTransaction, dict[Writer, Counter]] = field(default_factory=dict)
    # a savepoint -> what was written inside it (owner, writer, deltas): given back if it rolls back
    written: dict[SessionTransaction, list[tuple[SessionTransaction, Writer, Counter]]] = field(default_factory=dict)


def add(session: Session, writer: Writer, delta: Counter) -> None:
    """Deltas for `writer`'s table, written before this session's transaction commits."""
    if not any(delta.values()):
        return
    owner = session.get_nested_transaction() or session.get_transaction()
    if owner is None:  # nothing begun yet: a counter change belongs to a transaction
        session.connection()
        owner = session.get_transaction()
        assert owner is not None
    pending: _Pending = session.info.setdefault(_INFO, _Pending())
    pending.deltas.setdefault(owner, {}).setdefault(writer, Counter()).update(delta)


def add_moves(session: Session, writer: Writer, moves: Iterable[tuple[Any, Any]]) -> None:
    """Each (before, after) counter key of a moved kit (None: counted by no counter of `writer`'s):
    one less where it was, one more where it is now."""
    delta: Counter = Counter()
    for before, after in moves:
        if before == after:
            continue
        if before is not None:
            delta[before] -= 1
        if after is not None:
            delta[after] += 1
    add(session, writer, delta)


def flush(session: Session) -> None:
    """Write every pending delta now, one upsert per table, tables in a fixed order."""
    pending: _Pending | None = session.info.get(_INFO)
    if pending is None or not pending.deltas:
        return
    merged: dict[Writer, Counter] = {}
    each = [(owner, writer, delta) for owner, by_writer in pending.deltas.items()
            for writer, delta in by_writer.items()]
    for _owner, writer, delta in each:
        merged.setdefault(writer, Counter()).update(delta)
    if (inner := session.get_nested_transaction()) is not None:
        pending.written.setdefault(inner, []).extend(each)
    pending.deltas = {}  # before writing: the writers' own statements must not flush again
    for writer in sorted(merged, key=lambda w: (w.__module__, w.__qualname__)):
        if changed := sorted((key, n) for key, n in merged[writer].items() if n):
            writer(session, changed)


# Whether a statement of this shape (its cache key, which SQLAlchemy computes once per statement and
# memoises for its own compiled cache) reads a counter table: walking every SELECT of a long use case
# while deltas waited cost the demo build seconds.
_READS: dict[Any, bool] = {}
_READS_KEPT = 10_000


def _reads_counters(statement: Any) -> bool:
    if isinstance(statement, TextClause):
        return any(name in statement.text for name in COUNTER_TABLES)
    cache_key = statement._generate_cache_key()
    if cache_key is None:  # a statement SQLAlchemy does not cache: walked each time
        return _names_a_counter(statement)
    found = _READS.get(cache_key.key)
    if found is None:
        if len(_READS) >= _READS_KEPT:
            _READS.clear()
        found = _READS[cache_key.key] = _names_a_counter(statement)
    return found


def _names_a_counter(statement: Any) -> bool:
    return any(getattr(table, "name", None) in COUNTER_TABLES
               for table in find_tables(statement, include_joins=True, include_aliases=True))


@event.listens_for(Session, "do_orm_execute")
def _before_a_read(state: ORMExecuteState) -> None:
    pending: _Pending | None = state.session.info.get(_INFO)
    if pending is not None and pending.deltas and state.is_select and _reads_counters(state.statement):
        flush(state.session)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    flush(session)  # a savepoint released, or the transaction committed: its deltas are in it


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    """A savepoint released: what was written inside it now stands or falls with the one around it."""
    pending: _Pending | None = session.info.get(_INFO)
    released = session.get_nested_transaction()
    if pending is None or released is None:
        return
    written = pending.written.pop(released, [])
    parent = released.parent
    if written and parent is not None and parent.nested:
        pending.written.setdefault(parent, []).extend(written)


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    """The transaction ended: committed (its deltas written) or rolled back (its deltas dropped,
    and the outer transactions' deltas written inside a savepoint given back to them)."""
    pending: _Pending | None = session.info.get(_INFO)
    if pending is None:
        return
    if transaction.parent is None:
        del session.info[_INFO]
        return
    pending.deltas.pop(transaction, None)
    outer: set[SessionTransaction] = set()
    around: SessionTransaction | None = transaction.parent
    while around is not None:
        outer.add(around)
        around = around.parent
    for owner, writer, delta in pending.written.pop(transaction, []):
        if owner in outer:
            pending.deltas.setdefault(owner, {}).setdefault(writer, Counter()).update(delta)
