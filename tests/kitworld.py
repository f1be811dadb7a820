"""Building kits for tests: released lots made directly (their batch records are tested elsewhere),
the studies loaded, a sealed kit list, and a packaging run, all through the service layer from the
kit list on. `KitWorld` names one active and one placebo kit in the same state."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import select

from cellbench import sealed, studies, users
from cellbench.clock import utcnow
from cellbench.db import Database
from cellbench.models import Kit, Lot, LotState, SpecVersion, Vial
from cellbench.supply import lists, packaging

from . import shortcuts
from .conftest import PASSWORD, actor_of, link_site_people


def released_lot(db: Database, kind: str, number: str, *, units: int = 20, expiry: date | None = None,
                 state: LotState = LotState.released) -> str:
    """A lot in a given state with its units, inserted directly (no batch record)."""
    with db.write() as s:
        spec = s.scalars(select(SpecVersion).where(SpecVersion.kind == kind)
                         .order_by(SpecVersion.version.desc())).first()
        creator = users.by_username(s, "olivia")
        lot = Lot(number=number, spec_version_id=spec.id, state=state, created_by=creator.id, created_at=utcnow(),
                  expiry=expiry or (utcnow().date() + timedelta(days=400)))
        s.add(lot)
        s.flush()
        shortcuts.lot_made(s, number, state, lot.expiry)
        letter = "V" if kind == "asc" else "U"
        s.add_all(Vial(code=f"{number}-{letter}{n:03d}", lot_id=lot.id, seq=n) for n in range(1, units + 1))
    return number


def load_studies(db: Database) -> None:
    with db.write() as s:
        studies.sync_from_files(s, actor_of(db, "sara"))
    link_site_people(db)


def sealed_kit_list(db: Database, study_code: str, size: int, seed: str = "test-seed", block_sizes: str = "2") -> int:
    """A sealed kit list of exactly `size` kits (even): lists are whole permuted blocks, and with
    blocks of two every even size is whole blocks (the protocol's 2, 4, 6 would round some up)."""
    with db.write() as s:
        row = lists.generate(s, actor_of(db, "sara"), studies.by_code(s, study_code), "kit", size, seed=seed,
                             block_sizes=block_sizes)
        list_id = row.id
    with db.write() as s:
        sara = users.by_username(s, "sara")
        sealed.seal_list(s, sara, users.actor(s, sara), s.get(type(row), list_id), PASSWORD)
    return list_id


def package(db: Database, study_code: str, count: int, asc: list[str], placebo: list[str],
            blinded_lot: str | None = None) -> str:
    with db.write() as s:
        run = packaging.package(s, actor_of(db, "sara"), studies.by_code(s, study_code), kit_count=count,
                                asc_lots=asc, placebo_lots=placebo, blinded_lot_code=blinded_lot)
        return run.number


def arms(db: Database) -> dict[str, str]:
    """kit number -> arm, read as the supply manager (a logged sealed read)."""
    with db.write() as s:
        sara = actor_of(db, "sara")
        rows = list(s.scalars(select(Kit)))
        found = sealed.arms_of_kits(s, sara, [k.id for k in rows], why="test")
        return {k.number: found[k.id] for k in rows if k.id in found}


@dataclass
class KitWorld:
    study: str
    asc_lot: str
    placebo_lot: str
    run: str
    active: list[str] = field(default_factory=list)  # kit numbers, in number order
    placebo: list[str] = field(default_factory=list)

    @property
    def pair(self) -> tuple[str, str]:
        """One active and one placebo kit of the same blinded lot, in the same state."""
        return self.active[0], self.placebo[0]


def build(db: Database, *, kits: int = 8, listed: int | None = None, study: str = "NCT07290946") -> KitWorld:
    """Needs the `people` and `effective_specs` fixtures. `listed` kit numbers go on the kit list
    (default: as many as are packaged); `kits` are packaged."""
    load_studies(db)
    asc = released_lot(db, "asc", "ASC-2026-0101", units=2 * kits)
    plb = released_lot(db, "placebo", "PLB-2026-0101", units=2 * kits)
    sealed_kit_list(db, study, listed or kits)
    run = package(db, study, kits, [asc], [plb])
    by_arm = arms(db)
    return KitWorld(study, asc, plb, run, sorted(k for k, a in by_arm.items() if a == "active"),
                    sorted(k for k, a in by_arm.items() if a == "placebo"))
