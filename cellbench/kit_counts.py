"""Running counts of kits by study, place, blinded lot and state (KitCount), so that accountability
reads a few dozen rows whatever the number of kits.

The kit lifecycle (kits.move_many, the one place every kit's state, site and blinded lot change)
calls `apply` in the mover's transaction, after the move's audit events. The deltas wait in the
session and are written once, just before it commits (pending_counts.py): one upsert for this table
and one for the sums by place, whatever the number of moves. On PostgreSQL the move's audit events
already hold the audit chain's head then, so counter rows are taken by one writer at a time and in
one order (no deadlock, no lost update). Kits come into being planned and without a blinded lot
(kits.issue), so nothing is counted here until packaging gives them one: until then they are
counted by study, place and state only (unpackaged_counts.py).

The counts hold no arm: a blinded lot's kits of both arms share its rows. `recount` compares them
with the kit rows (for `cellbench verify` and the tests); `refill` rebuilds them from the rows (the
migration that created the table, and bulk builders that insert kits directly). Their sums by place
and state, and the blinded lots in each place's figures (place_counts.py), are kept, compared and
rebuilt with them, and so are the kits by storage location and the kits not yet in a blinded lot."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, delete, func, select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from . import db, pending_counts, place_counts, storage_counts, unpackaged_counts, users
from .audit import Actor
from .models import BlindedLot, Kit, KitCount, Site, Study

BENCH = 0  # the place of kits at the cell bench (no site)
_COUNT: Table = KitCount.metadata.tables["kit_count"]
_KEY = ("study_id", "place", "blinded_lot_id", "state")

Key = tuple[int, int, int, str]  # study id, place, blinded lot id, state


def key_of(study_id: int, site_id: int | None, blinded_lot_id: int | None, state: object) -> Key | None:
    """The counter a kit in this situation adds to; None for a kit with no blinded lot yet."""
    if blinded_lot_id is None:
        return None
    return study_id, site_id or BENCH, blinded_lot_id, str(getattr(state, "value", state))


def apply(session: Session, moves: Iterable[tuple[Key | None, Key | None]]) -> None:
    """Each (before, after) of a moved kit: one less where it was, one more where it is now. The
    deltas wait in the session and are written once before it commits (pending_counts.py)."""
    pending_counts.add_moves(session, write, moves)


def write(session: Session, changed: list[tuple[Key, int]]) -> None:
    """The counters' changes in key order, one upsert executed for each (db.add_to_rows), and
    their sums by place and state (place_counts.py) in the same order."""
    db.add_to_rows(session, _COUNT, _KEY, [{**dict(zip(_KEY, key, strict=True)), "kits": n} for key, n in changed],
                   lambda new: {"kits": _COUNT.c.kits + new.kits})
    place_counts.write(session, changed)


def place_site(place: int) -> int | None:
    """The site id a counter's place names; None for the cell bench."""
    return place or None


def within(reader: Actor, place: Any, study: Any) -> list[ColumnElement[bool]]:
    """A reader's sites and studies (users.scope_conditions, the cell bench too) as conditions on a
    counter table's place: one IN list holding the bench's 0, which the counters' (study, place, ...)
    index ranges over. `nullif(place, 0) IN (...) OR ... IS NULL` hid the place from the index:
    PostgreSQL read all of a study's counters for a pharmacist's page (16.7 ms at ten years)."""
    found = users.scope_conditions(reader, study=study)
    if reader.sites is not None:
        found.append(place.in_([*sorted(reader.sites), BENCH]))
    return found


def from_rows(session: Session) -> Counter[Key]:
    """The counts as the kit rows give them now: one GROUP BY over every kit (not for pages)."""
    group = (col(Kit.study_id), col(Kit.site_id), col(Kit.blinded_lot_id), col(Kit.state))
    found: Counter[Key] = Counter()
    for study_id, site_id, lot_id, state, n in session.execute(
            select(*group, func.count()).where(col(Kit.blinded_lot_id).is_not(None)).group_by(*group)):
        key = key_of(study_id, site_id, lot_id, state)
        if key is not None:
            found[key] += n
    return found


def stored(session: Session) -> Counter[Key]:
    """The running counts as kept (counters at zero left out)."""
    return Counter({(s, p, b, st): n for s, p, b, st, n in session.execute(
        select(col(KitCount.study_id), col(KitCount.place), col(KitCount.blinded_lot_id), col(KitCount.state),
               col(KitCount.kits)).where(col(KitCount.kits) != 0))})


def recount(session: Session) -> list[str]:
    """Where the running counts disagree with the kit rows, one line each (named by study, site and
    blinded lot code, as verify names everything); empty when they agree. The counts by place and
    the blinded lots in each place's figures (place_counts.py), by storage location
    (storage_counts.py) and of kits not yet in a blinded lot (unpackaged_counts.py) are checked
    with them."""
    pending_counts.flush(session)  # this transaction's own moves counted
    kept, counted = stored(session), from_rows(session)
    wrong = sorted(key for key in set(kept) | set(counted) if kept.get(key, 0) != counted.get(key, 0))
    summed, sums = place_counts.stored(session), place_counts.tally(counted.items())
    wrong_sums = sorted(key for key in set(summed) | set(sums) if summed.get(key, (0, 0)) != sums.get(key, (0, 0)))
    held, lots = place_counts.stored_lots(session), place_counts.lots_of(counted.items())
    wrong_lots = sorted(key for key in set(held) | set(lots) if held.get(key, 0) != lots.get(key, 0))
    others = storage_counts.recount(session) + unpackaged_counts.recount(session)
    if not wrong and not wrong_sums and not wrong_lots:
        return others
    studies = dict(session.execute(select(col(Study.id), col(Study.code))).all())
    sites = dict(session.execute(select(col(Site.id), col(Site.code))).all())
    lot_codes = dict(session.execute(select(col(BlindedLot.id), col(BlindedLot.code))
                                     .where(col(BlindedLot.id).in_({key[2] for key in wrong}))).all())

    def place(study_id: int, place_id: int) -> str:
        return f"{studies.get(study_id, f'study {study_id}')}, " + (
            sites.get(place_id, f"site {place_id}") if place_id else "the cell bench")

    return [f"kit count of {place(s, p)}, blinded lot {lot_codes.get(b, b)}, {state}: kept {kept.get(key, 0)}, "
            f"the kit rows say {counted.get(key, 0)}" for key in wrong for s, p, b, state in [key]] + [
        f"kits by place of {place(s, p)}, {state}: kept {summed.get(key, (0, 0))}, the kit rows say "
        f"{sums.get(key, (0, 0))} (kits, fingerprint)" for key in wrong_sums for s, p, state in [key]] + [
        f"blinded lots in the figures of {place(s, p)}: kept {held.get(key, 0)}, the kit rows say {lots.get(key, 0)}"
        for key in wrong_lots for s, p in [key]] + others


def refill(session: Session) -> int:
    """The running counts rebuilt from the kit rows (after a bulk insert of kits, or a migration),
    and the storage counts and the counts of kits not yet in a blinded lot with them. Returns how
    many kit counters there are."""
    storage_counts.refill(session)  # writes what waits first (pending_counts): the rows already hold it
    unpackaged_counts.refill(session)
    session.execute(delete(KitCount))
    counted = from_rows(session)
    if counted:
        session.execute(_COUNT.insert(), [{**dict(zip(_KEY, key, strict=True)), "kits": n}
                                          for key, n in sorted(counted.items())])
    place_counts.refill(session, counted)
    return len(counted)
