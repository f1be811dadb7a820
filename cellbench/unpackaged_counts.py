"""Running counts of the kits not yet in a blinded lot, by study, place and state (UnpackagedCount),
so that a study's kits by state (the study list's totals) read a few rows: at ten years 11,112 kit
numbers issued and not yet packaged were counted from the kit rows on every read of /studies, which
grew 2.1x from a tenth of the data to all of it.

A kit comes into being planned and without a blinded lot (kits.issue: `issued`) and is given one at
packaging; a move of the kit lifecycle (kits.move_many, the one place a kit's state, site and blinded
lot change) passes its before and after here (`apply`), beside kit_counts.apply, which counts the
kits with a blinded lot. Kits are never deleted. The deltas wait in the session and are written
once, just before it commits, with the other running counters (pending_counts.py): in the mover's
transaction, after its audit events, one upsert. `recount` compares the counts with the kit rows
(for `cellbench verify`, through kit_counts.recount, and the tests); `refill` rebuilds them from the
rows (the migration that created the table, bulk builders, through kit_counts.refill).

The counts hold no arm: a kit list's kits of both arms share its rows."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from sqlalchemy import Table, delete, func, select
from sqlmodel import Session, col

from . import db, pending_counts
from .models import Kit, Site, Study, UnpackagedCount

BENCH = 0  # the place of kits at the cell bench (no site), as kit_counts.BENCH
_COUNT: Table = UnpackagedCount.metadata.tables["unpackaged_count"]
_KEY = ("study_id", "place", "state")

Key = tuple[int, int, str]  # study id, place, state


def key_of(study_id: int, site_id: int | None, blinded_lot_id: int | None, state: object) -> Key | None:
    """The counter a kit in this situation adds to; None for a kit in a blinded lot (kit_counts')."""
    if blinded_lot_id is not None:
        return None
    return study_id, site_id or BENCH, str(getattr(state, "value", state))


def apply(session: Session, moves: Iterable[tuple[Key | None, Key | None]]) -> None:
    """Each (before, after) of a moved kit: one less where it was, one more where it is now."""
    pending_counts.add_moves(session, write, moves)


def issued(session: Session, study_id: int, kits: int, state: object) -> None:
    """`kits` new kits of the study, at the cell bench in this state, without a blinded lot."""
    key = key_of(study_id, None, None, state)
    assert key is not None
    pending_counts.add(session, write, Counter({key: kits}))


def write(session: Session, changed: list[tuple[Key, int]]) -> None:
    """The counters' changes in key order, one upsert executed for each (db.add_to_rows)."""
    db.add_to_rows(session, _COUNT, _KEY, [{**dict(zip(_KEY, key, strict=True)), "kits": n} for key, n in changed],
                   lambda new: {"kits": _COUNT.c.kits + new.kits})


def from_rows(session: Session) -> Counter[Key]:
    """The counts as the kit rows give them now: one GROUP BY over the kits without a blinded lot
    (along ix_kit_unpacked; not for pages)."""
    group = (col(Kit.study_id), col(Kit.site_id), col(Kit.state))
    return Counter({key: n for study_id, site_id, state, n in session.execute(
        select(*group, func.count()).where(col(Kit.blinded_lot_id).is_(None)).group_by(*group))
        if (key := key_of(study_id, site_id, None, state)) is not None})


def stored(session: Session) -> Counter[Key]:
    """The running counts as kept (counters at zero left out)."""
    return Counter({(s, p, st): n for s, p, st, n in session.execute(
        select(col(UnpackagedCount.study_id), col(UnpackagedCount.place), col(UnpackagedCount.state),
               col(UnpackagedCount.kits)).where(col(UnpackagedCount.kits) != 0))})


def recount(session: Session) -> list[str]:
    """Where the running counts disagree with the kit rows, one line each (named by study and site
    code, as verify names everything); empty when they agree."""
    pending_counts.flush(session)  # this transaction's own moves counted
    kept, counted = stored(session), from_rows(session)
    wrong = sorted(key for key in set(kept) | set(counted) if kept.get(key, 0) != counted.get(key, 0))
    if not wrong:
        return []
    studies = dict(session.execute(select(col(Study.id), col(Study.code))).all())
    sites = dict(session.execute(select(col(Site.id), col(Site.code))).all())
    return [f"kits not yet in a blinded lot of {studies.get(s, f'study {s}')}, "
            f"{sites.get(p, f'site {p}') if p else 'the cell bench'}, {state}: kept {kept.get(key, 0)}, "
            f"the kit rows say {counted.get(key, 0)}" for key in wrong for s, p, state in [key]]


def refill(session: Session) -> int:
    """The running counts rebuilt from the kit rows. Returns how many counters there are."""
    pending_counts.flush(session)  # what waits is in the kit rows already: written first, then replaced
    session.execute(delete(UnpackagedCount))
    counted = from_rows(session)
    if counted:
        session.execute(_COUNT.insert(), [{**dict(zip(_KEY, key, strict=True)), "kits": n}
                                          for key, n in sorted(counted.items())])
    return len(counted)
