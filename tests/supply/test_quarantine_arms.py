"""Quarantines that hold both arms: companions are chosen per place (a site's stock, a shipment on
its way, the cell bench) and per blinded lot, rounded up, so that every hold anyone can see holds
both arms whenever the other arm has kits there; and blinded people read "temporarily
unavailable" with no quarantine number or count that ties the held kits together."""
from __future__ import annotations

import math
from collections import defaultdict

import pytest
from sqlalchemy import select

from cellbench import audit, kits, sealed, users
from cellbench.clock import utcnow
from cellbench.models import AuditEvent, BlindedLot, Kit, KitState, Lot, Shipment, ShipmentKit, Site
from cellbench.supply import quarantine

from ..blinding_support import BLINDED_USERS
from ..conftest import PASSWORD, actor_of
from ..kitworld import arms, build, package, released_lot

STUDY = "NCT07290946"


def _lot(s, number: str) -> Lot:
    return s.scalars(select(Lot).where(Lot.number == number)).one()


def _kits_of_lot(db, number: str) -> set[str]:
    with db.write() as s:
        return {k.number for k in sealed.kits_containing_lot(s, actor_of(db, "sara"), _lot(s, number), why="test")}


@pytest.fixture
def spread(db, people, effective_specs):
    """One blinded lot of 16 kits (ASC-2026-0101: 4 active; ASC-2026-0102: 4 active; 8 placebo),
    spread over four places, each holding one or more kits of the lot to be quarantined:

    RH-ENT's stock:   1 of its kits, 2 other active kits, 1 placebo kit (the one-kit case: 1/3 of 1)
    OUH-ENT's stock:  1 of its kits, 1 placebo kit
    a shipment on its way to RH-ENT: 1 of its kits, 2 placebo kits
    the cell bench:   1 of its kits, 2 other active kits, 4 placebo kits (1/3 of 4: 2 held)
    """
    world = build(db, kits=8, listed=32)
    released_lot(db, "asc", "ASC-2026-0102")
    released_lot(db, "placebo", "PLB-2026-0102")
    with db.read() as s:
        blinded = s.scalars(select(BlindedLot)).one().code
    package(db, STUDY, 8, ["ASC-2026-0102"], ["PLB-2026-0102"], blinded_lot=blinded)
    with db.read() as s:
        packaged = set(s.scalars(select(Kit.number).where(Kit.blinded_lot_id.is_not(None))))
    by_arm = {k: a for k, a in arms(db).items() if k in packaged}
    hit = sorted(_kits_of_lot(db, world.asc_lot))
    other_active = sorted(k for k, a in by_arm.items() if a == "active" and k not in hit)
    placebo = sorted(k for k, a in by_arm.items() if a == "placebo")
    places = {"RH-ENT": [hit[0], *other_active[:2], placebo[0]], "OUH-ENT": [hit[1], placebo[1]],
              "shipment": [hit[2], *placebo[2:4]], "bench": [hit[3], *other_active[2:], *placebo[4:]]}
    with db.write() as s:
        sara = users.by_username(s, "sara")
        s.add(Site(code="OUH-ENT", name="Odense University Hospital, ENT", address="J. B. Winsløws Vej 4, Odense"))
        s.flush()
        site = {row.code: row for row in s.scalars(select(Site))}
        row = {k.number: k for k in s.scalars(select(Kit).where(Kit.blinded_lot_id.is_not(None)))}
        for code in ("RH-ENT", "OUH-ENT"):
            for number in places[code]:
                row[number].state, row[number].site_id, row[number].location = (KitState.at_site, site[code].id,
                                                                                  site[code].name)
        shipment = Shipment(number="SH-2026-0001", study_id=row[hit[2]].study_id, site_id=site["RH-ENT"].id,
                            state="in_transit", created_by=sara.id, created_at=utcnow(), dispatched_at=utcnow())
        s.add(shipment)
        s.flush()
        for number in places["shipment"]:
            row[number].state, row[number].location = KitState.in_transit, "in transit to RH-ENT"
            s.add(ShipmentKit(shipment_id=shipment.id, kit_id=row[number].id, packed_at=utcnow()))
    return world, by_arm, set(hit), places


def _held(db) -> set[str]:
    with db.read() as s:
        return set(s.scalars(select(Kit.number).where(Kit.state == KitState.quarantined)))


def _quarantine(db, lot: str, policy: str = "proportionate") -> str:
    with db.write() as s:
        return quarantine.open_manual(s, actor_of(db, "sara"), _lot(s, lot), policy, "complaint under review")[0].number


def test_a_proportionate_quarantine_holds_both_arms_at_every_place_rounded_up(db, spread):
    world, by_arm, hit, places = spread
    _quarantine(db, world.asc_lot)
    held = _held(db)
    assert hit <= held
    for place, numbers in places.items():
        here = defaultdict(set)
        for number in numbers:
            here[by_arm[number]].add(number)
        held_here = {by_arm[n] for n in numbers if n in held}
        assert held_here == {"active", "placebo"}, f"the hold at {place} holds both arms"
        # the same fraction of the placebo kits there as of the active kits there, rounded up
        share = len(hit & here["active"]) / len(here["active"])
        assert len(here["placebo"] & held) == math.ceil(share * len(here["placebo"])), place
        assert not (here["active"] - hit) & held, f"no other active kit at {place} is held"
    # the one-kit case at RH-ENT: 1 of 3 active kits held takes its placebo kit (round(1/3) was 0)
    assert len(set(places["RH-ENT"]) & held) == 2


def test_a_place_with_no_kit_of_the_lot_holds_nothing(db, spread):
    world, _by_arm, hit, places = spread
    second_lot_only = [k for k in places["bench"] if k not in hit]
    with db.write() as s:
        # the bench's kit of the quarantined lot leaves before: the bench has none of its kits now
        leaving = (hit & set(places["bench"])).pop()
        kits.move(s, actor_of(db, "sara"), s.scalars(select(Kit).where(Kit.number == leaving)).one(), "damage",
                  reason="dropped")
    _quarantine(db, world.asc_lot)
    assert not set(second_lot_only) & _held(db)


@pytest.mark.parametrize("username", list(BLINDED_USERS))
def test_blinded_people_see_no_quarantine_number_or_count(db, spread, as_, username):
    world = spread[0]
    number = _quarantine(db, world.asc_lot)
    held = sorted(_held(db))
    assert number.startswith("KQ-")
    client = as_(username)
    read = 0
    for kit in held:
        page, api = client.get(f"/kits/{kit}"), client.get(f"/api/v1/kits/{kit}")
        if username == "adam":  # the admin reads no kit at all
            assert page.status_code == api.status_code == 403
            continue
        if page.status_code == api.status_code == 404:  # a kit at the other site is not theirs to read
            continue
        assert page.status_code == api.status_code == 200
        read += 1
        assert number not in page.text and "KQ-" not in page.text and "KQ-" not in api.text
        assert kits.state_label(KitState.quarantined) in page.text
        reasons = {e["reason"] for e in api.json()["history"] if e["new_value"] == "Temporarily unavailable"}
        assert reasons == {kits.GENERIC_QUARANTINE_REASON}
    assert read or username == "adam", "the held kits of their own site and in transit were read"
    with db.read() as s:
        seen = audit.trail(s, actor_of(db, username), audit.TrailFilter(), limit=None)
    leaks = [e for e in seen if any("KQ-" in (v or "") for v in (e.entity_id, e.old_value, e.new_value, e.reason))]
    assert not leaks, [(e.action, e.entity_id, e.reason) for e in leaks]
    assert not [e for e in seen if e.entity_type == "kit_quarantine"], "the quarantine's own events are unblinded"

    # withdrawn, the kits' histories still name no quarantine
    with db.write() as s:
        q = quarantine.by_number(s, number)
        quarantine.withdraw(s, users.by_username(s, "anna"), q, "complaint confirmed", PASSWORD)
    with db.read() as s:
        seen = audit.trail(s, actor_of(db, username), audit.TrailFilter(), limit=None)
    assert not [e for e in seen if "KQ-" in (e.reason or "")]


def test_the_unblinded_record_keeps_the_number_and_the_members(db, spread, as_):
    world = spread[0]
    number = _quarantine(db, world.asc_lot)
    held = _held(db)
    with db.read() as s:
        opened = s.scalars(select(AuditEvent).where(AuditEvent.action == "kit quarantine opened")).one()
    assert (opened.entity_id, opened.visibility) == (number, "unblinded")
    page = as_("sara").get(f"/supply/quarantines/{number}")
    assert page.status_code == 200 and all(kit in page.text for kit in held)
