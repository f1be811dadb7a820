"""Running counts of kits by storage location and state (StorageCount), so that the storage page
reads a few rows a tank or freezer whatever the number of kits put away over the years.

Two kinds of move change them, each in the mover's transaction and after the move's audit events
(as kit_counts.py: the deltas wait in the session and are written just before it commits,
pending_counts.py, so that on PostgreSQL counter rows are written by one writer at a time):
- a move of the kit lifecycle (kits.move_many) changes a kit's state, and takes it off its shelf
  when it leaves storage (kits.LEAVES_STORAGE): `apply`, beside kit_counts.apply;
- a kit put away, into a tank (custody.store) or a box of a tank (custody.place), or back on its
  box's tank at receipt: its location changes, its state does not: `moved`.

The counts hold no arm: a tank's kits of both arms share its rows. `recount` compares them with
the kit rows (for `cellbench verify`, through kit_counts.recount, and the tests); `refill`
rebuilds them from the rows (the migration that created the table, bulk builders)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from sqlalchemy import Table, delete, func, select
from sqlmodel import Session, col

from . import db, pending_counts
from .models import Kit, StorageCount, StorageLocation

_COUNT: Table = StorageCount.metadata.tables["storage_count"]

Key = tuple[int, str]  # storage location id, state


def key_of(location_id: int | None, state: object) -> Key | None:
    """The counter a kit in this location and state adds to; None for a kit in no location."""
    if location_id is None:
        return None
    return location_id, str(getattr(state, "value", state))


def apply(session: Session, moves: Iterable[tuple[Key | None, Key | None]]) -> None:
    """Each (before, after) of a moved kit: one less where it was, one more where it is now. The
    deltas wait in the session and are written once before it commits (pending_counts.py)."""
    pending_counts.add_moves(session, write, moves)


def write(session: Session, changed: list[tuple[Key, int]]) -> None:
    """The counters' changes in key order, one upsert executed for each (db.add_to_rows)."""
    db.add_to_rows(session, _COUNT, ("storage_location_id", "state"),
                   [{"storage_location_id": location_id, "state": state, "kits": n}
                    for (location_id, state), n in changed],
                   lambda new: {"kits": _COUNT.c.kits + new.kits})


def moved(session: Session, kit: Kit, before: int | None) -> None:
    """The kit went from location `before` to the one it names now, in the state it is in."""
    apply(session, [(key_of(before, kit.state), key_of(kit.storage_location_id, kit.state))])


def held(session: Session, states: Iterable[object], location_ids: Iterable[int] | None = None) -> dict[int, int]:
    """storage location id -> kits in it in one of these states (of these locations; None: all)."""
    query = (select(col(StorageCount.storage_location_id), func.sum(col(StorageCount.kits)))
             .where(col(StorageCount.state).in_(sorted(str(getattr(s, "value", s)) for s in states)))
             .group_by(col(StorageCount.storage_location_id)))
    if location_ids is not None:
        query = query.where(col(StorageCount.storage_location_id).in_(sorted(set(location_ids))))
    return {location: int(n) for location, n in session.execute(query) if n}


def from_rows(session: Session) -> Counter[Key]:
    """The counts as the kit rows give them now: one GROUP BY over every stored kit (not for pages)."""
    group = (col(Kit.storage_location_id), col(Kit.state))
    return Counter({key: n for location, state, n in session.execute(
        select(*group, func.count()).where(col(Kit.storage_location_id).is_not(None)).group_by(*group))
        if (key := key_of(location, state)) is not None})


def stored(session: Session) -> Counter[Key]:
    """The running counts as kept (counters at zero left out)."""
    return Counter({(location, state): n for location, state, n in session.execute(
        select(col(StorageCount.storage_location_id), col(StorageCount.state), col(StorageCount.kits))
        .where(col(StorageCount.kits) != 0))})


def recount(session: Session) -> list[str]:
    """Where the running counts disagree with the kit rows, one line each (named by the location's
    code); empty when they agree."""
    pending_counts.flush(session)  # this transaction's own moves counted
    kept, counted = stored(session), from_rows(session)
    wrong = sorted(key for key in set(kept) | set(counted) if kept.get(key, 0) != counted.get(key, 0))
    if not wrong:
        return []
    codes = dict(session.execute(select(col(StorageLocation.id), col(StorageLocation.code))).all())
    return [f"storage count of {codes.get(location, f'location {location}')}, {state}: kept {kept.get(key, 0)}, "
            f"the kit rows say {counted.get(key, 0)}" for key in wrong for location, state in [key]]


def refill(session: Session) -> int:
    """The running counts rebuilt from the kit rows. Returns how many counters there are."""
    pending_counts.flush(session)  # what waits is in the kit rows already: written first, then replaced
    session.execute(delete(StorageCount))
    counted = from_rows(session)
    if counted:
        session.execute(_COUNT.insert(), [{"storage_location_id": location, "state": state, "kits": n}
                                          for (location, state), n in sorted(counted.items())])
    return len(counted)
