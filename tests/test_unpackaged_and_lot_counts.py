"""The two running counts issue 18 added so that pages stop growing with the years: the kits not yet
in a blinded lot, by study, place and state (unpackaged_counts.py: /studies' totals), and the
blinded lots in each place's accountability figures (place_counts.py: the monitor's verification
API). Each equals a recount from the kit rows after every kind of move that changes it (a kit list
sealed, packaging, a kit's first arrival at a site and its blinded lot's last kit leaving the cell
bench; tests/test_running_counts.py checks them after every other kind of move); `verify` names
either when it is edited behind cellbench's back; the migration fills both from the rows; and they
are the same whichever arm the kits that moved were of."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from cellbench import integrity, kit_counts, kits, place_counts, studies, unpackaged_counts
from cellbench.models import Kit, KitState, PlaceLotCount, Site, UnpackagedCount

from .kitworld import build, package
from .test_running_counts import _EVERYONE, agree
from .trialworld import SITE, STUDY

API = f"/api/v1/accountability/verifications?study={STUDY}&site={SITE}"


def unpackaged(db) -> dict[str, int]:
    """The study's kits not yet in a blinded lot by state, as kept."""
    with db.read() as s:
        return {state: n for (_study, _place, state), n in unpackaged_counts.stored(s).items()}


def lots_in_figures(db) -> dict[str, int]:
    """Blinded lots in each place's figures, as kept, by place ("bench" or the site's code)."""
    with db.read() as s:
        codes = dict(s.execute(select(Site.id, Site.code)).all())
        return {codes[place] if place else "bench": n for (_study, place), n in place_counts.stored_lots(s).items()}


def test_a_sealed_kit_list_counts_its_kits_as_not_yet_in_a_blinded_lot_and_packaging_takes_them_out(
        db, people, effective_specs):
    world = build(db, kits=8, listed=12)  # a kit list of twelve, eight of them packaged
    agree(db)
    assert unpackaged(db) == {"planned": 4}, "the four kit numbers not packaged are counted, at the cell bench"
    with db.read() as s:
        assert kits.counts_by_state(s, study=studies.by_code(s, world.study))["planned"] == 4
    package(db, world.study, 2, [world.asc_lot], [world.placebo_lot])
    agree(db)
    assert unpackaged(db) == {"planned": 2}, "packaging takes its kits out of the count"
    assert lots_in_figures(db) == {"bench": 2}, "and its new blinded lot comes into the cell bench's figures"


def _received(db, numbers: list[str]) -> None:
    """The kits shipped and received at the site, through the kit lifecycle."""
    with db.write() as s:
        site_id = s.scalars(select(Site.id).where(Site.code == SITE)).one()
        group = [kits.by_number(s, number) for number in numbers]
        kits.move_many(s, _EVERYONE, group, "ship", reason="resupply")
        kits.move_many(s, _EVERYONE, group, "receive", reason="received", also={"site_id": site_id})


def test_a_blinded_lot_comes_into_a_sites_figures_with_its_first_kit_and_leaves_the_bench_with_its_last(
        db, kit_world, as_):
    assert lots_in_figures(db) == {"bench": 1}
    assert as_("mette").get(API).json()["blinded_lot_count"] == 0, "no kit at the site yet"
    _received(db, kit_world.active[:1])
    agree(db)
    assert lots_in_figures(db) == {"bench": 1, SITE: 1}
    assert as_("mette").get(API).json()["blinded_lot_count"] == 1
    _received(db, kit_world.active[1:] + kit_world.placebo[:-1])
    assert lots_in_figures(db) == {"bench": 1, SITE: 1}, "more kits of a blinded lot already there change nothing"
    _received(db, kit_world.placebo[-1:])
    agree(db)
    assert lots_in_figures(db) == {SITE: 1}, "its last kit gone, the blinded lot left the cell bench's figures"
    with db.write() as s:  # moves inside the figures: the count stands
        for name in ("allocate", "dispense", "start_preparation", "administer"):
            kits.move(s, _EVERYONE, kits.by_number(s, kit_world.active[0]), name, reason="a treatment")
    agree(db)
    assert lots_in_figures(db) == {SITE: 1}


@pytest.mark.parametrize("arm", ["active", "placebo"])
def test_the_counts_are_the_same_whichever_arm_the_kits_that_moved_were_of(db, kit_world, as_, arm):
    numbers = getattr(kit_world, arm)
    _received(db, numbers[:1])
    with db.write() as s:
        kits.move(s, _EVERYONE, kits.by_number(s, numbers[1]), "damage", reason="dropped")
    agree(db)
    assert lots_in_figures(db) == {"bench": 1, SITE: 1}
    assert unpackaged(db) == {}
    with db.read() as s:
        assert kits.counts_by_state(s) == {"at_site": 1, "damaged": 1, "released": 6}
    shown = as_("mette").get(API).json()
    assert (shown["blinded_lot_count"], shown["status"]) == (1, "not verified")


def test_verify_names_a_hand_edited_count_of_kits_not_yet_in_a_blinded_lot(db, people, effective_specs):
    build(db, kits=8, listed=10)
    assert integrity.verify(db, workers=1).ok
    with db.write() as s:
        s.execute(update(UnpackagedCount).values(kits=UnpackagedCount.kits + 1))
    report = integrity.verify(db, workers=1)
    assert [p for p in report.problems if p.startswith(f"kits not yet in a blinded lot of {STUDY}, the cell bench, "
                                                       "planned: kept 3, the kit rows say 2")], report.problems
    with db.write() as s:
        kit_counts.refill(s)
    assert integrity.verify(db, workers=1).ok


def test_verify_names_a_hand_edited_count_of_blinded_lots_in_a_places_figures(db, kit_world):
    with db.write() as s:
        s.execute(update(PlaceLotCount).values(blinded_lots=PlaceLotCount.blinded_lots + 1))
    report = integrity.verify(db, workers=1)
    assert [p for p in report.problems if p == f"blinded lots in the figures of {STUDY}, the cell bench: kept 2, "
                                               "the kit rows say 1"], report.problems
    with db.write() as s:
        kit_counts.refill(s)
    agree(db)


def test_the_migration_fills_both_counts_from_the_rows(db, people, effective_specs):
    from alembic import command

    from cellbench.db import alembic_config, migrate

    build(db, kits=8, listed=12)
    with db.read() as s:
        packaged = sorted(s.scalars(select(Kit.number).where(Kit.blinded_lot_id.is_not(None))))
    _received(db, packaged[:2])
    with db.read() as s:
        before = unpackaged_counts.stored(s), place_counts.stored_lots(s)
        assert s.scalar(select(func.count()).select_from(Kit).where(Kit.state == KitState.planned)) == 4
    assert all(before), "there is something to fill"
    cfg = alembic_config()
    with db.engine.begin() as conn:  # the database as it was before these counts
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0040_records")
    migrate(db)
    with db.read() as s:
        assert (unpackaged_counts.stored(s), place_counts.stored_lots(s)) == before
    agree(db)
