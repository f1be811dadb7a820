"""End to end through the JSON API, as each role: kits of both arms shipped from the cell bench to
the site, received by scanning with a logger file, then either dispensed, prepared and given into
both glands, or dispensed, returned unused, counted, authorised for destruction and destroyed.
The test knows the arms (the supply manager's sealed list); the blinded answers must not: an
active and a placebo kit in the same situation read the same but for kit and participant numbers."""
from __future__ import annotations

import io
import json
import re
from datetime import timedelta

import pytest
from pypdf import PdfReader
from sqlalchemy import select, update
from sqlmodel import col

from cellbench import clock as cellbench_clock
from cellbench import custody, qrpayload, signatures
from cellbench.models import AuditEvent, KitState, Reconciliation, WebSession

from .bedside_support import scanned_at_bedside
from .blinding_support import sealed_tripwire
from .conftest import PASSWORD, SECRET
from .eligible import eligible
from .trialworld import SITE, STUDY, custody_actions, kit_row, randomisation_list

BLINDED_READERS = ("frida", "ida", "mette")
TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")


# --- helpers -----------------------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch, db):
    """One clock for every module that writes a time, moved forward as a courier would move it. The
    people at the bench and the site keep working meanwhile, so their page sessions stay in use and
    nobody is signed out by the journey."""
    shift = [timedelta()]
    monkeypatch.setattr(cellbench_clock, "_source", lambda: cellbench_clock.wall_now() + shift[0])

    def advance(**delta) -> None:
        shift[0] += timedelta(**delta)
        with db.write() as s:
            s.execute(update(WebSession).where(col(WebSession.ended_at).is_(None))
                      .values(last_seen_at=cellbench_clock.utcnow()))

    return advance


def label(kit: str) -> dict:
    """What a scanner sends for the kit's label."""
    return {"code": qrpayload.make_payload(kit, SECRET)}


def ok(response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json() if response.headers["content-type"].startswith("application/json") else {}


def blind(answer, *numbers: str) -> str:
    """An answer as text with the given numbers and all times masked: what must match across arms."""
    text = json.dumps(answer, sort_keys=True, default=str)
    for n in sorted(numbers, key=len, reverse=True):
        text = text.replace(n, "<number>")
    return TIME.sub("<time>", text)


def assert_same_but_numbers(a, b, numbers_a: tuple, numbers_b: tuple, step: str) -> None:
    assert blind(a, *numbers_a) == blind(b, *numbers_b), f"{step}: the blinded answers differ beyond numbers"


def kit_audit(db, number: str, entity: str = "kit") -> list[str]:
    with db.read() as s:
        return list(s.scalars(select(AuditEvent.action).where(AuditEvent.entity_type == entity,
                                                              AuditEvent.entity_id == number).order_by(AuditEvent.seq)))


def ship_and_receive(as_, db, clock, pair: list[str]) -> str:
    """Packed by scanning, dispatched in a sealed shipper, 26 h later scanned in with a cold logger file."""
    sara, frida = as_("sara"), as_("frida")
    number = ok(sara.post("/api/v1/shipments", json={"study": STUDY, "site": SITE}), 201)["number"]
    for kit in pair:
        ok(sara.post(f"/api/v1/shipments/{number}/kits", json=label(kit)))
    sent = ok(sara.post(f"/api/v1/shipments/{number}/dispatch",
                        json={"shipper_id": "DS-07", "seal_number": "SEAL-1234", "logger_id": "LOG-88"}))
    assert sent["state"] == "in_transit" and {kit_row(db, k).state for k in pair} == {KitState.in_transit}
    clock(hours=26)
    scans = [ok(frida.post(f"/api/v1/shipments/{number}/receipt-scans", json=label(kit))) for kit in pair]
    assert [s["kit"]["kit_number"] for s in scans] == pair and scans[-1]["remaining"] == 0
    assert_same_but_numbers(scans[0]["kit"], scans[1]["kit"], (pair[0],), (pair[1],), "receipt scan")
    with db.read() as s:
        dispatched = custody.by_number(s, number).dispatched_at
    readings = "timestamp,temperature_c\n" + "".join(f"{(dispatched + timedelta(hours=h)).isoformat()},{t}\n"
                                                  for h, t in ((1, -188.0), (12, -176.5), (25, -161.0)))
    received = ok(frida.post(f"/api/v1/shipments/{number}/receipt/logger-csv", data={"seal_intact": "true"},
                             files={"logger_csv": ("LOG-88.csv", readings, "text/csv")}))
    assert (received["state"], received["seal_intact"], received["receipt_problems"]) == ("received", True, [])
    assert (received["logger_min"], received["logger_max"], received["transit_minutes"]) == (-188.0, -161.0, 26 * 60)
    for kit in pair:
        row = kit_row(db, kit)
        assert (row.state, row.location) == (KitState.at_site, f"{SITE} · pharmacy")
    assert kit_audit(db, number, "shipment") == ["shipment created", "kit packed", "kit packed", "shipment dispatched",
                                                 "shipment sealed", "shipment received", "receipt check"]
    return number


def one_participant_per_arm(as_, db) -> dict[str, tuple[str, str]]:
    """arm -> (screening, randomisation number): the investigator randomises until both arms have one;
    the arms come from the supply manager's sealed list, never from the investigator's answers."""
    arm_of = randomisation_list(db)
    found: dict[str, tuple[str, str]] = {}
    for n in range(1, 13):
        screening = f"SCR-{n:03d}"
        ok(as_("ida").post("/api/v1/participants", json={"study": STUDY, "site": SITE, "screening_number": screening}),
           201)
        number = ok(as_("ida").post(f"/api/v1/participants/{STUDY}/{screening}/randomise",
                                    json=eligible(STUDY)))["randomisation_number"]
        found.setdefault(arm_of[number], (screening, number))
        if len(found) == 2:
            return found
    raise AssertionError("the randomisation list gave one arm only")


def visit(screening: str) -> str:
    return f"/api/v1/participants/{STUDY}/{screening}/visits/1"


def chain(as_, who: str, kit: str) -> list[dict]:
    return ok(as_(who).get(f"/api/v1/kits/{kit}/custody"))["links"]


def assert_chains_alike(as_, db, kits_: dict[str, str], extra: dict[str, tuple]) -> list[str]:
    """Every blinded reader reads the two kits' chains the same but for numbers, without the sealed
    compartment being touched; returns the steps."""
    for who in BLINDED_READERS:
        with sealed_tripwire(db) as touched:
            a, p = chain(as_, who, kits_["active"]), chain(as_, who, kits_["placebo"])
        assert touched == [], f"{who}'s custody chain reached the sealed compartment"
        assert_same_but_numbers(a, p, (kits_["active"], *extra["active"]), (kits_["placebo"], *extra["placebo"]),
                                f"custody chain for {who}")
    return [link["what"] for link in chain(as_, "mette", kits_["active"])]


# --- from shipment to administration -------------------------------------------------------------------


def test_an_active_and_a_placebo_kit_go_from_shipment_to_both_glands_alike(kit_world, as_, db, clock):
    pair = [kit_world.active[0], kit_world.placebo[0]]
    shipment = ship_and_receive(as_, db, clock, pair)
    people = one_participant_per_arm(as_, db)
    numbers: dict[str, tuple] = {}
    answers: dict[str, dict[str, dict]] = {"active": {}, "placebo": {}}
    for arm, (screening, _) in people.items():
        steps = answers[arm]
        steps["assigned"] = ok(as_("frida").post(f"{visit(screening)}/assign"))
        kit = steps["assigned"]["kit_number"]
        numbers[arm] = (screening, people[arm][1], kit)
        steps["dispensed"] = ok(as_("frida").post(f"{visit(screening)}/dispense", json=label(kit)))
        steps["prepared"] = ok(as_("jonas").post("/api/v1/preparation", json=label(kit)))
        scanned_at_bedside(as_("ida"), visit(screening))
        for gland in ("left", "right"):
            steps[f"{gland} gland"] = ok(as_("ida").post(f"{visit(screening)}/administrations",
                                                         json={"gland": gland, "volume_ml": 1.0}), 201)
        steps["investigator reads"] = ok(as_("ida").get(visit(screening)))
        steps["trace"] = ok(as_("ida").get("/api/v1/trace/kits", params={"q": kit}))
    kits_ = {arm: numbers[arm][2] for arm in numbers}
    assert kits_ == {"active": pair[0], "placebo": pair[1]}, "each participant got the shipped kit of their arm"
    for step in answers["active"]:
        assert_same_but_numbers(answers["active"][step], answers["placebo"][step], numbers["active"],
                                numbers["placebo"], step)
    done = answers["active"]["investigator reads"]
    assert (done["state"], done["kit_state_label"]) == ("administered", "Administered")
    assert [a["gland"] for a in done["administrations"]] == ["left submandibular gland", "right submandibular gland"]

    for kit in pair:
        assert kit_row(db, kit).state == KitState.administered
    assert custody_actions(db, pair[0]) == custody_actions(db, pair[1]) == [
        "packed", "dispatched", "received", "dispensed", "preparation started", "administered", "administered"]
    assert kit_audit(db, pair[0]) == kit_audit(db, pair[1])
    visits = [kit_audit(db, f"{STUDY}/{people[arm][0]}/T1", "visit") for arm in ("active", "placebo")]
    assert visits[0] == visits[1]
    assert {"kit assigned", "preparation started", "administration recorded"} <= set(visits[0])

    assert_chains_alike(as_, db, kits_, {arm: numbers[arm][:2] for arm in numbers})
    links = chain(as_, "mette", pair[0])
    records = [link["what"] for link in links if link["source"] == "record" and link["what"] != "kit moved"]
    assert records == ["kit number issued", "kit package", "kit release", "kit ship", "kit scanned at receipt",
                       "kit receive", "kit allocate", "kit dispense", "kit start preparation", "kit administer"]
    assert [(link["what"], link["to_place"]) for link in links if link["source"] != "record"] == [
        ("packed", f"Shipment {shipment}"), ("dispatched", f"In transit · {shipment} to {SITE}"),
        ("received", f"{SITE} · pharmacy"), ("dispensed", f"{SITE}: with the preparer"),
        ("preparation started", f"{SITE}: in preparation"),
        ("administered", "left submandibular gland"), ("administered", "right submandibular gland")]
    dispatched = next(link for link in links if link["what"] == "dispatched")
    assert "seal SEAL-1234, logger LOG-88" in dispatched["detail"] and dispatched["who"] == "Sara Supply"
    rows = ok(as_("mette").get("/api/v1/accountability", params={"study": STUDY}))["rows"]
    site = {r["place"]: r for r in rows}[SITE]
    assert (site["counts"]["released"], site["counts"]["dispensed"], site["counts"]["on_hand"]) == (2, 2, 0)

    # from the fill: the supply manager's unblinded trace finds each kit's units in its own lot
    for kit, lot in ((pair[0], kit_world.asc_lot), (pair[1], kit_world.placebo_lot)):
        found = ok(as_("sara").get("/api/v1/trace", params={"q": kit}))
        assert {v["code"].rsplit("-", 1)[0] for v in found["vials"]} == {lot}, found["vials"]


# --- from shipment to destruction ------------------------------------------------------------------------


def test_an_active_and_a_placebo_kit_returned_unused_are_counted_and_destroyed_alike(kit_world, as_, db, clock):
    pair = [kit_world.active[0], kit_world.placebo[0]]
    ship_and_receive(as_, db, clock, pair)
    people = one_participant_per_arm(as_, db)
    frida, sara = as_("frida"), as_("sara")
    returned, numbers = {}, {}
    for arm, (screening, randomisation) in people.items():
        kit = ok(frida.post(f"{visit(screening)}/assign"))["kit_number"]
        numbers[arm] = (screening, randomisation, kit)
        ok(frida.post(f"{visit(screening)}/dispense", json=label(kit)))
        returned[arm] = ok(frida.post("/api/v1/returns", json={**label(kit), "condition": "intact, never thawed"}))
        after = ok(frida.get(visit(screening)))
        assert (after["state"], after["kit_number"], after["replaced_kits"]) == ("planned", None, [kit])
    kits_ = {arm: numbers[arm][2] for arm in numbers}
    assert kits_ == {"active": pair[0], "placebo": pair[1]}
    assert_same_but_numbers(returned["active"], returned["placebo"], numbers["active"], numbers["placebo"], "return")
    assert {kit_row(db, k).state for k in pair} == {KitState.returned}

    details = {arm: ok(frida.get(f"/api/v1/kits/{kit}")) for arm, kit in kits_.items()}
    assert_same_but_numbers(details["active"], details["placebo"], numbers["active"], numbers["placebo"], "kit")
    lot = details["active"]["blinded_lot"]
    row = ok(frida.get("/api/v1/accountability", params={"study": STUDY, "place": SITE, "blinded_lot": lot}))["rows"][0]
    assert (row["counts"]["returned"], row["counts"]["on_hand"], row["status"]) == (2, 2, "not counted")
    count = ok(frida.post("/api/v1/reconciliations", json={"study": STUDY, "place": SITE, "blinded_lot": lot,
                                                           "counted_in_stock": 2, "password": PASSWORD}), 201)
    assert count["balanced"] is True and count["signature"]["meaning"] == "performed"
    authorised = ok(sara.post("/api/v1/destructions", json={"study": STUDY, "place": SITE, "kits": pair,
                                                            "password": PASSWORD}), 201)
    assert authorised["state"] == "authorised"
    assert {k["kit_number"]: k["state_before"] for k in authorised["kits"]} == dict.fromkeys(pair, "Returned")
    destroyed = ok(frida.post(f"/api/v1/destructions/{authorised['number']}/destroyed", json={
        "method": "Incineration as clinical waste", "destroyed_on": cellbench_clock.today().isoformat(),
        "witness": "Wilma Witness", "password": PASSWORD}))
    assert (destroyed["state"], destroyed["witness"]) == ("destroyed", "Wilma Witness")
    assert [s["meaning"] for s in destroyed["signatures"]][-2:] == ["approved", "destroyed"]
    pdf = as_("mette").get(f"/api/v1/destructions/{authorised['number']}/certificate.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert all(s in text for s in (*pair, "Wilma Witness", "Incineration as clinical waste"))
    assert "placebo" not in text.lower() and "active" not in text.lower()

    for kit in pair:
        assert kit_row(db, kit).state == KitState.destroyed
    assert custody_actions(db, pair[0]) == custody_actions(db, pair[1]) == [
        "packed", "dispatched", "received", "dispensed", "returned", "destroyed"]
    assert kit_audit(db, pair[0]) == kit_audit(db, pair[1])
    assert kit_audit(db, pair[0])[-1] == "kit destroy" and "kit return" in kit_audit(db, pair[0])
    steps = assert_chains_alike(as_, db, kits_, {arm: numbers[arm][:2] for arm in numbers})
    assert steps[-2:] == ["kit destroy", "destroyed"], "the chain ends with the destruction"
    assert "Wilma Witness" in chain(as_, "mette", pair[0])[-1]["detail"]

    rows = ok(as_("mette").get("/api/v1/accountability", params={"study": STUDY}))["rows"]
    by_place = {r["place"]: r for r in rows}
    for r in rows:
        c = r["counts"]
        assert c["released"] == (c["in_stock"] + c["in_transit"] + c["dispensed"] + c["not_administered"]
                                 + c["returned"] + c["withdrawn"] + c["destroyed"] + c["damaged"] + c["missing"])
        assert r["status"] != "discrepancy"
    site = by_place[SITE]["counts"]
    assert (site["released"], site["destroyed"], site["returned"], site["on_hand"]) == (2, 2, 0, 0)
    assert by_place["bench"]["counts"]["in_stock"] == 6
    assert sum(r["counts"]["released"] for r in rows) == len(kit_world.active + kit_world.placebo)
    with db.read() as s:
        assert [r.balanced for r in s.scalars(select(Reconciliation))] == [True]
        assert signatures.verify_all(s)[1] == [], "every signature still covers what was signed"
        trail = s.scalars(select(AuditEvent.action).where(AuditEvent.entity_type == "destruction")
                          .order_by(AuditEvent.seq)).all()
    assert [a for a in trail if a != "signed"] == ["destruction authorised", "destruction recorded"]
