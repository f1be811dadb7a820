"""The blind in what is sent: the same situation for an active and a placebo kit gives byte-identical
blinded messages (kit and shipment numbers, participant numbers and times aside), to the same people;
unblinded messages go to unblinded roles only; and a "no kit" tells supply the arm and tells blinded
people nothing."""
from __future__ import annotations

import re

from sqlalchemy import select
from sqlmodel import Session

from cellbench import clock, sealed, studies
from cellbench.clock import utcnow
from cellbench.models import Kit, KitState, Lot, Notification, Site
from cellbench.supply import quarantine

from ..conftest import actor_of
from ..custody.test_custody import _receive_failing, arrives, dispatched, scan_in
from ..trialworld import enrol, randomisation_list
from .support import EMAILS, give_emails

STUDY = "NCT07290946"
UNBLINDED_PEOPLE = {EMAILS["sara"], EMAILS["anna"]}


def normalised(text: str, numbers: list[str]) -> str:
    for number in numbers:
        text = text.replace(number, "<number>")
    text = re.sub(r"SH-\d{4}-\d{4}", "<shipment>", text)
    return re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} [+-]\d{2}:\d{2}", "<time>", text)


def sent_since(s: Session, before: int) -> list[Notification]:
    return list(s.scalars(select(Notification).where(Notification.id > before).order_by(Notification.id)))


def last_id(s: Session) -> int:
    return max(s.scalars(select(Notification.id)).all() or [0])


def shape(notes: list[Notification], numbers: list[str]) -> list[tuple]:
    return [(n.kind, n.audience, n.recipients, n.site_id, normalised(n.subject, numbers), normalised(n.body, numbers))
            for n in notes]


def test_a_quarantine_of_an_active_or_a_placebo_lot_tells_the_site_the_same_words(db, kit_world):
    give_emails(db)
    with db.write() as s:
        site = s.scalars(select(Site).where(Site.code == "RH-ENT")).one()
        for kit in s.scalars(select(Kit).where(Kit.blinded_lot_id.is_not(None))):
            kit.state, kit.site_id, kit.location = KitState.at_site, site.id, site.name
    told, blinded = {}, {}
    numbers = kit_world.active + kit_world.placebo
    for arm, lot in (("active", kit_world.asc_lot), ("placebo", kit_world.placebo_lot)):
        with Session(db.engine, expire_on_commit=False) as s:  # each quarantine rolled back: the same start
            before = last_id(s)
            quarantine.open_manual(s, actor_of(db, "sara"), s.scalars(select(Lot).where(Lot.number == lot)).one(),
                                   "proportionate", "complaint under review")
            told[arm] = [n for n in sent_since(s, before) if n.audience == "unblinded"]
            blinded[arm] = shape([n for n in sent_since(s, before) if n.audience == "blinded"], numbers)
            s.expunge_all()
            s.rollback()
    assert blinded["active"] == blinded["placebo"] and len(blinded["active"]) == 1
    [(_kind, _aud, recipients, _site, subject, body)] = blinded["active"]
    assert recipients == EMAILS["frida"] and subject == f"{STUDY}: kits at RH-ENT temporarily unavailable"
    assert "temporarily unavailable pending a quality review" in body
    assert not re.search(r"\d+ kits?|KQ-", body), "no count, no quarantine number"
    for notes in told.values():
        [full] = notes
        assert set(full.recipients.split(", ")) == UNBLINDED_PEOPLE
        assert "8 kits" in full.subject and all(k in full.body for k in numbers), "the list is for supply and QA"


def test_no_kit_tells_supply_the_arm_at_once_and_blinded_people_nothing(db, kit_world, as_):
    give_emails(db)
    arms = randomisation_list(db, size=4)
    numbers = {arm: next(n for n, a in sorted(arms.items()) if a == arm) for arm in ("active", "placebo")}
    for n, number in enumerate(numbers.values()):
        enrol(db, number, f"S-{n}")
    told = {}
    for arm, number in numbers.items():
        with db.write() as s:
            before = last_id(s)
            site_id = s.scalars(select(Site.id).where(Site.code == "RH-ENT")).one()
            kit = sealed.assign_kit(s, actor_of(db, "frida"), studies.by_code(s, STUDY), number, site_id,
                                    in_date_on=utcnow().date())
            assert kit is None, "every kit is still at the cell bench"
            told[arm] = sent_since(s, before)
    for arm, [note] in told.items():
        assert (note.kind, note.audience, note.recipients) == ("no_kit", "unblinded", EMAILS["sara"])
        assert f"Arm: {arm} (" in note.body
    other = {"active": "placebo", "placebo": "active"}
    shapes = {arm: normalised(told[arm][0].subject, list(numbers.values())) for arm in told}
    assert shapes["active"] == shapes["placebo"], "the subject names no arm"
    for arm in told:
        assert f"Arm: {other[arm]}" not in told[arm][0].body
    page = as_("frida").get("/notifications")
    assert page.status_code == 200 and "No kit" not in page.text, "the pharmacist is not told"


def test_a_receipt_excursion_of_an_active_or_a_placebo_kit_reads_the_same(db, kit_world, as_, monkeypatch):
    give_emails(db)
    active, placebo = kit_world.pair
    now = utcnow()
    monkeypatch.setattr(clock, "_source", lambda: now)  # both dispatched at one moment: one situation
    shipments = {"active": dispatched(as_, [active]), "placebo": dispatched(as_, [placebo])}
    sent = arrives(monkeypatch, db, shipments["active"])
    for arm, kit in (("active", active), ("placebo", placebo)):
        scan_in(as_, shipments[arm], [kit])
        response = _receive_failing(as_, shipments[arm], sent, "−140 °C reading")
        assert response.status_code == 200, response.text
    with db.read() as s:
        notes = list(s.scalars(select(Notification).order_by(Notification.id)))
    numbers = [active, placebo]
    by_arm = {arm: shape([n for n in notes if number in (n.subject + n.body)], numbers)
              for arm, number in shipments.items()}
    assert by_arm["active"] == by_arm["placebo"]
    kinds = [row[0] for row in by_arm["active"]]
    assert kinds == ["shipment_dispatched", "receipt_excursion"]
    assert all(row[1] == "blinded" for row in by_arm["active"])
    excursion = by_arm["active"][1]
    assert set(excursion[2].split(", ")) == {EMAILS["frida"], *UNBLINDED_PEOPLE}
    assert "the temperature reached -140 °C" in excursion[5] and "held, every kit in it" in excursion[5]
    frida = as_("frida").get("/notifications")
    assert "held on receipt" in frida.text and "the temperature reached -140 °C" in frida.text, \
        "the pharmacist reads the blinded messages of her site, text included"
