"""Kit selection that carries no order: the kit for a visit is drawn uniformly at random among the
eligible kits of the participant's arm at the site, the draw is recorded in the sealed compartment
and replays to the same kit, and a "no kit" answer reads the same for both arms while the supply
manager is alerted with the arm and the site."""
from __future__ import annotations

import math
import random
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from cellbench import clock, kits, pharmacy, sealed, studies
from cellbench.errors import Conflict, InvalidInput
from cellbench.models import AuditEvent, BlindedLot, Kit, KitState, Site, Visibility

from ..conftest import actor_of
from ..eligible import eligible
from ..trialworld import STUDY, kit_row, site_id, to_site

# A uniform draw fails this test once in a million runs; an ordered one (or one leaning on any
# kit by a quarter) fails it every time at these numbers of draws.
SIGNIFICANCE = 1e-6
DRAWS_PER_KIT = 80


def chi_square_sf(x: float, dof: int) -> float:
    """The chance of a chi-square statistic of `x` or more with `dof` degrees of freedom, in closed
    form: sf(x; 1) = erfc(sqrt(x/2)), sf(x; 2) = exp(-x/2), and
    sf(x; k+2) = sf(x; k) + (x/2)^(k/2) exp(-x/2) / Gamma(k/2 + 1)."""
    k, p = (1, math.erfc(math.sqrt(x / 2))) if dof % 2 else (2, math.exp(-x / 2))
    while k < dof:
        p += (x / 2) ** (k / 2) * math.exp(-x / 2) / math.gamma(k / 2 + 1)
        k += 2
    return p


def chi_square_p(counts: list[int]) -> float:
    """How likely counts this uneven or more are if every kit were equally likely."""
    expected = sum(counts) / len(counts)
    return chi_square_sf(sum((c - expected) ** 2 / expected for c in counts), len(counts) - 1)


def test_the_chi_square_helper_agrees_with_the_tables():
    # 95th percentiles from any table: 3.841 (1 degree of freedom), 5.991 (2), 14.067 (7)
    for x, dof in ((3.841, 1), (5.991, 2), (14.067, 7)):
        assert math.isclose(chi_square_sf(x, dof), 0.05, abs_tol=1e-3)


def _draw(db, number: str, times: int, *, site: int | None = None, on=None, exclude=()) -> list[str]:
    """The pharmacist's door asked `times` times for a kit for this participant (nothing allocated,
    so every draw sees the same stock); the kit numbers drawn."""
    frida = actor_of(db, "frida")
    with db.write() as s:
        study = studies.by_code(s, STUDY)
        where = site or site_id(db)
        day = on or clock.utcnow().date()
        found = [sealed.assign_kit(s, frida, study, number, where, in_date_on=day, exclude=exclude)
                 for _ in range(times)]
        return [kit.number if kit else None for kit in found]


def test_the_kit_is_drawn_uniformly_among_every_eligible_kit_of_the_arm(db, trial_world):
    eligible = trial_world.first_active + trial_world.second_active  # two blinded lots, 8 kits
    to_site(db, eligible + trial_world.first_placebo + trial_world.second_placebo)
    drawn = Counter(_draw(db, trial_world.participant("active"), DRAWS_PER_KIT * len(eligible)))
    assert set(drawn) == set(eligible), "only kits of the arm, and every one of them"
    p = chi_square_p([drawn[k] for k in eligible])
    assert p > SIGNIFICANCE, f"the draw is not uniform: {dict(drawn)} (p = {p:.2e})"


def test_the_uniformity_test_fails_an_ordered_selection(db, trial_world, monkeypatch):
    """Earliest expiry, then the lowest kit number, as before: always the first candidate."""

    class First:
        def randrange(self, n: int) -> int:
            return 0

    eligible = trial_world.first_active + trial_world.second_active
    to_site(db, eligible)
    monkeypatch.setattr(sealed, "_draws", First())
    drawn = Counter(_draw(db, trial_world.participant("active"), 2 * len(eligible)))
    assert chi_square_p([drawn[k] for k in eligible]) < SIGNIFICANCE


def test_ineligible_kits_are_never_drawn(db, trial_world):
    """Other arm, held in a quarantine, expiring within the use window, at another site, assigned
    to a visit already, excluded by the visit (a replaced kit): none is ever drawn."""
    first, second = trial_world.first_active, trial_world.second_active
    held, elsewhere, allocated, replaced = first[0], first[1], second[2], second[3]
    to_site(db, first + second + trial_world.first_placebo + trial_world.second_placebo)
    to_site(db, [allocated], KitState.allocated)
    with db.write() as s:
        other = Site(code="OUH-ENT", name="Odense University Hospital, ENT", address="J. B. Winsløws Vej 4, Odense")
        s.add(other)
        s.flush()
        moved = s.scalars(select(Kit).where(Kit.number == elsewhere)).one()
        moved.site_id = other.id
        kits.move(s, actor_of(db, "anna"), s.scalars(select(Kit).where(Kit.number == held)).one(), "quarantine",
                  reason="test")
        # the second blinded lot expires in 3 days; the visit's kit must last 5
        s.scalars(select(BlindedLot).where(BlindedLot.code == trial_world.second_lot)).one().expiry = \
            clock.utcnow().date() + timedelta(days=3)
    on = clock.utcnow().date() + timedelta(days=5)
    drawn = set(_draw(db, trial_world.participant("active"), 120, on=on, exclude=[kit_row(db, replaced).id]))
    assert drawn == {first[2], first[3]}
    assert set(_draw(db, trial_world.participant("active"), 60, on=clock.utcnow().date())) == {
        first[2], first[3], second[0], second[1], replaced}, "in date today, nothing excluded: eligible again"
    assert set(_draw(db, trial_world.participant("placebo"), 40, on=on)) <= set(trial_world.first_placebo)


def test_a_candidate_filter_narrows_the_draw_inside_the_compartment_and_may_only_take_kits_out(db, trial_world):
    """The hook a "same donor as an earlier treatment" rule will use."""
    to_site(db, trial_world.first_active + trial_world.second_active)
    frida = actor_of(db, "frida")
    keep = set(trial_world.second_active[:2])
    with db.write() as s:
        study = studies.by_code(s, STUDY)
        number, site, day = trial_world.participant("active"), site_id(db), clock.utcnow().date()
        drawn = {sealed.assign_kit(s, frida, study, number, site, in_date_on=day,
                                   narrow=lambda _s, found: [k for k in found if k.number in keep]).number
                 for _ in range(30)}
        assert drawn == keep
        with pytest.raises(ValueError):
            sealed.assign_kit(s, frida, study, number, site, in_date_on=day,
                              narrow=lambda _s, found: found + list(s.scalars(select(Kit).limit(20))))


def test_every_draw_is_recorded_sealed_and_replays_to_the_kit_it_assigned(db, trial_world, monkeypatch):
    to_site(db, trial_world.first_active + trial_world.second_active + trial_world.first_placebo)
    number = trial_world.participant("active")
    drawn = _draw(db, number, 12)
    sara = actor_of(db, "sara")
    with db.write() as s:
        draws = list(reversed(sealed.kit_draws(s, sara, studies.by_code(s, STUDY))))
        replays = [sealed.replay_draw(s, sara, d.id) for d in draws]
    assert [r.assigned for r in replays] == drawn
    for draw, replay in zip(draws, replays, strict=True):
        assert replay.holds and replay.one_arm and replay.reproduced == replay.assigned
        assert list(replay.candidates) == sorted(trial_world.first_active + trial_world.second_active)
        assert (draw.randomisation_number, draw.site_id, draw.drawn_by) == (
            number, site_id(db), actor_of(db, "frida").user_id)
    # a record whose index was altered no longer reproduces its kit
    altered = replays[0].__class__(replays[0].draw_id, replays[0].candidates,
                                   (replays[0].index + 1) % len(replays[0].candidates), replays[0].assigned, True)
    assert not altered.holds
    # a seeded generator in the draw's one injection point gives the same kits again, in order
    monkeypatch.setattr(sealed, "_draws", random.Random(12))
    once = _draw(db, number, 10)
    monkeypatch.setattr(sealed, "_draws", random.Random(12))
    assert _draw(db, number, 10) == once
    with db.write() as s:
        logged = s.scalars(select(AuditEvent).where(AuditEvent.action == "sealed read",
                                                    AuditEvent.field == "kit draw replay")).all()
    assert logged and {e.visibility for e in logged} == {Visibility.unblinded.value}


# --- "no kit": the same words for both arms; the supply manager told the arm and the site ------------------


def _enrolled(as_, screening: str) -> str:
    made = as_("ida").post("/api/v1/participants", json={"study": STUDY, "site": "RH-ENT",
                                                         "screening_number": screening})
    assert made.status_code == 201, made.text
    randomised = as_("ida").post(f"/api/v1/participants/{STUDY}/{screening}/randomise", json=eligible(STUDY))
    assert randomised.status_code == 200, randomised.text
    return randomised.json()["randomisation_number"]


def _one_of_each_arm(as_, arms: dict[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for n in range(1, 15):
        number = _enrolled(as_, f"SCR-{n:03d}")
        found.setdefault(arms[number], f"SCR-{n:03d}")
        if len(found) == 2:
            return found
    raise AssertionError("one arm only")


def test_no_kit_reads_the_same_for_both_arms_and_alerts_the_supply_manager_with_arm_and_site(db, trial_world, as_):
    by_arm = _one_of_each_arm(as_, trial_world.arms)  # no kit is at the site
    answers = {arm: as_("frida").post(f"/api/v1/participants/{STUDY}/{screening}/visits/1/assign")
               for arm, screening in by_arm.items()}
    assert {a.status_code for a in answers.values()} == {409}
    assert answers["active"].json() == answers["placebo"].json() == {"error": pharmacy.NO_KIT_MESSAGE, "field": "kit"}
    assert "Supply has been alerted" in pharmacy.NO_KIT_MESSAGE
    with db.read() as s:
        visit_events = s.scalars(select(AuditEvent).where(AuditEvent.action == "no kit available")).all()
    assert [(e.field, e.new_value, e.reason, e.visibility) for e in visit_events] == [
        ("kit", None, "supply alerted", "all")] * 2, "the visit's own record, the same for both arms"

    home = as_("sara").get("/")
    assert "alerts from the sites" in home.text
    assert "alerts from the sites" not in as_("frida").get("/").text
    page = as_("sara").get("/supply/shortages")
    assert page.status_code == 200
    for name in ("Allogeneic adipose-derived mesenchymal stem cells", "Placebo: isotonic saline"):
        assert name in page.text, "each alert names its arm"
    assert "RH-ENT" in page.text
    for username in ("frida", "ida", "mette", "adam"):
        assert as_(username).get("/supply/shortages").status_code == 403

    with db.write() as s:
        alerts = sealed.kit_shortages(s, actor_of(db, "sara"))
        assert sorted(a.arm for a in alerts) == ["active", "placebo"]
        assert {a.site_id for a in alerts} == {site_id(db)}
        first = alerts[0].id
    sent = as_("sara").submit(f"/supply/shortages/{first}/acknowledge", {"reason": "shipment SH-0007 packed"})
    assert sent.status_code == 303, sent.text
    with db.read() as s:
        acknowledged = s.scalars(select(AuditEvent).where(AuditEvent.action == "kit shortage acknowledged")).one()
    assert (acknowledged.entity_id, acknowledged.reason, acknowledged.visibility) == (
        str(first), "shipment SH-0007 packed", Visibility.unblinded.value)
    with db.write() as s:
        assert [a.id for a in sealed.kit_shortages(s, actor_of(db, "sara"))] != [first]
        with pytest.raises(Conflict):
            sealed.acknowledge_shortage(s, actor_of(db, "sara"), first, "again")
        with pytest.raises(InvalidInput):
            sealed.acknowledge_shortage(s, actor_of(db, "sara"), alerts[1].id, " ")
    unexplained = as_("sara").submit(f"/supply/shortages/{alerts[1].id}/acknowledge", {"reason": ""})
    assert unexplained.status_code == 422 and "reason" in unexplained.text.lower()
    assert as_("frida").submit(f"/supply/shortages/{alerts[1].id}/acknowledge", {"reason": "x"}).status_code == 403
