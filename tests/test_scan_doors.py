"""Every door that takes a scanned kit code reads it one way (kits.read_code): a signed label code is a
scan; a kit number is accepted only when the request marks it typed by hand and says why, and it is
then recorded as typed by hand in custody and in the audit trail. A bare kit number, which is all a
counterfeit label's QR would hold, is refused and changes nothing. Refusals never give away the right
check character and repeat only a short prefix of what was sent."""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import qrcode
import zxingcpp
from PIL import Image
from sqlalchemy import func, select

from cellbench import identifiers, kits
from cellbench.errors import InvalidInput
from cellbench.models import AuditEvent, CustodyEvent, Kit

from .conftest import SECRET
from .custody.test_custody import dispatched, payload
from .custody.test_positions import tank_and_box
from .pharmacy.test_pharmacy import assign, kits_at_site, randomised, sealed_randomisation_list, visit_url

REASON = "label frosted over"
TYPED = {"manual": True, "manual_reason": REASON}
MEGABYTE = "7" * 1_000_000


@dataclass
class Door:
    """One scan door: the kit it expects, how to knock, and what an accepted typed entry leaves
    (custody action, audit action on the kit; None where the door records nothing)."""

    number: str
    knock: Callable[[dict], object]
    custody: str | None
    audit: str | None


def station(as_, db, world, _monkeypatch) -> Door:
    return Door(world.active[0], lambda body: as_("frida").post("/api/v1/scan", json={"station": "desk", **body}),
                "scanned", "kit scanned")


def receipt(as_, db, world, _monkeypatch) -> Door:
    number = world.active[0]
    shipment = dispatched(as_, [number])
    return Door(number, lambda body: as_("frida").post(f"/api/v1/shipments/{shipment}/receipt-scans", json=body),
                "identified at receipt", "kit scanned at receipt")


def receipt_into_box(as_, db, world, _monkeypatch) -> Door:
    number = world.placebo[0]
    shipment = dispatched(as_, [number])
    box = tank_and_box(as_)
    return Door(number, lambda body: as_("frida").post(f"/api/v1/shipments/{shipment}/receipt-scans",
                                                       json={"box": box, **body}),
                "identified at receipt", "kit scanned at receipt")


def _assigned(as_, db) -> str:
    sealed_randomisation_list(db)
    kits_at_site(db)
    randomised(as_, "SCR-001")
    return assign(as_, "SCR-001").json()["kit_number"]


def dispensing(as_, db, world, _monkeypatch) -> Door:
    number = _assigned(as_, db)
    return Door(number, lambda body: as_("frida").post(f"{visit_url('SCR-001')}/dispense", json=body),
                "dispensed", "kit dispense")


def preparation(as_, db, world, _monkeypatch) -> Door:
    number = _assigned(as_, db)
    dispensed = as_("frida").post(f"{visit_url('SCR-001')}/dispense", json={"code": payload(number)})
    assert dispensed.status_code == 200, dispensed.text
    return Door(number, lambda body: as_("jonas").post("/api/v1/preparation", json=body),
                "preparation started", "kit start preparation")


def returns(as_, db, world, _monkeypatch) -> Door:
    number = _assigned(as_, db)
    return Door(number, lambda body: as_("frida").post("/api/v1/returns", json={"condition": "intact", **body}),
                "returned", "kit return")


def lookup(as_, db, world, _monkeypatch) -> Door:
    """The kit lookup writes nothing; it takes the same codes as the doors that do."""
    return Door(world.active[0], lambda body: as_("sara").post("/api/v1/kits/scan", json=body), None, None)


DOORS = {"scan station": station, "receipt": receipt, "receipt into a box": receipt_into_box,
         "dispensing": dispensing, "preparation start": preparation, "returns": returns, "kit lookup": lookup}


def records(db) -> tuple[int, int]:
    with db.read() as s:
        return (s.scalar(select(func.count()).select_from(AuditEvent)),
                s.scalar(select(func.count()).select_from(CustodyEvent)))


def counterfeit_qr(number: str) -> str:
    """What a scanner reads from a QR printed by someone else, holding only the kit number."""
    image = qrcode.make(number).get_image()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    (barcode,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(buffer.getvalue())))
    return barcode.text


def wrong_check(number: str) -> str:
    return number[:-1] + next(c for c in identifiers.KIT_ALPHABET if c != number[-1])


def refused(response, field: str = "code") -> str:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field, body
    assert len(response.text) < 1000, "a refusal is short, whatever was sent"
    return body["error"]


@pytest.mark.parametrize("door_name", list(DOORS))
def test_every_door_refuses_a_bare_kit_number_and_takes_one_typed_by_hand_with_its_reason(
        door_name, kit_world, as_, db, monkeypatch):
    door = DOORS[door_name](as_, db, kit_world, monkeypatch)
    assert "Scan the kit's label" in refused(door.knock({"code": ""}))  # and the client has signed in
    before = records(db)

    bare = refused(door.knock({"code": door.number}))
    assert "a kit number alone is not a scan" in bare and "typed by hand" in bare
    counterfeit = counterfeit_qr(door.number)
    assert counterfeit == door.number
    assert refused(door.knock({"code": counterfeit})) == bare, "a counterfeit QR is a bare number"
    assert "Label refused" in refused(door.knock({"code": f"CB1:{door.number}"}))
    assert refused(door.knock({"code": door.number, "manual": True}), "manual_reason")
    assert refused(door.knock({"code": door.number, "manual": True, "manual_reason": "x" * 201}), "manual_reason")

    mistyped = refused(door.knock({"code": wrong_check(door.number), **TYPED}))
    assert "check character does not match" in mistyped
    assert door.number not in mistyped and "should be" not in mistyped, "the right check character stays unsaid"

    huge = refused(door.knock({"code": MEGABYTE, **TYPED}))
    assert len(huge) < 300 and "7" * 25 not in huge and "…" in huge
    assert records(db) == before, "nothing refused is recorded"

    accepted = door.knock({"code": door.number.lower(), **TYPED})
    assert accepted.status_code in (200, 201), accepted.text
    if door.custody is None:
        assert records(db) == before, "a lookup records nothing"
        return
    with db.read() as s:
        kit_id = s.scalars(select(Kit.id).where(Kit.number == door.number)).one()
        conditions = s.scalars(select(CustodyEvent.condition).where(CustodyEvent.kit_id == kit_id,
                                                                    CustodyEvent.action == door.custody)).all()
        reasons = s.scalars(select(AuditEvent.reason).where(AuditEvent.entity_id == door.number,
                                                            AuditEvent.action == door.audit)).all()
    assert any(c and f"typed by hand: {REASON}" in c for c in conditions), conditions
    assert any(r and f"typed by hand: {REASON}" in r for r in reasons), reasons


@pytest.mark.parametrize("door_name", ["scan station", "receipt", "dispensing"])
def test_a_signed_label_is_a_scan_and_is_not_recorded_as_typed(door_name, kit_world, as_, db, monkeypatch):
    door = DOORS[door_name](as_, db, kit_world, monkeypatch)
    # the manual mark does not turn a scanner's label code into a typed entry
    accepted = door.knock({"code": payload(door.number), "manual": True})
    assert accepted.status_code == 200, accepted.text
    with db.read() as s:
        texts = [*s.scalars(select(CustodyEvent.condition)), *s.scalars(select(AuditEvent.reason))]
    assert not any(t and "typed by hand" in t for t in texts)


def test_packing_takes_label_scans_only(kit_world, as_, db):
    number = kit_world.active[0]
    shipment = as_("sara").post("/api/v1/shipments", json={"study": "NCT07290946", "site": "RH-ENT"}).json()["number"]
    before = records(db)
    pack = lambda body: as_("sara").post(f"/api/v1/shipments/{shipment}/kits", json=body)  # noqa: E731
    assert "typed by hand here" in refused(pack({"code": number}))
    assert "typed by hand here" in refused(pack({"code": number, **TYPED}))
    assert len(refused(pack({"code": MEGABYTE}))) < 300
    assert records(db) == before
    assert pack({"code": payload(number)}).status_code == 200


def test_the_pages_take_the_typed_by_hand_box_and_refuse_without_it(kit_world, as_, db):
    number = kit_world.placebo[0]
    frida = as_("frida")
    assert 'name="manual"' in frida.get("/scan").text and 'name="manual_reason"' in frida.get("/scan").text
    bare = frida.submit("/scan", {"code": number, "station": "desk"})
    assert bare.status_code == 422 and "a kit number alone is not a scan" in bare.text
    huge = frida.submit("/scan", {"code": MEGABYTE, "station": "desk"})
    assert huge.status_code == 422 and len(huge.text) < 100_000
    typed = frida.submit("/scan", {"code": number, "station": "desk", "manual": "on", "manual_reason": REASON})
    assert typed.status_code == 200 and "verdict accepted" in typed.text
    with db.read() as s:
        (event,) = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "scanned")).all()
    assert event.condition == f"typed by hand: {REASON}"


def test_refusals_read_the_same_for_both_arms(kit_world, as_):
    active, placebo = kit_world.pair
    for body in ({}, {"manual": True}, TYPED):
        words = []
        for number in (active, placebo):
            for code in (number, wrong_check(number)):
                answer = as_("frida").post("/api/v1/scan", json={"code": code, **body})
                words.append(answer.text.replace(code, "<code>").replace(number, "<kit>"))
        assert words[:2] == words[2:], body


def test_the_reader_itself_names_the_field_and_keeps_refusals_short():
    number = identifiers.random_kit_number()
    assert kits.read_code(payload(number), SECRET) == kits.KitCode(number)
    assert kits.read_code(number, SECRET, manual="on", reason="  smudged \n label ").method == \
        "typed by hand: smudged label"
    with pytest.raises(InvalidInput) as error:
        kits.read_code("K" * 5000, SECRET, manual=True, reason=REASON)
    assert error.value.field == "code" and len(error.value.message) < 300
    with pytest.raises(ValueError) as mistyped:
        identifiers.parse_kit_number(wrong_check(number))
    assert "should be" not in str(mistyped.value)
    with pytest.raises(ValueError) as long_one:
        identifiers.parse_kit_number("ZZ" * 500_000)
    assert len(str(long_one.value)) < 200
