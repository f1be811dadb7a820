"""Resupply that keeps both arms stocked: the supply manager's settings per site and arm, the
trigger after every move that changes a site's stock (and a "no kit" answer, and the daily run)
proposing a shipment with the kits picked, expiry-aware; accepting it packs a shipment; and the
blinded people at the site see nothing of it."""
from __future__ import annotations

import json
import random
import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from cellbench import audit, clock, custody, pharmacy, qrpayload, sealed, studies, users
from cellbench.errors import Conflict, DomainError, InvalidInput
from cellbench.models import (
    AuditEvent,
    BlindedLot,
    Kit,
    KitState,
    Notification,
    Participant,
    ResupplyProposal,
    ResupplySetting,
    Site,
    StockNote,
    Visibility,
    Visit,
)
from cellbench.supply import resupply, resupply_desk

from .. import shortcuts
from ..conftest import SECRET, actor_of, link_site_people
from ..eligible import eligible
from ..kitworld import arms as kit_arms
from ..kitworld import load_studies, package, released_lot, sealed_kit_list
from ..trialworld import randomisation_list, to_site

STUDY, SITE, OTHER_SITE = "NCT07290946", "RH-ENT", "AUH-ENT"


# --- helpers -------------------------------------------------------------------------------------


def configure(db, site: str = SITE, *, minimum: int = 2, maximum: int = 3, days: int = 10,
              arms: tuple[str, ...] = ("active", "placebo")) -> None:
    """The supply manager sets both arms of a site (each setting re-evaluates the site)."""
    for arm in arms:
        with db.write() as s:
            resupply_desk.set_setting(s, actor_of(db, "sara"), study_code=STUDY, site_code=site, arm=arm,
                                      min_stock=minimum, max_stock=maximum, do_not_ship_days=days)


def proposals(db, state: str | None = "proposed") -> list[ResupplyProposal]:
    """The proposals once the server's evaluator has taken the sites noted by kit moves and "no
    kit" answers (it does every few seconds, in a transaction of its own)."""
    with db.write() as s:
        resupply.process_noted(s)
    with db.read() as s:
        query = select(ResupplyProposal).order_by(ResupplyProposal.id)
        if state:
            query = query.where(ResupplyProposal.state == state)
        return list(s.scalars(query))


def picked(db, proposal: ResupplyProposal) -> list[str]:
    with db.write() as s:
        (view,) = resupply_desk.proposals(s, actor_of(db, "sara"), number=proposal.number)
    return sorted(number for line in view.arms for number in line.kits)


def randomise(db, screening: str, site: str = SITE) -> tuple[str, int]:
    """The investigator enrols and randomises: the randomisation number and the first visit's id."""
    with db.write() as s:
        ida = actor_of(db, "ida")
        participant = pharmacy.enrol(s, ida, studies.by_code(s, STUDY), site_code=site, screening_number=screening)
        participant = pharmacy.randomise(s, ida, participant, **eligible(STUDY))
        visit = s.scalars(select(Visit).where(Visit.participant_id == participant.id, Visit.treatment == 1)).one()
        return participant.randomisation_number, visit.id


def arm_of(db, number: str) -> str:
    with db.write() as s:
        return sealed.arm_of_participant(s, actor_of(db, "sara"), studies.by_code(s, STUDY), number)


def participant_of(db, arm: str, screening: str, site: str = SITE) -> int:
    """Participants randomised at the site until one is on `arm`: that one's first visit."""
    for n in range(1, 12):
        number, visit_id = randomise(db, f"{screening}-{n}", site)
        if arm_of(db, number) == arm:
            return visit_id
    raise AssertionError(f"no {arm} participant in the list")


def assign(db, visit_id: int) -> Kit | None:
    with db.write() as s:
        return pharmacy.assign(s, actor_of(db, "frida"), s.get(Visit, visit_id))


def stock(db, site: str = SITE) -> dict[str, sealed.ArmStock]:
    with db.write() as s:
        site_row = s.scalars(select(Site).where(Site.code == site)).one()
        return sealed.site_stock(s, actor_of(db, "sara"), studies.by_code(s, STUDY), site_row.id,
                                 usable_through=clock.today(site_row), ship_through=clock.today(site_row))


@pytest.fixture
def stocked(trial_world, db):
    """trial_world's kits: at RH-ENT two active kits and three placebo kits (of the first blinded
    lot); the rest (the first lot's other kits, and the second lot's 8) at the cell bench."""
    world = trial_world
    to_site(db, world.first_active[:2] + world.first_placebo[:3])
    return world


# --- settings --------------------------------------------------------------------------------------


def test_a_setting_names_the_field_it_refuses_and_changes_nothing(trial_world, db):
    sara = actor_of(db, "sara")
    cases = [({"min_stock": "-1"}, "min_stock"), ({"max_stock": "two"}, "max_stock"),
             ({"do_not_ship_days": "-3"}, "do_not_ship_days"), ({"min_stock": "5", "max_stock": "4"}, "max_stock"),
             ({"arm": "verum"}, "arm"), ({"site_code": "NOWHERE"}, "site")]
    for change, field in cases:
        values = {"study_code": STUDY, "site_code": SITE, "arm": "active", "min_stock": "2", "max_stock": "4",
                  "do_not_ship_days": "30", **change}
        with pytest.raises(DomainError) as refused, db.write() as s:
            resupply_desk.set_setting(s, sara, **values)
        assert (refused.value.field, refused.value.status) == (field, 404 if field == "site" else 422), change
    with db.read() as s:
        assert s.scalars(select(ResupplySetting)).all() == []
    for blinded in ("frida", "ida", "mette", "adam"):
        with pytest.raises(Exception, match="supply_manager") as refused, db.write() as s:
            resupply_desk.set_setting(s, actor_of(db, blinded), study_code=STUDY, site_code=SITE, arm="active",
                                      min_stock=1, max_stock=2, do_not_ship_days=0)
        assert refused.value.status == 403


def test_a_setting_is_stored_and_audited_for_unblinded_eyes_only(trial_world, db):
    configure(db, minimum=0, maximum=0, arms=("active",))
    configure(db, minimum=1, maximum=4, days=20, arms=("active",))
    with db.read() as s:
        (row,) = s.scalars(select(ResupplySetting)).all()
        assert (row.arm, row.min_stock, row.max_stock, row.do_not_ship_days, row.row_version) == ("active", 1, 4, 20, 2)
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "resupply setting changed")
                                .order_by(AuditEvent.seq)))
    assert [e.entity_id for e in events] == [f"{STUDY}/{SITE}/active"] * 2
    assert json.loads(events[1].old_value)["max_stock"] == 0 and json.loads(events[1].new_value)["max_stock"] == 4
    assert {e.visibility for e in events} == {Visibility.unblinded.value}


# --- the trigger --------------------------------------------------------------------------------------


def test_a_dispense_that_drops_one_arm_below_its_minimum_proposes_kits_of_that_arm_from_in_date_stock(stocked, db):
    configure(db)  # minimum 2, maximum 3: active has 2, placebo 3: nothing short
    assert proposals(db) == []
    visit_id = participant_of(db, "active", "SCR-A")
    kit = assign(db, visit_id)
    assert kit is not None
    (proposal,) = proposals(db)
    figures = json.loads(proposal.figures)
    assert figures["active"]["short"] and figures["active"]["at_site"] == 1
    assert (figures["active"]["wanted"], figures["active"]["picked"]) == (2, 2)
    assert not figures["placebo"]["short"] and figures["placebo"]["picked"] == 0
    by_arm = kit_arms(db)
    chosen = picked(db, proposal)
    assert len(chosen) == 2 and {by_arm[number] for number in chosen} == {"active"}
    with db.read() as s:
        rows = list(s.scalars(select(Kit).where(Kit.number.in_(chosen))))
        expiries = {s.get(BlindedLot, row.blinded_lot_id).expiry for row in rows}
    assert {row.state for row in rows} == {KitState.released} and {row.site_id for row in rows} == {None}
    assert min(expiries) > clock.today() + timedelta(days=60)
    # the dispense that follows changes no stock figure: the one open proposal stays, not a second
    with db.write() as s:
        visit = s.get(Visit, visit_id)
        pharmacy.dispense(s, actor_of(db, "frida"), visit, qrpayload.make_payload(kit.number, SECRET), SECRET)
    assert [p.number for p in proposals(db)] == [proposal.number]
    with db.read() as s:
        made = list(s.scalars(select(AuditEvent).where(AuditEvent.entity_type == "resupply_proposal")))
    assert [e.action for e in made] == ["resupply proposed"] and made[0].visibility == Visibility.unblinded.value
    assert made[0].user_name == resupply.TRIGGER.name


def test_picking_is_expiry_aware_for_the_do_not_ship_days_and_the_visit_a_kit_would_cover(stocked, db):
    """The first blinded lot expires in 100 days, the second in 400. A participant's treatment 2
    is due with its window ending in 120 days: a kit of the first lot cannot cover it."""
    world, today = stocked, clock.today()
    with db.write() as s:
        s.execute(update(BlindedLot).where(BlindedLot.code == world.first_lot).values(expiry=today + timedelta(100)))
        s.execute(update(Kit).where(Kit.number.in_(world.first_active[:2])).values(state=KitState.administered))
    number = world.participant("active")
    with db.write() as s:
        ida = users.by_username(s, "ida")
        p = Participant(study_id=studies.by_code(s, STUDY).id, site_id=s.scalars(select(Site.id).where(
            Site.code == SITE)).one(), screening_number="SCR-T2", randomisation_number=number, enrolled_by=ida.id,
            enrolled_at=clock.utcnow(), randomised_at=clock.utcnow() - timedelta(days=110))
        s.add(p)
        s.flush()
        s.add(Visit(participant_id=p.id, treatment=2, target_date=today + timedelta(10),
                    window_start=today + timedelta(1), window_end=today + timedelta(120), state="planned"))
    configure(db, minimum=2, maximum=2, days=10, arms=("active",))
    (proposal,) = proposals(db)
    assert json.loads(proposal.figures)["active"]["due"] == 1
    chosen = picked(db, proposal)
    assert sorted(set(chosen) & set(world.first_active)) != [] and len(chosen) == 2
    assert len(set(chosen) & set(world.second_active)) == 1  # the one that covers the visit
    # do-not-ship days of 200: no kit of the first lot may go at all
    configure(db, minimum=2, maximum=2, days=200, arms=("active",))
    (again,) = proposals(db)
    assert again.number == proposal.number
    assert set(picked(db, again)) <= set(world.second_active) and len(picked(db, again)) == 2


def test_a_no_kit_answer_proposes_at_once(stocked, db):
    world = stocked
    configure(db, minimum=0, maximum=3)
    with db.write() as s:  # the site's active kits are gone (administered elsewhere)
        s.execute(update(Kit).where(Kit.number.in_(world.first_active[:2])).values(state=KitState.administered))
    visit_id = participant_of(db, "active", "SCR-N")
    assert proposals(db) == []  # a minimum of 0 asks for nothing before a visit waits
    assert assign(db, visit_id) is None
    (proposal,) = proposals(db)
    assert proposal.cause == "no kit"
    assert {kit_arms(db)[n] for n in picked(db, proposal)} == {"active"} and len(picked(db, proposal)) == 3


def test_a_failing_evaluation_never_touches_the_pharmacists_move_and_is_tried_again(stocked, db, monkeypatch):
    configure(db)

    def broken(*_args, **_kwargs):
        raise RuntimeError("resupply is down")

    monkeypatch.setattr(resupply, "evaluate", broken)
    visit_id = participant_of(db, "active", "SCR-F")
    kit = assign(db, visit_id)
    assert kit is not None and kit.state == KitState.allocated
    assert proposals(db) == []
    with db.read() as s:
        (note,) = s.scalars(select(StockNote)).all()  # kept for the next run
    assert note.cause == "kit allocate"
    monkeypatch.undo()
    (proposal,) = proposals(db)
    assert proposal.cause == "kit allocate"
    with db.read() as s:
        assert s.scalars(select(StockNote)).all() == []


def test_the_open_proposal_lapses_when_nothing_is_short_any_more(stocked, db):
    configure(db)
    assign(db, participant_of(db, "active", "SCR-L"))
    (proposal,) = proposals(db)
    configure(db, minimum=1, maximum=3, arms=("active",))
    assert proposals(db) == []
    (lapsed,) = proposals(db, "lapsed")
    assert lapsed.number == proposal.number and lapsed.open_slot is None and "nothing short" in lapsed.reason


# --- the supply manager's decisions -------------------------------------------------------------------


def test_accepting_packs_a_shipment_with_the_picked_kits_and_dismissing_needs_a_reason(stocked, db):
    configure(db)
    assign(db, participant_of(db, "active", "SCR-D"))
    (proposal,) = proposals(db)
    chosen = picked(db, proposal)
    sara = actor_of(db, "sara")
    with pytest.raises(Conflict), db.write() as s:
        resupply_desk.accept(s, sara, proposal.number, seen_version=proposal.row_version + 5)
    with pytest.raises(Exception) as refused, db.write() as s:
        resupply_desk.accept(s, actor_of(db, "frida"), proposal.number)
    assert refused.value.status == 403
    with db.write() as s:
        shipment = resupply_desk.accept(s, sara, proposal.number, seen_version=proposal.row_version)
        number = shipment.number
    with db.read() as s:
        shipment = custody.by_number(s, number)
        assert shipment.state == "packing" and sorted(k.number for k in custody.kits_of(s, shipment)) == chosen
    (accepted,) = proposals(db, "accepted")
    assert accepted.shipment_id == shipment.id and accepted.decided_by is not None
    # packed for the site, the kits count as on their way: nothing short, nothing proposed
    assert stock(db)["active"].on_the_way == 2
    assert proposals(db) == []
    with db.write() as s:
        resupply.evaluate(s, accepted.study_id, accepted.site_id, "test")
    assert proposals(db) == []


def test_dismissing_needs_a_reason(stocked, db):
    configure(db)
    assign(db, participant_of(db, "active", "SCR-X"))
    (proposal,) = proposals(db)
    with pytest.raises(InvalidInput) as refused, db.write() as s:
        resupply_desk.dismiss(s, actor_of(db, "sara"), proposal.number, "  ")
    assert refused.value.field == "reason"
    with db.write() as s:
        resupply_desk.dismiss(s, actor_of(db, "sara"), proposal.number, "kits go with Monday's shipment")
    (dismissed,) = proposals(db, "dismissed")
    assert dismissed.reason == "kits go with Monday's shipment"


# --- the blind: the pharmacist's move, pages and trail are the same --------------------------------------

BLINDED = ("frida", "ida", "mette", "adam")


def masked(text: str, numbers: list[str]) -> str:
    """A page or answer with the participant's and the kit's numbers taken out (they differ by design)."""
    for number in numbers:
        text = text.replace(number, "<number>")
    return re.sub(r"\b\d+(\.\d+)?\b", "#", text)  # versions, ids and times that differ with the order of events


def test_the_trigger_in_a_pharmacists_move_changes_nothing_she_sees(stocked, db, as_):
    """Assigning a kit to a placebo participant leaves both arms over their minimum; to an active
    one, drops the active arm below it, and the evaluation that follows (in a transaction of its
    own) proposes a shipment. The pharmacist's answer, her visit page and her audit trail read the
    same, but for the numbers; her move left a note naming neither kit nor arm; the proposal, its
    sealed read and its events are in records she cannot reach."""
    configure(db)
    seen: dict[str, tuple[str, str]] = {}
    for arm in ("placebo", "active"):
        visit_id = participant_of(db, arm, f"SCR-{arm[0].upper()}")
        with db.read() as s:
            visit = s.get(Visit, visit_id)
            p = s.get(Participant, visit.participant_id)
        url = f"/api/v1/participants/{STUDY}/{p.screening_number}/visits/1"
        answer = as_("frida").post(f"{url}/assign")
        assert answer.status_code == 200, answer.text
        kit_number = answer.json()["kit_number"]
        page = as_("frida").get(f"/participants/{STUDY}/{p.screening_number}/visits/1")
        numbers = [kit_number, p.screening_number, p.randomisation_number]
        with db.read() as s:
            assert [(n.cause, n.site_id) for n in s.scalars(select(StockNote))] == [("kit allocate", p.site_id)]
        seen[arm] = (masked(answer.text, numbers), masked(page.text, numbers))
        assert [x.number for x in proposals(db)] == ([] if arm == "placebo" else [proposals(db)[0].number])
    assert seen["placebo"] == seen["active"]
    frida = actor_of(db, "frida")
    with db.read() as s:
        trail = audit.trail(s, frida, audit.TrailFilter(), limit=None)
        everything = list(s.scalars(select(AuditEvent).where(AuditEvent.user_name == resupply.TRIGGER.name)))
    assert not [e for e in trail if e.entity_type in ("resupply_proposal", "sealed")
                or (e.user_id is None and e.reason != shortcuts.SETUP_REASON)]  # the world's own setup aside
    # the supply manager is told (this world gives her no address, so the message is dead at once)
    assert {e.action for e in everything} == {"sealed read", "resupply proposed", "notification queued",
                                              "notification dead"}
    assert {e.visibility for e in everything} == {Visibility.unblinded.value}
    (proposal,) = proposals(db)
    with db.read() as s:
        (note,) = s.scalars(select(Notification).where(Notification.kind == "resupply_proposed"))
    assert note.audience == "unblinded" and f"Resupply {proposal.number} is proposed" in note.body
    for user in BLINDED:
        client = as_(user)
        for url in ("/supply/resupply", "/supply/resupply/settings", f"/supply/resupply/{proposal.number}"):
            assert client.get(url).status_code == 403, (user, url)
        assert client.submit(f"/supply/resupply/{proposal.number}/accept").status_code == 403
        assert "resupply" not in client.get("/").text.lower()


def test_the_supply_manager_reads_accepts_and_sets_on_pages(stocked, db, as_):
    configure(db)
    assign(db, participant_of(db, "active", "SCR-W"))
    (proposal,) = proposals(db)
    sara = as_("sara")
    home = sara.get("/")
    assert "<strong>1</strong> resupply proposal waits" in home.text and 'href="/supply/resupply"' in home.text
    listing = sara.get("/supply/resupply")
    assert listing.status_code == 200 and proposal.number in listing.text
    assert 'rel="next"' not in listing.text, "one proposal: one page (the list is keyset-paged, newest first)"
    bad = sara.get("/supply/resupply?after=not-a-cursor")
    assert bad.status_code == 400 and "page link is not valid" in bad.text
    page = sara.get(f"/supply/resupply/{proposal.number}")
    assert all(number in page.text for number in picked(db, proposal))
    refused = sara.submit("/supply/resupply/settings", {"study": STUDY, "site": SITE, "arm": "placebo",
                                                        "min_stock": "4", "max_stock": "3", "do_not_ship_days": "5"})
    assert refused.status_code == 422 and "at least the minimum" in refused.text
    saved = sara.submit("/supply/resupply/settings", {"study": STUDY, "site": SITE, "arm": "placebo",
                                                      "min_stock": "2", "max_stock": "4", "do_not_ship_days": "5",
                                                      "setting_version": "1"})
    assert saved.status_code == 303
    with db.read() as s:
        assert s.scalars(select(ResupplySetting.max_stock).where(ResupplySetting.arm == "placebo")).one() == 4
    (proposal,) = proposals(db)  # the placebo arm now fills up to 4: the same proposal, updated
    accepted = sara.submit(f"/supply/resupply/{proposal.number}/accept",
                           {"proposal_version": str(proposal.row_version)})
    assert accepted.status_code == 303 and accepted.headers["location"].startswith("/shipments/SH-")
    assert proposals(db) == [] and "resupply proposal waits" not in sara.get("/").text


# --- a month at two sites ----------------------------------------------------------------------------------

# The minimum is the safety stock for a shipment's lead time: a proposal is accepted and dispatched
# the day it is made and arrives two days later, and up to two participants a day come to a site.
MINIMUM, MAXIMUM = 5, 8


def receive(db, number: str) -> None:
    """The pharmacist scans every kit out of the dry shipper and completes the receipt."""
    with db.write() as s:
        frida = actor_of(db, "frida")
        for kit in custody.kits_of(s, custody.by_number(s, number)):
            custody.receipt_scan(s, frida, number, qrpayload.make_payload(kit.number, SECRET), SECRET)
        problems = custody.complete_receipt(s, frida, custody.by_number(s, number), seal_intact=True,
                                            logger=custody.logger_record("manual", minimum=-190, maximum=-180))
    assert problems == []


def send(db, proposal: ResupplyProposal, day: int) -> str:
    """The supply manager accepts the proposal and dispatches the shipment it packed."""
    sara = actor_of(db, "sara")
    with db.write() as s:
        shipment = resupply_desk.accept(s, sara, proposal.number, seen_version=proposal.row_version)
        custody.dispatch(s, sara, shipment, shipper_id=f"DS-{day}", seal_number=f"SEAL-{proposal.number}",
                         logger_id=f"TL-{day}")
        return shipment.number


def visit(db, site: str, screening: str) -> bool:
    """A participant randomised at the site and treated the same day: whether a kit was there."""
    _number, visit_id = randomise(db, screening, site)
    kit = assign(db, visit_id)
    if kit is None:
        return False
    with db.write() as s:
        pharmacy.dispense(s, actor_of(db, "frida"), s.get(Visit, visit_id),
                          qrpayload.make_payload(kit.number, SECRET), SECRET)
    return True


def test_a_month_of_visits_at_two_sites_with_proposals_accepted_keeps_both_arms_over_minimum(db, people,
                                                                                              effective_specs):
    """Two sites open with no stock; from day 3, up to two participants a day at each (seeded),
    each treated the day of randomisation. Every day the daily run evaluates and the supply
    manager accepts and dispatches every open proposal; shipments arrive two days later (the
    study's transit). After every day, each arm at each site holds at least its minimum counting
    kits on their way, and no participant is ever told there is no kit."""
    load_studies(db)
    link_site_people(db, OTHER_SITE)
    sealed_kit_list(db, STUDY, 120, seed="resupply-month")
    asc = released_lot(db, "asc", "ASC-2026-0401", units=240)
    placebo = released_lot(db, "placebo", "PLB-2026-0401", units=240)
    package(db, STUDY, 120, [asc], [placebo])
    randomisation_list(db, STUDY, 80)
    rng, start = random.Random(15), clock.wall_now()
    travelling: dict[str, int] = {}
    treated, refused, shipped = 0, 0, []
    for day in range(30):
        now = start + timedelta(days=day)
        with clock.held(lambda now=now: now):
            if day == 0:
                for site in (SITE, OTHER_SITE):
                    configure(db, site, minimum=MINIMUM, maximum=MAXIMUM, days=30)
            for number, sent in sorted(travelling.items()):
                if day - sent >= 2:
                    receive(db, number)
                    del travelling[number]
            if day >= 3:
                for site in (SITE, OTHER_SITE):
                    for n in range(rng.choice((0, 1, 1, 2))):
                        given = visit(db, site, f"SCR-{site[:2]}-{day:02d}{n}")
                        treated, refused = treated + given, refused + (not given)
            with db.write() as s:
                resupply.evaluate_all(s)  # what `cellbench resupply` runs from cron
            for proposal in proposals(db):
                number = send(db, proposal, day)
                travelling[number] = day
                shipped.append(number)
            for site in (SITE, OTHER_SITE):
                for arm, held in stock(db, site).items():
                    assert held.at_site + held.on_the_way >= MINIMUM, (day, site, arm, held)
                    if day >= 2:
                        assert held.at_site > 0, (day, site, arm)
    assert refused == 0 and treated >= 45
    assert len(shipped) >= 8  # the two openings, and resupply of both sites as kits were used
    with db.read() as s:
        states = {row.state for row in s.scalars(select(ResupplyProposal))}
    assert states <= {"accepted", "lapsed"}


def test_the_daily_run_from_the_command_line_proposes_again_what_is_still_short(stocked, db, monkeypatch):
    from typer.testing import CliRunner

    from cellbench import cli

    configure(db)
    assign(db, participant_of(db, "active", "SCR-C"))
    (first,) = proposals(db)
    with db.write() as s:
        resupply_desk.dismiss(s, actor_of(db, "sara"), first.number, "waiting for the next packaging run")
    assert proposals(db) == []
    monkeypatch.setenv("CELLBENCH_DATABASE_URL", db.url)
    result = CliRunner().invoke(cli.app, ["resupply"])
    assert result.exit_code == 0, result.output
    (again,) = proposals(db)
    assert again.number != first.number and again.cause == "daily evaluation"
    assert result.output.strip() == f"resupply: 1 open proposal ({again.number})"


def test_the_demo_has_settings_for_both_sites_and_an_open_proposal(demo_trial_world):
    db = demo_trial_world
    with db.read() as s:
        sites = {code for (code,) in s.execute(select(Site.code).join(ResupplySetting,
                                                                      ResupplySetting.site_id == Site.id))}
        open_ones = list(s.scalars(select(ResupplyProposal).where(ResupplyProposal.state == "proposed")))
    assert sites == {SITE, OTHER_SITE} and open_ones
