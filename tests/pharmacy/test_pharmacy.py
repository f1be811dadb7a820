"""The site: participants enrolled and randomised, a kit of their arm assigned and dispensed by
scanning, the preparation clock, administration per gland, replacements and returns, for both
arms through the same states, clocks and checks; and the blind holding on every page and answer
a blinded person gets."""
from __future__ import annotations

import ast
import re
import threading
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlmodel import col

from cellbench import clock, kits, pharmacy, qrpayload, sealed, studies, users
from cellbench.errors import Conflict
from cellbench.models import (
    Administration,
    AuditEvent,
    BlindedLot,
    CustodyEvent,
    Deviation,
    Kit,
    KitState,
    Notification,
    Role,
    SealedList,
    Site,
    Visit,
    WebSession,
)
from cellbench.supply import lists

from ..bedside_support import card_code, recorded_by_preparer, scanned_at_bedside, syringe_code
from ..conftest import PASSWORD, ROOT, SECRET, actor_of
from ..eligible import eligible
from ..eligible import form as eligible_form
from ..trialworld import custody_actions, kit_row

STUDY = "NCT07290946"
SITE = "RH-ENT"


# --- test setup ----------------------------------------------------------------------------------


def sealed_randomisation_list(db, study_code: str = STUDY, size: int = 20) -> None:
    with db.write() as s:
        row = lists.generate(s, actor_of(db, "sara"), studies.by_code(s, study_code), "randomisation", size,
                             seed=f"pharmacy-test-{study_code}")
        list_id = row.id
    with db.write() as s:
        sara = users.by_username(s, "sara")
        sealed.seal_list(s, sara, users.actor(s, sara), s.get(SealedList, list_id), PASSWORD)


def kits_at_site(db, site_code: str = SITE) -> None:
    """Test setup, until the shipments' receipt exists: the released kits are put into the site's
    pharmacy directly, as a received shipment would leave them."""
    with db.write() as s:
        site = s.scalars(select(Site).where(Site.code == site_code)).one()
        for kit in s.scalars(select(Kit).where(Kit.state == KitState.released)):
            kit.state, kit.site_id, kit.location = KitState.at_site, site.id, f"{site_code} pharmacy"


def later(monkeypatch, db, **delta) -> None:
    """Move cellbench's clock forward by `delta`."""
    real = clock.wall_now
    monkeypatch.setattr(clock, "_source", lambda: real() + timedelta(**delta))
    still_signed_in(db)


def still_signed_in(db) -> None:
    """The people at the bench and the site keep working while the clock moves by hours or days, so
    their page sessions stay in use: the journey moves the product's one clock past the idle limit."""
    with db.write() as s:
        s.execute(update(WebSession).where(col(WebSession.ended_at).is_(None)).values(last_seen_at=clock.utcnow()))


def visit_url(screening: str, treatment: int = 1) -> str:
    return f"/api/v1/participants/{STUDY}/{screening}/visits/{treatment}"


def payload(number: str) -> str:
    return qrpayload.make_payload(number, SECRET)


def enrolled(as_, screening: str, study: str = STUDY) -> dict:
    response = as_("ida").post("/api/v1/participants", json={"study": study, "site": SITE,
                                                             "screening_number": screening})
    assert response.status_code == 201, response.text
    return response.json()


def randomised(as_, screening: str, study: str = STUDY) -> dict:
    enrolled(as_, screening, study)
    response = as_("ida").post(f"/api/v1/participants/{study}/{screening}/randomise", json=eligible(study))
    assert response.status_code == 200, response.text
    return response.json()


def arm_of(db, randomisation_number: str) -> str:
    """Read as the supply manager (a logged, unblinded read): which arm the test is looking at."""
    with db.write() as s:
        return sealed.arm_of_participant(s, actor_of(db, "sara"), studies.by_code(s, STUDY), randomisation_number)


def one_of_each_arm(as_, db) -> dict[str, str]:
    """arm -> screening number: participants randomised until both arms have one."""
    found: dict[str, str] = {}
    for n in range(1, 13):
        screening = f"SCR-{n:03d}"
        number = randomised(as_, screening)["randomisation_number"]
        found.setdefault(arm_of(db, number), screening)
        if len(found) == 2:
            return found
    raise AssertionError("the randomisation list gave one arm only")


def assign(as_, screening: str, treatment: int = 1):
    return as_("frida").post(f"{visit_url(screening, treatment)}/assign")


def treat(as_, screening: str, treatment: int = 1) -> dict:
    """Assign, dispense by scanning, start the clock, administer both glands: the visit at the end."""
    assigned = assign(as_, screening, treatment)
    assert assigned.status_code == 200, assigned.text
    number = assigned.json()["kit_number"]
    dispensed = as_("frida").post(f"{visit_url(screening, treatment)}/dispense", json={"code": payload(number)})
    assert dispensed.status_code == 200, dispensed.text
    prepared = as_("jonas").post("/api/v1/preparation", json={"code": payload(number)})
    assert prepared.status_code == 200, prepared.text
    scanned_at_bedside(as_("ida"), visit_url(screening, treatment))
    for gland in ("left", "right"):
        given = as_("ida").post(f"{visit_url(screening, treatment)}/administrations",
                                json={"gland": gland, "volume_ml": 1.0})
        assert given.status_code == 201, given.text
    return given.json()


def kit_actions(db, number: str) -> list[str]:
    with db.read() as s:
        return list(s.scalars(select(AuditEvent.action).where(AuditEvent.entity_type == "kit",
                                                              AuditEvent.entity_id == number)
                              .order_by(AuditEvent.seq)))


# --- enrolment, randomisation, the schedule ----------------------------------------------------------


def test_an_investigator_enrols_by_screening_number_and_randomising_plans_the_visits(site, as_, db):
    participant = randomised(as_, "SCR-001")
    today = clock.utcnow().astimezone(ZoneInfo("Europe/Copenhagen")).date()
    assert re.fullmatch(r"X-\d{3}", participant["randomisation_number"])
    first, second = participant["visits"]
    assert (first["treatment"], first["target_date"], first["window_start"], first["window_end"]) == (
        1, str(today), str(today), str(today + timedelta(days=14)))
    assert (second["target_date"], second["window_start"], second["window_end"]) == (
        str(today + timedelta(days=120)), str(today + timedelta(days=106)), str(today + timedelta(days=134)))
    assert {v["state"] for v in participant["visits"]} == {"planned"} and first["kit_number"] is None
    again = as_("ida").post(f"/api/v1/participants/{STUDY}/SCR-001/randomise")
    assert again.status_code == 409 and again.json()["field"] == "participant"


def test_a_one_treatment_study_plans_one_visit_on_the_day(db, people, effective_specs, as_):
    from ..kitworld import load_studies

    load_studies(db)
    sealed_randomisation_list(db, "NCT06805448")
    participant = randomised(as_, "S-SCR-01", study="NCT06805448")
    (visit,) = participant["visits"]
    assert visit["window_start"] == visit["window_end"] == visit["target_date"]


def test_enrolment_refuses_names_duplicates_and_sites_outside_the_study(site, as_):
    ida = as_("ida")
    cases = [({"screening_number": "Jensen"}, 422, "screening_number"),
             ({"screening_number": "SCR-1", "site": "NOWHERE"}, 422, "site")]
    enrolled(as_, "SCR-1")
    cases.append(({"screening_number": "scr-1"}, 409, "screening_number"))
    for change, status, field in cases:
        response = ida.post("/api/v1/participants", json={"study": STUDY, "site": SITE, **change})
        assert (response.status_code, response.json()["field"]) == (status, field), response.text
    assert as_("frida").post("/api/v1/participants", json={"study": STUDY, "site": SITE,
                                                           "screening_number": "SCR-2"}).status_code == 403


# --- both arms, end to end --------------------------------------------------------------------------


def test_both_arms_go_from_enrolment_to_both_glands_through_the_same_states_and_records(site, as_, db):
    by_arm = one_of_each_arm(as_, db)
    answers, kit_numbers = {}, {}
    for arm, screening in by_arm.items():
        visit = treat(as_, screening)
        kit_numbers[arm] = visit["kit_number"]
        answers[arm] = visit
        assert visit["state"] == "administered" and visit["kit_state_label"] == "Administered"
        assert [a["gland"] for a in visit["administrations"]] == ["left submandibular gland",
                                                                   "right submandibular gland"]
        assert kit_row(db, visit["kit_number"]).state == KitState.administered
        assert custody_actions(db, visit["kit_number"]) == ["dispensed", "preparation started", "administered",
                                                            "administered"]
        assert [a for a in kit_actions(db, visit["kit_number"]) if a != "kit moved"][-4:] == [
            "kit allocate", "kit dispense", "kit start preparation", "kit administer"]
    with db.write() as s:
        arms = sealed.arms_of_kits(s, actor_of(db, "sara"), [kit_row(db, n).id for n in kit_numbers.values()],
                                   why="test")
    assert {arm: arms[kit_row(db, number).id] for arm, number in kit_numbers.items()} == {
        "active": "active", "placebo": "placebo"}, "each participant got a kit of their own arm"

    def same_shape(answer: dict) -> dict:
        times = ("preparation_started_at", "use_by")
        return {k: v for k, v in answer.items() if k not in ("participant", "screening_number", "kit_number", *times)
                } | {"administrations": [{k: v for k, v in a.items() if k != "administered_at"}
                                         for a in answer["administrations"]]}

    assert same_shape(answers["active"]) == same_shape(answers["placebo"]), "the answers differ only in numbers"
    with db.read() as s:
        for arm in by_arm:
            visit = s.scalars(select(Visit).join(Kit, Kit.id == Visit.kit_id)
                              .where(Kit.number == kit_numbers[arm])).one()
            assert visit.use_by - visit.preparation_started_at == timedelta(minutes=60), "one window, both arms"
        events = {e.action for e in s.scalars(select(AuditEvent).where(AuditEvent.entity_type == "visit"))}
    assert {"visit planned", "kit assigned", "preparation started", "administration recorded",
            "visit state changed"} <= events


def test_treatment_two_waits_for_treatment_one_and_gets_a_kit_of_the_same_arm(site, as_, db, monkeypatch):
    screening = "SCR-001"
    randomised(as_, screening)
    early = assign(as_, screening, 2)
    assert early.status_code == 422 and early.json()["field"] == "window"
    first = treat(as_, screening)
    later(monkeypatch, db, days=120)
    second = treat(as_, screening, 2)
    assert second["state"] == "administered" and second["kit_number"] != first["kit_number"]
    with db.write() as s:
        ids = [kit_row(db, first["kit_number"]).id, kit_row(db, second["kit_number"]).id]
        arms = sealed.arms_of_kits(s, actor_of(db, "sara"), ids, why="test: same arm at treatment 2")
    assert arms[ids[0]] == arms[ids[1]]


def test_treatment_two_is_refused_while_treatment_one_is_not_administered(site, as_, db, monkeypatch):
    randomised(as_, "SCR-001")
    later(monkeypatch, db, days=120)
    response = assign(as_, "SCR-001", 2)
    assert response.status_code == 422 and response.json()["field"] == "treatment"
    assert "Treatment 1 is not recorded as administered" in response.json()["error"]


# --- refusals ---------------------------------------------------------------------------------------


def test_scanning_another_kit_is_refused_naming_both_numbers_and_nothing_else(site, as_, db):
    randomised(as_, "SCR-001")
    assigned = assign(as_, "SCR-001").json()["kit_number"]
    other = next(n for n in site.active + site.placebo if n != assigned)
    response = as_("frida").post(f"{visit_url('SCR-001')}/dispense", json={"code": payload(other)})
    assert response.status_code == 422 and response.json() == {
        "error": f"This is kit {other}; the kit assigned to this visit is {assigned}.", "field": "code"}
    assert kit_row(db, assigned).state == KitState.allocated and kit_row(db, other).state == KitState.at_site
    assert custody_actions(db, assigned) == [] and custody_actions(db, other) == []
    bare = as_("frida").post(f"{visit_url('SCR-001')}/dispense", json={"code": assigned})
    assert bare.status_code == 422 and "a kit number alone is not a scan" in bare.json()["error"]
    typed = as_("frida").post(f"{visit_url('SCR-001')}/dispense",
                              json={"code": assigned, "manual": True, "manual_reason": "label torn"})
    assert typed.status_code == 200 and typed.json()["state"] == "dispensed", "typed by hand, with a reason, works"


def test_an_expired_kit_is_never_assigned_and_the_message_is_the_same_for_both_arms(site, as_, db):
    by_arm = one_of_each_arm(as_, db)
    with db.write() as s:
        for lot in s.scalars(select(BlindedLot)):
            lot.expiry = clock.utcnow().date() - timedelta(days=1)
    answers = {arm: assign(as_, screening) for arm, screening in by_arm.items()}
    for response in answers.values():
        assert response.status_code == 409 and response.json() == {"error": pharmacy.NO_KIT_MESSAGE, "field": "kit"}
    with db.read() as s:
        notes = s.scalars(select(Notification).order_by(Notification.id)).all()
        assert {v.state for v in s.scalars(select(Visit).where(Visit.treatment == 1))} == {"planned"}
        assert s.scalar(select(func.count()).select_from(Kit).where(Kit.state == KitState.allocated)) == 0
        doors = s.scalars(select(AuditEvent).where(AuditEvent.action == "sealed assignment",
                                                   AuditEvent.field == "kit assignment")).all()
    assert len(doors) == 2, "the sealed compartment's log of each attempt is kept"
    assert [(n.kind, n.audience) for n in notes] == [("no_kit", "unblinded")] * 2, \
        "supply is alerted at once, with the arm; nothing goes to blinded people"
    with db.write() as s:
        alerts = sealed.kit_shortages(s, actor_of(db, "sara"))
    assert sorted(a.arm for a in alerts) == ["active", "placebo"]
    page = as_("frida").submit(f"/participants/{STUDY}/{by_arm['active']}/visits/1/assign", {})
    assert page.status_code == 409 and pharmacy.NO_KIT_MESSAGE in page.text


def test_a_kit_that_expired_after_assignment_is_refused_at_the_scan_and_replaced(site, as_, db):
    randomised(as_, "SCR-001")
    assigned = assign(as_, "SCR-001").json()["kit_number"]
    with db.write() as s:
        expiry = clock.utcnow().date() - timedelta(days=1)
        s.get(BlindedLot, s.scalars(select(Kit).where(Kit.number == assigned)).one().blinded_lot_id).expiry = expiry
    response = as_("frida").post(f"{visit_url('SCR-001')}/dispense", json={"code": payload(assigned)})
    assert response.status_code == 422 and response.json()["field"] == "code"
    assert "do not use it" in response.json()["error"]
    assert kit_row(db, assigned).state == KitState.allocated
    replaced = as_("frida").post(f"{visit_url('SCR-001')}/replace",
                                 json={"what": "unusable", "reason": "past its expiry", "password": PASSWORD})
    assert replaced.status_code == 200, replaced.text
    visit = replaced.json()
    assert (visit["state"], visit["kit_number"], visit["replaced_kits"]) == ("planned", None, [assigned]), \
        "every kit of the site is in that blinded lot: none is in date, so none is assigned"
    assert kit_row(db, assigned).state == KitState.at_site, "an unusable kit goes back to stock, out of date"
    with db.write() as s:
        assert len(sealed.kit_shortages(s, actor_of(db, "sara"))) == 1, "supply is alerted once"


def test_a_quarantined_kit_is_not_assigned(site, as_, db):
    by_arm = one_of_each_arm(as_, db)
    first_active = site.active[0]  # the one the assignment would pick first: earliest expiry, then number
    with db.write() as s:
        kits.move(s, actor_of(db, "anna"), s.scalars(select(Kit).where(Kit.number == first_active)).one(),
                  "quarantine", reason="test")
    number = assign(as_, by_arm["active"]).json()["kit_number"]
    assert number != first_active and number in site.active


def test_dispensing_outside_the_window_is_refused_naming_the_window(site, as_, db, monkeypatch):
    randomised(as_, "SCR-001")
    later(monkeypatch, db, days=15)
    response = assign(as_, "SCR-001")
    assert response.status_code == 422 and response.json()["field"] == "window"
    assert "closed on" in response.json()["error"]
    monkeypatch.undo()
    assign(as_, "SCR-001")
    later(monkeypatch, db, days=15)
    number = as_("frida").get(visit_url("SCR-001")).json()["kit_number"]
    scanned = as_("frida").post(f"{visit_url('SCR-001')}/dispense", json={"code": payload(number)})
    assert scanned.status_code == 422 and scanned.json()["field"] == "window"


def test_an_administration_after_the_use_window_is_refused_but_the_deviation_and_destruction_stay(
        site, as_, db, monkeypatch):
    randomised(as_, "SCR-001")
    number = assign(as_, "SCR-001").json()["kit_number"]
    as_("frida").post(f"{visit_url('SCR-001')}/dispense", json={"code": payload(number)})
    as_("jonas").post("/api/v1/preparation", json={"code": payload(number)})
    scanned_at_bedside(as_("ida"), visit_url("SCR-001"))
    later(monkeypatch, db, minutes=61)
    response = as_("ida").post(f"{visit_url('SCR-001')}/administrations", json={"gland": "left", "volume_ml": 1})
    assert response.status_code == 422 and response.json()["field"] == "administered_at"
    assert "use window" in response.json()["error"] and "Deviation DEV-" in response.json()["error"]
    with db.read() as s:
        deviation = s.scalars(select(Deviation)).one()
        visit = s.scalars(select(Visit).where(Visit.treatment == 1)).one()
        assert s.scalar(select(func.count()).select_from(Administration)) == 0
    assert (deviation.origin, deviation.severity, deviation.blinded_summary) == (
        "late_administration", "major", pharmacy.LATE_SUMMARY)
    assert number in deviation.description and "active" not in deviation.description
    assert visit.state == "not_administered" and kit_row(db, number).state == KitState.not_administered
    assert custody_actions(db, number)[-1] == "not administered"
    again = as_("ida").post(f"{visit_url('SCR-001')}/administrations", json={"gland": "right", "volume_ml": 1})
    assert again.status_code == 409
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Deviation)) == 1, "no second deviation"


def test_one_gland_in_time_and_the_other_too_late_leaves_the_visit_partly_administered(site, as_, db, monkeypatch):
    randomised(as_, "SCR-001")
    number = assign(as_, "SCR-001").json()["kit_number"]
    as_("frida").post(f"{visit_url('SCR-001')}/dispense", json={"code": payload(number)})
    as_("jonas").post("/api/v1/preparation", json={"code": payload(number)})
    scanned_at_bedside(as_("ida"), visit_url("SCR-001"))
    assert as_("ida").post(f"{visit_url('SCR-001')}/administrations",
                           json={"gland": "left", "volume_ml": 1}).status_code == 201
    later(monkeypatch, db, minutes=75)
    assert as_("ida").post(f"{visit_url('SCR-001')}/administrations",
                           json={"gland": "right", "volume_ml": 1}).status_code == 422
    visit = as_("ida").get(visit_url("SCR-001")).json()
    assert visit["state"] == "incomplete" and [a["gland"] for a in visit["administrations"]] == [
        "left submandibular gland"]
    assert kit_row(db, number).state == KitState.not_administered


def test_each_gland_is_recorded_once_with_a_sensible_volume_and_time(site, as_, db):
    randomised(as_, "SCR-001")
    number = assign(as_, "SCR-001").json()["kit_number"]
    as_("frida").post(f"{visit_url('SCR-001')}/dispense", json={"code": payload(number)})
    as_("jonas").post("/api/v1/preparation", json={"code": payload(number)})
    url = f"{visit_url('SCR-001')}/administrations"
    ida = as_("ida")
    scanned_at_bedside(ida, visit_url("SCR-001"), doses=(1,))
    for body, field in (({"gland": "left", "volume_ml": 0}, "volume_ml"),
                        ({"gland": "left", "volume_ml": 5.5}, "volume_ml"),
                        ({"gland": "middle", "volume_ml": 1}, "gland"),
                        ({"gland": "left", "volume_ml": 1, "administered_at": "2099-01-01T10:00"}, "administered_at"),
                        ({"gland": "left", "volume_ml": 1, "administered_at": "2020-01-01T10:00"}, "administered_at"),
                        ({"gland": "left", "volume_ml": 1, "administered_at": "yesterday"}, "administered_at")):
        response = ida.post(url, json=body)
        assert response.status_code == 422 and response.json()["field"] == field, (body, response.text)
    assert ida.post(url, json={"gland": "left", "volume_ml": 1.2, "administered_by": "Dr. Holm"}).status_code == 201
    twice = ida.post(url, json={"gland": "left", "volume_ml": 1.0})
    assert twice.status_code == 409 and twice.json()["field"] == "gland" and "Dr. Holm" in twice.json()["error"]
    visit = ida.get(visit_url("SCR-001")).json()
    assert visit["state"] == "administering" and visit["administrations"][0]["recorded_by"] == "Ida Investigator"


def test_two_pharmacists_dispensing_the_same_kit_at_the_same_moment_one_gets_a_conflict(site, as_, db):
    with db.write() as s:
        fred = users.create_user(s, users.cli_actor(), "fred", "Fred Pharmacist", PASSWORD, ["pharmacist"])
        users.link(s, users.cli_actor(), fred, site=SITE, study=STUDY)  # a second pharmacist of the same site
    randomised(as_, "SCR-001")
    number = assign(as_, "SCR-001").json()["kit_number"]
    with db.read() as s:
        seen = pharmacy.visit_by_ref(s, STUDY, "SCR-001", 1).row_version
    barrier, results = threading.Barrier(2), []

    def dispense(who: str, with_version: bool) -> None:
        actor = actor_of(db, who)
        barrier.wait()
        try:
            with db.write() as s:
                visit = pharmacy.visit_by_ref(s, STUDY, "SCR-001", 1)
                pharmacy.dispense(s, actor, visit, payload(number), SECRET,
                                  seen_version=seen if with_version else None)
            results.append("dispensed")
        except Conflict:
            results.append("conflict")
        except Exception as error:
            results.append(repr(error))

    threads = [threading.Thread(target=dispense, args=("frida", True)),
               threading.Thread(target=dispense, args=("fred", False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == ["conflict", "dispensed"], results
    assert custody_actions(db, number) == ["dispensed"] and kit_actions(db, number).count("kit dispense") == 1


# --- replacement, putting back, returns, not administered ----------------------------------------------


def test_a_damaged_kit_is_replaced_after_reauthentication_by_one_of_the_same_arm(site, as_, db):
    randomised(as_, "SCR-001")
    old = assign(as_, "SCR-001").json()["kit_number"]
    url = f"{visit_url('SCR-001')}/replace"
    frida = as_("frida")
    wrong = frida.post(url, json={"what": "damaged", "reason": "vial cracked", "password": "not it"})
    assert wrong.status_code == 401 and kit_row(db, old).state == KitState.allocated
    no_reason = frida.post(url, json={"what": "damaged", "reason": " ", "password": PASSWORD})
    assert no_reason.status_code == 422 and no_reason.json()["field"] == "reason"
    replaced = frida.post(url, json={"what": "damaged", "reason": "vial cracked", "password": PASSWORD})
    assert replaced.status_code == 200, replaced.text
    visit = replaced.json()
    assert visit["replaced_kits"] == [old] and visit["kit_number"] not in (None, old)
    assert visit["state"] == "kit_assigned" and kit_row(db, old).state == KitState.damaged
    assert custody_actions(db, old) == ["damaged"]
    with db.write() as s:
        ids = [kit_row(db, old).id, kit_row(db, visit["kit_number"]).id]
        arms = sealed.arms_of_kits(s, actor_of(db, "sara"), ids, why="test")
    assert arms[ids[0]] == arms[ids[1]]
    dispensed = frida.post(f"{visit_url('SCR-001')}/dispense", json={"code": payload(visit["kit_number"])})
    assert dispensed.status_code == 200


def test_a_kit_that_is_not_collected_goes_back_to_stock(site, as_, db):
    randomised(as_, "SCR-001")
    number = assign(as_, "SCR-001").json()["kit_number"]
    response = as_("frida").post(f"{visit_url('SCR-001')}/unallocate", json={"reason": "participant did not come"})
    assert response.status_code == 200 and response.json()["state"] == "planned"
    assert kit_row(db, number).state == KitState.at_site


def test_a_dispensed_kit_that_was_not_prepared_is_returned_with_its_condition(site, as_, db):
    randomised(as_, "SCR-001")
    number = assign(as_, "SCR-001").json()["kit_number"]
    as_("frida").post(f"{visit_url('SCR-001')}/dispense", json={"code": payload(number)})
    blank = as_("frida").post("/api/v1/returns", json={"code": payload(number), "condition": ""})
    assert blank.status_code == 422 and blank.json()["field"] == "condition"
    returned = as_("frida").post("/api/v1/returns", json={"code": payload(number), "condition": "intact, sealed"})
    assert returned.status_code == 200 and returned.json()["state_label"] == "Returned"
    with db.read() as s:
        event = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "returned")).one()
    assert event.condition == "intact, sealed"
    visit = as_("frida").get(visit_url("SCR-001")).json()
    assert visit["state"] == "planned" and visit["kit_number"] is None and visit["replaced_kits"] == [number]
    again = assign(as_, "SCR-001").json()["kit_number"]
    assert again != number


def test_a_prepared_kit_cannot_be_returned_but_can_be_recorded_not_administered(site, as_, db):
    randomised(as_, "SCR-001")
    number = assign(as_, "SCR-001").json()["kit_number"]
    as_("frida").post(f"{visit_url('SCR-001')}/dispense", json={"code": payload(number)})
    as_("jonas").post("/api/v1/preparation", json={"code": payload(number)})
    refused = as_("frida").post("/api/v1/returns", json={"code": payload(number), "condition": "intact"})
    assert refused.status_code == 422 and refused.json()["field"] == "code"
    stopped = as_("ida").post(f"{visit_url('SCR-001')}/not-administered", json={"reason": "participant fainted"})
    assert stopped.status_code == 200 and stopped.json()["state"] == "not_administered"
    assert kit_row(db, number).state == KitState.not_administered


def test_starting_the_clock_twice_is_a_conflict_and_an_undispensed_kit_is_refused(site, as_, db):
    randomised(as_, "SCR-001")
    number = assign(as_, "SCR-001").json()["kit_number"]
    early = as_("jonas").post("/api/v1/preparation", json={"code": payload(number)})
    assert early.status_code == 422 and early.json()["field"] == "code"
    as_("frida").post(f"{visit_url('SCR-001')}/dispense", json={"code": payload(number)})
    assert as_("jonas").post("/api/v1/preparation", json={"code": payload(number)}).status_code == 200
    twice = as_("jonas").post("/api/v1/preparation", json={"code": payload(number)})
    assert twice.status_code == 409 and "in preparation since" in twice.json()["error"]


def test_each_role_does_only_its_part(site, as_, db):
    randomised(as_, "SCR-001")
    assert as_("ida").post(f"{visit_url('SCR-001')}/assign").status_code == 403
    assert as_("jonas").post(f"{visit_url('SCR-001')}/assign").status_code == 403
    number = assign(as_, "SCR-001").json()["kit_number"]
    assert as_("frida").post("/api/v1/preparation", json={"code": payload(number)}).status_code == 403
    assert as_("frida").post(f"{visit_url('SCR-001')}/administrations",
                             json={"gland": "left", "volume_ml": 1}).status_code == 403
    assert as_("mette").get(visit_url("SCR-001")).status_code == 200
    assert as_("mette").get(visit_url("SCR-001")).json()["allowed_actions"] == []
    assert as_("adam").get(visit_url("SCR-001")).status_code == 403
    assert as_("olivia").get("/participants").status_code == 403


# --- pages ------------------------------------------------------------------------------------------


def _normalised(text: str, numbers: list[str]) -> str:
    for i, number in enumerate(sorted(numbers, key=len, reverse=True)):
        text = text.replace(number, f"#{i}")
    text = re.sub(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?", "<time>", text)
    text = re.sub(r"\b\d{1,2}:\d{2}\b", "<hh:mm>", text)
    return text


def test_blinded_pages_for_an_active_and_a_placebo_participant_differ_only_in_numbers(site, as_, db):
    by_arm = one_of_each_arm(as_, db)
    numbers: dict[str, list[str]] = {}
    for arm, screening in by_arm.items():
        participant = as_("ida").get(f"/api/v1/participants/{STUDY}/{screening}").json()
        numbers[arm] = [screening, participant["randomisation_number"]]
    frida, ida = as_("frida"), as_("ida")
    pages: dict[str, dict[str, str]] = {arm: {} for arm in by_arm}
    for arm, screening in by_arm.items():
        base = f"/participants/{STUDY}/{screening}"
        numbers[arm].append(assign(as_, screening).json()["kit_number"])
        pages[arm]["pharmacist: dispensing"] = frida.get(f"{base}/visits/1/dispense").text
        pages[arm]["pharmacist: participant"] = frida.get(base).text
        visit = treat_after_assignment(as_, screening, numbers[arm][-1])
        assert visit["state"] == "administering"
        pages[arm]["investigator: administration"] = ida.get(f"{base}/visits/1/administration").text
        pages[arm]["investigator: participant"] = ida.get(base).text
    for name in pages["active"]:
        active = _normalised(pages["active"][name], numbers["active"])
        placebo = _normalised(pages["placebo"][name], numbers["placebo"])
        assert active == placebo, name
    assert "active" not in pages["active"]["investigator: participant"].lower().replace("inactive", "")


def treat_after_assignment(as_, screening: str, number: str) -> dict:
    as_("frida").post(f"{visit_url(screening)}/dispense", json={"code": payload(number)})
    as_("jonas").post("/api/v1/preparation", json={"code": payload(number)})
    scanned_at_bedside(as_("ida"), visit_url(screening), doses=(1,))
    response = as_("ida").post(f"{visit_url(screening)}/administrations", json={"gland": "left", "volume_ml": 1})
    assert response.status_code == 201, response.text
    return response.json()


def test_the_pages_walk_a_participant_from_enrolment_to_administration(site, as_, db):
    ida, frida, jonas = as_("ida"), as_("frida"), as_("jonas")
    enrol = ida.submit("/participants", {"study": STUDY, "site": SITE, "screening_number": "scr-007"})
    assert enrol.status_code == 303 and enrol.headers["location"].startswith(f"/participants/{STUDY}/SCR-007")
    bad = ida.submit("/participants", {"study": STUDY, "site": SITE, "screening_number": "Hansen"})
    assert bad.status_code == 422 and "Never a name" in bad.text
    base = f"/participants/{STUDY}/SCR-007"
    refused = ida.submit(f"{base}/randomise")
    assert refused.status_code == 422 and "Enter the date of informed consent" in refused.text
    assert ida.submit(f"{base}/randomise", eligible_form(STUDY)).status_code == 303
    page = ida.get(base).text
    assert "Randomise</button>" not in page and "Planned" in page
    assert "treatment visit is due today" in ida.get("/").text
    assert "visit today awaits a dispensed kit" in frida.get("/").text
    randomisation_number = re.search(r"Randomisation number</dt><dd>([^<]+)<", ida.get(base).text).group(1)
    assert randomisation_number in frida.get("/dispensing").text
    assigned = frida.submit(f"{base}/visits/1/assign", {})
    assert assigned.status_code == 303 and assigned.headers["location"].startswith(f"{base}/visits/1/dispense")
    page = frida.get(f"{base}/visits/1/dispense").text
    number = re.search(r'<span class="kitno huge">([^<]+)</span>', page).group(1)
    assert 'name="code"' in page and "autofocus" in page
    other = next(n for n in site.active + site.placebo if n != number)
    wrong = frida.submit(f"{base}/visits/1/dispense", {"code": payload(other)})
    assert wrong.status_code == 422
    assert f"This is kit {other}; the kit assigned to this visit is {number}." in wrong.text
    assert frida.submit(f"{base}/visits/1/dispense", {"code": payload(number)}).status_code == 303
    assert "dispensed kit to thaw or prepare" in jonas.get("/").text
    assert number in jonas.get("/preparation").text
    started = jonas.submit("/preparation", {"code": payload(number)})
    assert started.status_code == 303
    prep = jonas.get("/preparation").text
    assert "data-use-by" in prep and "left" in prep and "preparation is running" in jonas.get("/").text
    form = ida.get(f"{base}/visits/1/administration").text
    assert form.count('name="volume_ml"') == 2 and "data-use-by" in form
    too_much = ida.submit(f"{base}/visits/1/administration", {"gland": "left", "volume_ml": "9"})
    assert too_much.status_code == 422 and "at most 5 mL" in too_much.text
    recorded_by_preparer(jonas.app.state.db, STUDY, randomisation_number)  # its pages: tests/pharmacy/test_preparation
    for code in (card_code(STUDY, randomisation_number), syringe_code(number, 1, randomisation_number),
                 syringe_code(number, 2, randomisation_number)):  # at the bedside, before the doses go in
        assert ida.submit(f"{base}/visits/1/bedside", {"code": code}).status_code == 303
    for gland in ("left", "right"):
        assert ida.submit(f"{base}/visits/1/administration", {"gland": gland, "volume_ml": "1,0"}).status_code == 303
    done = ida.get(base).text
    assert "Administered" in done and number in done


def test_returns_page_takes_a_scan_and_a_condition(site, as_, db):
    frida = as_("frida")
    number = site.placebo[0]
    refused = frida.submit("/returns", {"code": payload(number), "condition": ""})
    assert refused.status_code == 422
    assert frida.submit("/returns", {"code": payload(number), "condition": "outer box dented"}).status_code == 303
    assert number in frida.get("/returns").text and kit_row(db, number).state == KitState.returned


# --- one table for a visit's moves ----------------------------------------------------------------------


def test_one_table_says_who_may_act_on_a_visit_in_each_state():
    """The visit page offers exactly what pharmacy.MACHINE allows each role; a closed visit offers
    nothing to anyone."""
    allowed = {(state.value, role): pharmacy.MACHINE.allowed(Visit(state=state.value), [role])
               for state in pharmacy.VisitState for role in Role}
    assert {key: actions for key, actions in allowed.items() if actions} == {
        ("planned", Role.pharmacist): ["assign"],
        ("kit_assigned", Role.pharmacist): ["dispense", "replace", "unallocate"],
        ("dispensed", Role.pharmacist): ["replace"],
        ("dispensed", Role.preparer): ["prepare"],
        ("in_preparation", Role.preparer): ["not_administered"],
        ("in_preparation", Role.investigator): ["administer", "not_administered"],
        ("administering", Role.preparer): ["not_administered"],
        ("administering", Role.investigator): ["administer", "not_administered"],
    }
    guarded = {name: [pharmacy.GUARD_FIELDS[rule] for rule in move.guards]
               for name, move in pharmacy.VISIT_MOVES.items() if move.guards}
    assert guarded == {"assign": ["window", "treatment"], "dispense": ["window"]}


# --- the wall around the sealed compartment -----------------------------------------------------------


def test_the_site_modules_use_only_the_blind_safe_doors_of_the_sealed_compartment():
    parts = sorted(str(p.relative_to(ROOT)) for p in Path(ROOT, "cellbench", "pharmacy").glob("*.py"))
    for path in (*parts, "cellbench/unblinding.py", "cellbench/web/pharmacy.py", "cellbench/api/pharmacy.py"):
        tree = ast.parse(Path(ROOT, path).read_text())
        used = {node.attr for node in ast.walk(tree)
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "sealed"}
        assert used <= set(sealed.BLIND_SAFE), (path, used)
        names = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                 for alias in node.names}
        assert not {n for n in names if n.startswith("Sealed")}, path
        assert not any(isinstance(node, ast.ImportFrom) and (node.module or "").endswith("sealed")
                       for node in ast.walk(tree)), path


def test_the_preparer_can_stop_a_running_preparation_from_the_preparation_page(site, as_, db):
    randomised(as_, "SCR-001")
    number = assign(as_, "SCR-001").json()["kit_number"]
    as_("frida").post(f"{visit_url('SCR-001')}/dispense", json={"code": payload(number)})
    jonas = as_("jonas")
    jonas.submit("/preparation", {"code": payload(number)})
    base = f"/participants/{STUDY}/SCR-001/visits/1"
    blank = jonas.submit(f"{base}/not-administered", {"reason": ""})
    assert blank.status_code == 422 and "A reason is required" in blank.text
    stopped = jonas.submit(f"{base}/not-administered", {"reason": "syringe contaminated"})
    assert stopped.status_code == 303 and stopped.headers["location"].startswith("/preparation?notice=")
    assert kit_row(db, number).state == KitState.not_administered
    assert as_("ida").get(base, follow_redirects=False).headers["location"] == f"/participants/{STUDY}/SCR-001#T1"


# --- off the shelf, and back from a quarantine ------------------------------------------------------------------


def _store_all_at_site(db) -> None:
    """Every kit in the site's stock put away in the site's freezer, as the pharmacist does."""
    from cellbench import custody

    frida = actor_of(db, "frida")
    with db.write() as s:
        custody.add_location(s, frida, site_code=SITE, code="RH-ENT-F1", name="Freezer 1", kind="freezer")
    with db.write() as s:
        for kit in s.scalars(select(Kit).where(Kit.state == KitState.at_site)):
            custody.store(s, frida, kit, "RH-ENT-F1")


def test_a_dispensed_or_returned_kit_has_left_its_freezer(site, as_, db):
    from cellbench import custody

    _store_all_at_site(db)
    assert {kit_row(db, k).storage_location_id is not None for k in site.active + site.placebo} == {True}
    randomised(as_, "SCR-001")
    number = assign(as_, "SCR-001").json()["kit_number"]
    assert kit_row(db, number).storage_location_id is not None, "assigned, it still waits in the freezer"
    assert as_("frida").post(f"{visit_url('SCR-001')}/dispense", json={"code": payload(number)}).status_code == 200
    assert kit_row(db, number).storage_location_id is None, "dispensed: handed to the preparer, off the shelf"
    other = next(k for k in site.active + site.placebo if k != number)
    returned = as_("frida").post("/api/v1/returns", json={"code": payload(other), "condition": "intact"})
    assert returned.status_code == 200 and kit_row(db, other).storage_location_id is None
    with db.read() as s:
        assert sum(custody.stored_counts(s).values()) == 6, "the freezer holds the six kits still in it"


def _two_of_each_arm(as_, db) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"active": [], "placebo": []}
    for n in range(1, 20):
        screening = f"SCR-{n:03d}"
        arm = arm_of(db, randomised(as_, screening)["randomisation_number"])
        if len(found[arm]) < 2:
            found[arm].append(screening)
        if all(len(v) == 2 for v in found.values()):
            return found
    raise AssertionError("the randomisation list did not give two of each arm")


def test_a_kit_held_while_assigned_returns_to_its_visit_or_to_stock_both_arms_alike(site, as_, db):
    """Lifting a quarantine puts an assigned kit back on its visit if the visit still has it; if
    the pharmacist replaced it meanwhile, the kit goes back to the site's stock, not to
    "assigned" to nobody. The same for an active and a placebo participant."""
    from cellbench.models import KitQuarantine, Lot
    from cellbench.supply import quarantine

    people = _two_of_each_arm(as_, db)
    kept = {arm: names[0] for arm, names in people.items()}
    swapped = {arm: names[1] for arm, names in people.items()}
    assigned = {screening: assign(as_, screening).json()["kit_number"]
                for names in people.values() for screening in names}
    with db.write() as s:
        lot = s.scalars(select(Lot).where(Lot.number == site.asc_lot)).one()
        qid = quarantine.open_manual(s, actor_of(db, "sara"), lot, "blinded_lot", "sterility retest")[0].id
    assert {kit_row(db, k).state for k in assigned.values()} == {KitState.quarantined}
    for screening in swapped.values():
        replaced = as_("frida").post(f"{visit_url(screening)}/replace",
                                     json={"what": "unusable", "reason": "held for a quality review",
                                           "password": PASSWORD})
        assert replaced.status_code == 200, replaced.text
        assert (replaced.json()["kit_number"], replaced.json()["state"]) == (None, "planned"), "every kit is held"
    with db.write() as s:
        quarantine.lift(s, users.by_username(s, "anna"), s.get(KitQuarantine, qid), "retest passed", PASSWORD)
    for arm in ("active", "placebo"):
        still = assigned[kept[arm]]
        assert kit_row(db, still).state == KitState.allocated, arm
        assert as_("frida").get(visit_url(kept[arm])).json()["kit_number"] == still
        assert as_("frida").post(f"{visit_url(kept[arm])}/dispense", json={"code": payload(still)}).status_code == 200
        assert kit_row(db, assigned[swapped[arm]]).state == KitState.at_site, arm
    again = {arm: assign(as_, screening).json()["kit_number"] for arm, screening in swapped.items()}
    assert all(number in site.active + site.placebo for number in again.values()), "the stock is usable again"


def test_the_late_administrations_deviation_names_its_kit_and_visit_and_not_the_arm(site, as_, db, monkeypatch):
    from cellbench import deviations

    by_arm = one_of_each_arm(as_, db)
    numbers = {}
    for arm, screening in by_arm.items():
        numbers[arm] = assign(as_, screening).json()["kit_number"]
        as_("frida").post(f"{visit_url(screening)}/dispense", json={"code": payload(numbers[arm])})
        as_("jonas").post("/api/v1/preparation", json={"code": payload(numbers[arm])})
        scanned_at_bedside(as_("ida"), visit_url(screening))
    later(monkeypatch, db, minutes=61)
    for screening in by_arm.values():
        late = as_("ida").post(f"{visit_url(screening)}/administrations", json={"gland": "left", "volume_ml": 1})
        assert late.status_code == 422
    with db.read() as s:
        found = {}
        for arm in by_arm:
            kit = kit_row(db, numbers[arm])
            (deviation,) = deviations.deviations_of(s, kit_id=kit.id)
            visit = s.get(Visit, deviation.visit_id)
            assert visit.kit_id == kit.id and visit.treatment == 1
            found[arm] = (deviation.blinded_summary, deviations.links(s, deviation))
    assert found["active"][0] == found["placebo"][0] == pharmacy.LATE_SUMMARY
    for arm, screening in by_arm.items():
        assert found[arm][1] == {"kit": numbers[arm], "visit": f"{STUDY}/{screening}/T1"}
