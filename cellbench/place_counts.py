"""Running counts of a study's kits by place and state over all blinded lots (PlaceCount), and
each place's fingerprint: what the study pages' totals and the monitor's home read in a few rows.

The blinded-lot counters (kit_counts.py) hold a row per blinded lot, place and state; ten years of
a study leave thousands of blinded lots at a site, every one of them still in the figures (its
dispensed and destroyed kits stay there). Summing them on every page grows with the years. These
rows are their sums by place and state, kept by kit_counts.write in the same transaction as the
move (the same writer order, the same upsert), so a study's kits by state are a dozen rows per
place, whatever the number of blinded lots.

The fingerprint says whether a site's accountability figures (accountability/verification.py:
per blinded lot, kits by category) are still those a monitor verified, without reading them. It is
a sum over the figures, modulo the prime MODULUS, of kits x weight(blinded lot, category), each
weight drawn from a hash of the two: a kit moving between states of one category (dispensed to
administered) changes nothing, any change of a category's count changes it (a different sum of
the same weights collides with odds about 2**-61). Being a sum, each move adds its share in
place: no figure is read. It holds blinded lots and categories only, the same for both arms.

How many blinded lots each place's figures hold (PlaceLotCount) is kept with them: a blinded lot is
in a place's figures while it has a kit there in a state of a category. The monitor's verification
API said it by counting the distinct blinded lots of the site's counters (4,167 at ten years; the
read grew 1.7-2.5x from a tenth of the data). A move changes it only when one of its blinded lots
comes into a place's figures or leaves them: its kits in the figures there go from none to some,
or back. Those blinded lots' counters at the place are read once, in the same write, after the
counters took the move; a move inside the figures (dispensed to administered) reads nothing.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

from sqlalchemy import Table, delete, func, select
from sqlmodel import Session, col

from . import db
from .kit_categories import category_of
from .models import KitCount, PlaceCount, PlaceLotCount

MODULUS = 2 ** 61 - 1  # a prime, so that the sum of two residues fits a signed 64-bit integer
_COUNT: Table = PlaceCount.metadata.tables["place_count"]
_KEY = ("study_id", "place", "state")
_LOTS: Table = PlaceLotCount.metadata.tables["place_lot_count"]
_LOTS_KEY = ("study_id", "place")
_CHUNK = 400  # blinded lots per read: far below every engine's limit of bound values

Key = tuple[int, int, str]  # study id, place (0: the cell bench), state
Tally = dict[Key, tuple[int, int]]  # kits, fingerprint share
Place = tuple[int, int]  # study id, place


@lru_cache(maxsize=65536)
def weight(blinded_lot_id: int, category: str) -> int:
    """A blinded lot's category's weight in its place's fingerprint: fixed, arm-free, hash-drawn."""
    digest = hashlib.blake2b(f"{blinded_lot_id}/{category}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % MODULUS


def share(blinded_lot_id: int, state: str, kits: int) -> int:
    """What `kits` kits of the blinded lot in this state add to their place's fingerprint (none for
    a state outside the figures, such as planned)."""
    category = category_of(state)
    return kits * weight(blinded_lot_id, category) % MODULUS if category is not None else 0


def tally(counters: Iterable[tuple[tuple[int, int, int, str], int]]) -> Tally:
    """Blinded-lot counters ((study, place, blinded lot, state), kits) summed by place and state."""
    found: dict[Key, tuple[int, int]] = {}
    for (study_id, place, lot_id, state), n in counters:
        kits, print_ = found.get((study_id, place, state), (0, 0))
        found[(study_id, place, state)] = kits + n, (print_ + share(lot_id, state, n)) % MODULUS
    return found


def write(session: Session, changed: list[tuple[tuple[int, int, int, str], int]]) -> None:
    """Add the blinded-lot counters' changes (kit_counts.write's, in its order, written already) to
    these rows, and the blinded lots that came into or left a place's figures to its lot count:
    one upsert executed for each table (db.add_to_rows)."""
    moved = sorted((key, kits, print_) for key, (kits, print_) in tally(changed).items() if kits or print_)
    db.add_to_rows(session, _COUNT, _KEY, [{**dict(zip(_KEY, key, strict=True)), "kits": kits, "fingerprint": print_}
                                           for key, kits, print_ in moved],
                   lambda new: {"kits": _COUNT.c.kits + new.kits,
                                "fingerprint": (_COUNT.c.fingerprint + new.fingerprint) % MODULUS})
    lots = _lots_moved(session, changed)
    db.add_to_rows(session, _LOTS, _LOTS_KEY, [{"study_id": s, "place": p, "blinded_lots": n}
                                               for (s, p), n in sorted(lots.items()) if n],
                   lambda new: {"blinded_lots": _LOTS.c.blinded_lots + new.blinded_lots})


def _in_figures(counters: Iterable[tuple[tuple[int, int, int, str], int]]) -> Counter[tuple[int, int, int]]:
    """Blinded-lot counters ((study, place, blinded lot, state), kits) as each blinded lot's kits in
    its place's figures (in a state of a category)."""
    kits: Counter[tuple[int, int, int]] = Counter()
    for (study_id, place, lot_id, state), n in counters:
        if category_of(state) is not None:
            kits[(study_id, place, lot_id)] += n
    return kits


def _lots_moved(session: Session, changed: list[tuple[tuple[int, int, int, str], int]]) -> Counter[Place]:
    """How many blinded lots came into each place's figures (or left them: negative) with these
    changes of the blinded-lot counters, which the counters already hold."""
    moved = _in_figures(changed)
    touched = sorted(key for key, n in moved.items() if n)
    lot_ids = sorted({lot_id for _s, _p, lot_id in touched})
    read = []
    for start in range(0, len(lot_ids), _CHUNK):  # along the counters' blinded-lot index; all places of each
        read += [((s, p, b, state), n) for s, p, b, state, n in session.execute(
            select(col(KitCount.study_id), col(KitCount.place), col(KitCount.blinded_lot_id), col(KitCount.state),
                   col(KitCount.kits)).where(col(KitCount.blinded_lot_id).in_(lot_ids[start:start + _CHUNK])))]
    now = _in_figures(read)
    lots: Counter[Place] = Counter()
    for key in touched:
        if (now[key] - moved[key] > 0) != (now[key] > 0):
            lots[key[:2]] += 1 if now[key] > 0 else -1
    return lots


def lots_of(counters: Iterable[tuple[tuple[int, int, int, str], int]]) -> Counter[Place]:
    """Blinded-lot counters ((study, place, blinded lot, state), kits) as blinded lots in each place's figures."""
    return Counter(key[:2] for key, n in _in_figures(counters).items() if n > 0)


def stored_lots(session: Session) -> Counter[Place]:
    """The blinded lots in each place's figures, as kept (places at zero left out)."""
    return Counter({(s, p): n for s, p, n in session.execute(
        select(col(PlaceLotCount.study_id), col(PlaceLotCount.place), col(PlaceLotCount.blinded_lots))
        .where(col(PlaceLotCount.blinded_lots) != 0))})


def blinded_lots(session: Session, study_id: int, place: int) -> int:
    """How many blinded lots the place's figures hold: one row."""
    return int(session.scalar(select(col(PlaceLotCount.blinded_lots)).where(
        col(PlaceLotCount.study_id) == study_id, col(PlaceLotCount.place) == place)) or 0)


def stored(session: Session) -> Tally:
    """The rows as kept (those at zero left out)."""
    return {(s, p, st): (n, f) for s, p, st, n, f in session.execute(
        select(col(PlaceCount.study_id), col(PlaceCount.place), col(PlaceCount.state), col(PlaceCount.kits),
               col(PlaceCount.fingerprint))) if n or f}


def refill(session: Session, counters: Counter) -> None:
    """The rows, and the blinded lots in each place's figures, rebuilt from the blinded-lot counters
    (kit_counts.refill)."""
    session.execute(delete(PlaceCount))
    rows = [{**dict(zip(_KEY, key, strict=True)), "kits": kits, "fingerprint": print_}
            for key, (kits, print_) in sorted(tally(counters.items()).items())]
    if rows:
        session.execute(_COUNT.insert(), rows)
    session.execute(delete(PlaceLotCount))
    if lots := lots_of(counters.items()):
        session.execute(_LOTS.insert(), [{"study_id": s, "place": p, "blinded_lots": n}
                                         for (s, p), n in sorted(lots.items())])


def fingerprint(session: Session, study_id: int, place: int) -> tuple[int, int]:
    """The place's kits in the figures (0: nothing to verify) and its fingerprint, from its rows."""
    kits, print_ = 0, 0
    for state, n, f in session.execute(select(col(PlaceCount.state), col(PlaceCount.kits), col(PlaceCount.fingerprint))
                                       .where(col(PlaceCount.study_id) == study_id, col(PlaceCount.place) == place)):
        if category_of(state) is not None:
            kits, print_ = kits + n, (print_ + f) % MODULUS
    return kits, print_


def of_figures(figures: dict[str, dict[str, int]], lot_ids: dict[str, int]) -> int:
    """The fingerprint of figures as stored with a verification (blinded lot code -> kits by
    category, with the totals, which are not categories), given the blinded lots' ids by code."""
    total = 0
    for code, counts in figures.items():
        for category, n in counts.items():
            if n and category not in ("released", "on_hand"):
                total = (total + n * weight(lot_ids[code], category)) % MODULUS
    return total


def by_state(session: Session, *, study_id: int | None = None, where: Iterable = ()) -> dict[str, int]:
    """Kits with a blinded lot by state (of a study; within extra conditions on PlaceCount)."""
    query = select(col(PlaceCount.state), func.sum(col(PlaceCount.kits))).where(*where).group_by(col(PlaceCount.state))
    if study_id is not None:
        query = query.where(col(PlaceCount.study_id) == study_id)
    return {str(state): int(n) for state, n in session.execute(query) if n}
