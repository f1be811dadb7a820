"""The running kit counts (kit_counts.py) that accountability reads equal a recount from the kit
rows after every kind of move: packaging, shipment, receipt (clean and held), loss, damage,
quarantine and its lift or withdrawal, allocation, dispensing, preparation, administration, return,
not administered, destruction. Kits have no expiry move: an expired kit stays in its state (it is
only never assigned), so expiry changes no count. The counts hold no arm."""
from __future__ import annotations

from typing import ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select, text, update

from cellbench import accountability, integrity, kit_counts, kits, place_counts, release, signatures, studies, users
from cellbench.audit import Actor
from cellbench.clock import utcnow
from cellbench.errors import Conflict
from cellbench.kit_categories import category_of
from cellbench.models import (
    AccountabilityVerification,
    BlindedLot,
    Kit,
    KitCount,
    KitQuarantine,
    KitState,
    PlaceCount,
    Role,
    Site,
    Study,
    utc_text,
)
from cellbench.supply import quarantine

from .accountability.test_accountability import _authorise, _count, _destroy, _rows
from .conftest import PASSWORD, actor_of
from .custody.test_custody import arrives, both_arms, dispatched, payload, scan_in
from .pharmacy.test_pharmacy import randomised, sealed_randomisation_list, treat, visit_url
from .supply.test_quarantine import _lot
from .supply.test_quarantine import world as quarantine_world  # noqa: F401 - a fixture
from .trialworld import SITE, STUDY, to_site


def _states_from_rows(s, study: Study | None, actor: Actor | None = None) -> dict[str, int]:
    query = select(Kit.state, func.count()).group_by(Kit.state)
    if study is not None:
        query = query.where(Kit.study_id == study.id)
    if actor is not None:
        query = users.within(query, actor, site=Kit.site_id, study=Kit.study_id, bench_too=True)
    return {state: n for state, n in s.execute(query) if n}


def _lot_states(s, blinded_lot_id: int) -> dict[str, int]:
    query = select(Kit.state, func.count()).where(Kit.blinded_lot_id == blinded_lot_id).group_by(Kit.state)
    return dict(s.execute(query).all())


def agree(db) -> None:
    with db.read() as s:
        assert kit_counts.recount(s) == [], "the running counts are the kit rows' counts"
        frida = users.actor(s, users.by_username(s, "frida"))
        for study in [None, *s.scalars(select(Study))]:
            assert kits.counts_by_state(s, study=study) == _states_from_rows(s, study), \
                "kits by state, read from the running counts, are the kit rows' counts"
            assert kits.counts_by_state(s, study=study, reader=frida) == _states_from_rows(s, study, frida), \
                "and so are a site pharmacist's, within her sites and studies"
            by_lot = {blinded.code: (total, {state: n for state, _label, n in states})
                      for blinded, total, states in kits.blinded_lot_rows(s, study)}
            recounted = {b.code: _lot_states(s, b.id) for b in kits.blinded_lots(s, study)}
            assert by_lot == {code: (sum(states.values()), states) for code, states in recounted.items()}, \
                "and each blinded lot's kits by state on the study page"
        places_agree(s)


def _figures_from_rows(s) -> dict[tuple[int, int], dict[str, dict[str, int]]]:
    """Each place's accountability figures (blinded lot code -> kits by category), counted from the kit rows."""
    found: dict[tuple[int, int], dict[str, dict[str, int]]] = {}
    for study_id, site_id, code, state, n in s.execute(
            select(Kit.study_id, Kit.site_id, BlindedLot.code, Kit.state, func.count())
            .join(BlindedLot, BlindedLot.id == Kit.blinded_lot_id)
            .group_by(Kit.study_id, Kit.site_id, BlindedLot.code, Kit.state)):
        if (category := category_of(state)) is not None:
            counts = found.setdefault((study_id, site_id or 0), {}).setdefault(code, {})
            counts[category] = counts.get(category, 0) + n
    return found


def places_agree(s) -> None:
    """Each place's kits, fingerprint and number of blinded lots (place_counts) are those of its
    figures recounted from the kit rows, and so are the figures a monitor signs at a site."""
    figures, lot_ids = _figures_from_rows(s), dict(s.execute(select(BlindedLot.code, BlindedLot.id)).all())
    kept = s.execute(select(PlaceCount.study_id, PlaceCount.place))
    places = set(figures) | {(study_id, place) for study_id, place in kept}
    for study_id, place in places:
        recounted = figures.get((study_id, place), {})
        assert place_counts.fingerprint(s, study_id, place) == (
            sum(sum(c.values()) for c in recounted.values()), place_counts.of_figures(recounted, lot_ids)), \
            "a place's kits and fingerprint are those of its figures, recounted from the kit rows"
        assert place_counts.blinded_lots(s, study_id, place) == len(recounted), \
            "and so is the number of blinded lots its figures hold"
        site = s.get(Site, place) if place else None
        if site is not None:
            shown = accountability.figures(s, s.get(Study, study_id), site)
            assert place_counts.of_figures(shown, lot_ids) == place_counts.fingerprint(s, study_id, place)[1], \
                "the fingerprint is that of the figures the monitor signs"


def test_the_counts_of_a_packaged_kit_world_agree_and_name_no_arm(db, kit_world):
    agree(db)
    assert set(KitCount.model_fields) == {"id", "study_id", "place", "blinded_lot_id", "state", "kits"}
    assert set(PlaceCount.model_fields) == {"id", "study_id", "place", "state", "kits", "fingerprint"}


def test_a_fingerprint_changes_with_a_category_count_and_not_with_a_move_inside_a_category():
    dispensed = place_counts.share(7, "dispensed", 1)
    assert place_counts.share(7, "administered", 1) == dispensed, "dispensed and administered: one category"
    assert place_counts.share(7, "returned", 1) != dispensed and place_counts.share(8, "dispensed", 1) != dispensed
    assert place_counts.share(7, "planned", 3) == 0, "a planned kit is in no figure"
    assert (place_counts.share(7, "dispensed", 2) + place_counts.share(7, "dispensed", -2)) % place_counts.MODULUS == 0


def test_a_sum_by_place_edited_behind_cellbenchs_back_is_named_by_verify(db, kit_world):
    with db.write() as s:
        s.execute(update(PlaceCount).values(fingerprint=(PlaceCount.fingerprint + 1) % place_counts.MODULUS))
    report = integrity.verify(db, workers=1)
    assert [p for p in report.problems if p.startswith("kits by place of")], report.problems
    with db.write() as s:
        kit_counts.refill(s)
    agree(db)


def test_a_disagreement_is_named_with_the_place_lot_state_and_both_figures(db, kit_world):
    with db.write() as s:
        s.execute(update(KitCount).values(kits=KitCount.kits + 1))
    with db.read() as s:
        found = kit_counts.recount(s)
    assert found and all("kept" in line and "the kit rows say" in line and "cell bench" in line for line in found)
    assert any("blinded lot XB" in line for line in found), found  # named by its printed code, as verify names
    with db.write() as s:
        kit_counts.refill(s)
    agree(db)


def test_verify_names_a_running_count_edited_behind_cellbenchs_back(db, kit_world):
    assert integrity.verify(db, workers=1).ok
    with db.write() as s:
        s.execute(update(KitCount).where(KitCount.id == s.scalars(select(KitCount.id)).first()).values(kits=999))
    report = integrity.verify(db, workers=1)
    assert [p for p in report.problems if p.startswith("kit count of")], report.problems


def held(db) -> int:
    """Kits held in quarantine, as the running counts keep them."""
    with db.read() as s:
        return sum(n for (_st, _p, _b, state), n in kit_counts.stored(s).items() if state == KitState.quarantined.value)


def received(db, as_, monkeypatch, kits_: list[str], *, seal_intact: bool) -> None:
    """The kits shipped, scanned at the site and the receipt checked (held whole if the seal broke)."""
    number = dispatched(as_, kits_)
    agree(db)
    arrives(monkeypatch, db, number)
    scan_in(as_, number, kits_)
    done = as_("frida").post(f"/api/v1/shipments/{number}/receipt",
                             json={"seal_intact": seal_intact, "logger_source": "manual", "logger_min": -190,
                                   "logger_max": -170})
    assert done.status_code == 200, done.text
    agree(db)


def test_shipment_receipt_damage_and_loss_keep_the_counts(db, kit_world, as_, monkeypatch):
    kits_ = both_arms(kit_world)
    received(db, as_, monkeypatch, kits_, seal_intact=True)
    damaged = as_("frida").post(f"/api/v1/kits/{kits_[0]}/damage", json={"reason": "outer box crushed"})
    assert damaged.status_code == 200, damaged.text
    agree(db)
    lost = dispatched(as_, [kit_world.active[3], kit_world.placebo[3]])
    assert as_("sara").post(f"/api/v1/shipments/{lost}/lost", json={"reason": "courier lost it"}).status_code == 200
    agree(db)
    rows = _rows(as_("mette"))
    assert rows[SITE]["counts"]["damaged"] == 1 and rows["bench"]["counts"]["missing"] == 2


def test_a_held_receipt_keeps_the_counts(db, kit_world, as_, monkeypatch):
    received(db, as_, monkeypatch, both_arms(kit_world), seal_intact=False)
    assert _rows(as_("mette"))[SITE]["counts"]["quarantined"] == 4


def test_a_quarantine_held_lifted_and_withdrawn_keeps_the_counts(db, quarantine_world):  # noqa: F811
    w = quarantine_world
    agree(db)
    assert held(db) == 0
    with db.write() as s:
        release.move_lot(s, users.by_username(s, "anna"), _lot(s, w.asc_lot), "quarantine", "temperature alarm")
    agree(db)
    assert held(db) > 0, "the lot's kits are held, and counted as held"
    with db.write() as s:
        release.move_lot(s, users.by_username(s, "anna"), _lot(s, w.asc_lot), "release_from_quarantine",
                         "alarm was a sensor fault", password=PASSWORD)
    agree(db)
    assert held(db) == 0
    with db.write() as s:
        release.move_lot(s, users.by_username(s, "anna"), _lot(s, w.asc_lot), "recall", "donor found ineligible",
                         password=PASSWORD)
    agree(db)
    recalled = held(db)
    assert recalled > 0
    with db.write() as s:
        q = s.scalars(select(KitQuarantine).where(KitQuarantine.state == "open")).one()
        quarantine.withdraw(s, users.by_username(s, "anna"), q, "recall", PASSWORD)
    agree(db)
    assert held(db) < recalled, "withdrawn kits leave the held count"


def test_dispensing_administration_return_and_not_administered_keep_the_counts(db, kit_world, as_):
    with db.read() as s:
        released = list(s.scalars(select(Kit.number).where(Kit.state == KitState.released)))
    to_site(db, released)
    sealed_randomisation_list(db)
    randomised(as_, "SCR-001")
    treat(as_, "SCR-001")
    agree(db)
    randomised(as_, "SCR-002")
    number = as_("frida").post(f"{visit_url('SCR-002')}/assign").json()["kit_number"]
    agree(db)
    as_("frida").post(f"{visit_url('SCR-002')}/dispense", json={"code": payload(number)})
    agree(db)
    returned = as_("frida").post("/api/v1/returns", json={"code": payload(number), "condition": "intact"})
    assert returned.status_code == 200, returned.text
    agree(db)
    again = as_("frida").post(f"{visit_url('SCR-002')}/assign").json()["kit_number"]
    as_("frida").post(f"{visit_url('SCR-002')}/dispense", json={"code": payload(again)})
    as_("jonas").post("/api/v1/preparation", json={"code": payload(again)})
    stopped = as_("ida").post(f"{visit_url('SCR-002')}/not-administered", json={"reason": "participant fainted"})
    assert stopped.status_code == 200, stopped.text
    agree(db)
    counts = _rows(as_("mette"))[SITE]["counts"]
    assert (counts["dispensed"], counts["returned"], counts["not_administered"]) == (1, 1, 1)


def test_a_recorded_destruction_keeps_the_counts(db, kit_world, as_):
    at_site = sorted(kit_world.active[:2] + kit_world.placebo[:2])
    to_site(db, at_site)
    with db.write() as s:
        for number in at_site[:2]:
            kits.move(s, actor_of(db, "frida"), kits.by_number(s, number), "return", reason="not needed")
    agree(db)
    blinded = _rows(as_("mette"))[SITE]["blinded_lot"]
    assert _count(as_("frida"), 4, lot=blinded).json()["balanced"]
    number = _authorise(as_("sara"), at_site[:2]).json()["number"]
    assert _destroy(as_("frida"), number).status_code == 200
    agree(db)
    assert _rows(as_("mette"))[SITE]["counts"]["destroyed"] == 2


# --- any sequence of moves the table allows, through the one place every move passes --------------


_EVERYONE = Actor(None, "Counts Test", frozenset(Role) - {Role.admin, Role.statistician})
_ARRIVING = {"receive", "receive_awaiting_release", "receive_into_quarantine"}


class RandomMoves(RuleBasedStateMachine):
    """Random kits make random moves of the table (the roles each needs held by one test actor);
    after each step the counts equal a recount."""

    db = None
    numbers: ClassVar[list[str]] = []
    site_id: int | None = None

    @rule(pick=st.integers(min_value=0), choice=st.integers(min_value=0))
    def move(self, pick: int, choice: int) -> None:
        with self.db.write() as s:
            kit = kits.by_number(s, self.numbers[pick % len(self.numbers)])
            allowed = kits.allowed_moves(kit, _EVERYONE)
            if not allowed:
                return
            name = allowed[choice % len(allowed)]
            also = {"site_id": self.site_id} if name in _ARRIVING else None
            kits.move(s, _EVERYONE, kit, name, reason="a random move", also=also)

    @invariant()
    def counts_agree(self) -> None:
        agree(self.db)


def test_any_sequence_of_moves_keeps_the_counts(db, kit_world):
    with db.read() as s:
        RandomMoves.numbers = sorted(s.scalars(select(Kit.number).where(Kit.blinded_lot_id.is_not(None))))
        RandomMoves.site_id = s.scalars(select(Site.id).where(Site.code == SITE)).one()
    RandomMoves.db = db
    assert RandomMoves.numbers
    run_state_machine_as_test(RandomMoves, settings=settings(
        max_examples=8, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)))


@pytest.mark.parametrize("name", ["quarantine", "damage", "lose"])
def test_a_move_of_many_kits_at_once_keeps_the_counts(db, kit_world, name):
    with db.write() as s:
        group = [kits.by_number(s, n) for n in kit_world.active + kit_world.placebo]
        kits.move_many(s, _EVERYONE, group, name, reason="all at once")
    agree(db)
    with db.read() as s:
        assert s.scalar(select(KitCount.kits).where(KitCount.state == kits.MOVES[name].target.value)) == 8


def test_a_stale_kit_move_leaves_the_counts_as_they_were(db, kit_world):
    with pytest.raises(Conflict), db.write() as s:
        kit = kits.by_number(s, kit_world.active[0])
        kits.move(s, _EVERYONE, kit, "damage", reason="x", seen_version=kit.row_version - 1)
    agree(db)



def test_the_migration_counts_the_kits_of_an_existing_database(db, kit_world):
    from alembic import command

    from cellbench.db import alembic_config, migrate

    with db.read() as s:
        before = kit_counts.stored(s)
    assert before, "the kit world's packaged kits are counted"
    cfg = alembic_config()
    with db.engine.begin() as conn:  # the database as it was before the running counts
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0025")
    migrate(db)
    with db.read() as s:
        assert kit_counts.stored(s) == before
    agree(db)


def test_the_migration_sums_the_counters_by_place_and_fingerprints_signed_verifications(db, kit_world):
    from alembic import command

    from cellbench.db import alembic_config, migrate

    to_site(db, kit_world.active[:2] + kit_world.placebo[:2])
    with db.read() as s:
        sums = place_counts.stored(s)
        site_id = s.scalars(select(Site.id).where(Site.code == SITE)).one()
        study = studies.by_code(s, STUDY)
        signed = accountability.figures(s, study, s.get(Site, site_id))
    assert signed, "the site has figures to sign"
    cfg = alembic_config()
    with db.engine.begin() as conn:  # the database as it was before the sums; a verification signed then
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0031_release")
        conn.execute(text("INSERT INTO accountability_verification (study_id, site_id, sequence, figures, "
                          "figures_hash, by_user, at) VALUES (:study, :site, 1, :figures, :hash, "
                          "(SELECT id FROM app_user WHERE username = 'mette'), :at)"),
                     {"study": study.id, "site": site_id, "figures": signatures.canonical(signed),
                      "hash": accountability.figures_hash(signed), "at": utc_text(utcnow())})
    migrate(db)
    with db.read() as s:
        assert place_counts.stored(s) == sums
        [stamp] = s.scalars(select(AccountabilityVerification.fingerprint))
        assert stamp == place_counts.fingerprint(s, study.id, site_id)[1], \
            "a verification signed before the migration carries the fingerprint of the figures it signed"
    agree(db)
