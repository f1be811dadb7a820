"""Users tied to sites and studies: Frida, Jonas, Ida and Mette work at RH-ENT (the worlds link them
there); AUH-ENT, the second site of NCT07290946, is somebody else's. Acting there is refused naming
the field; reading there answers as if nothing were there."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from cellbench import accountability, custody, kits, pharmacy, qrpayload, studies, users
from cellbench.clock import utcnow
from cellbench.errors import Forbidden, InvalidInput, NotFound
from cellbench.models import AuditEvent, Destruction, Participant, Shipment, Site
from cellbench.pagination import Ask

from ..bedside_support import scanned_at_bedside
from ..conftest import PASSWORD, SECRET, actor_of
from ..pharmacy.test_pharmacy import (
    assign,
    kits_at_site,
    payload,
    randomised,
    sealed_randomisation_list,
    visit_url,
)
from ..trialworld import STUDY, enrol, kit_row, ship, to_site

OTHER = "AUH-ENT"


@pytest.fixture
def other_site(trial_world, db):
    """A participant enrolled and two kits in stock at AUH-ENT, and a shipment to it."""
    kit_numbers = trial_world.first_active[:1] + trial_world.first_placebo[:1]
    to_site(db, kit_numbers, site=OTHER)
    ship(db, "SH-AUH-1", kit_numbers, site=OTHER)
    enrol(db, "X-001", "AAR-001", site=OTHER)
    with db.write() as s:
        s.get(Participant, s.scalars(select(Participant.id).where(Participant.screening_number == "AAR-001")).one()
              ).randomisation_number = None
    return kit_numbers


def test_the_site_people_carry_their_sites_and_studies_and_the_global_roles_none(trial_world, db):
    frida, sara = actor_of(db, "frida"), actor_of(db, "sara")
    assert frida.sites is not None and len(frida.sites) == 1 and frida.studies is not None
    assert sara.sites is None and sara.studies is None


@pytest.mark.parametrize("kit_index", [0, 1])  # the same refusal for both arms
def test_the_pharmacist_may_not_damage_store_or_return_another_sites_kits(trial_world, other_site, db, kit_index):
    number = other_site[kit_index]
    frida = actor_of(db, "frida")
    with db.write() as s, pytest.raises(Forbidden) as refused:
        custody.report_damaged(s, frida, kit_row(db, number), "dropped")
    assert refused.value.field == "code" and "do not work for" in refused.value.message
    with db.write() as s, pytest.raises(Forbidden) as refused:
        pharmacy.return_kit(s, frida, qrpayload.make_payload(number, SECRET), SECRET, "intact")
    assert refused.value.field == "code"
    assert kit_row(db, number).state == "at_site", "nothing changed"


def test_the_pharmacist_may_not_receive_another_sites_shipment(trial_world, other_site, db):
    frida = actor_of(db, "frida")
    with db.write() as s:
        shipment = s.scalars(select(Shipment).where(Shipment.number == "SH-AUH-1")).one()
        shipment.state = "in_transit"
    with db.write() as s, pytest.raises(NotFound) as missing:
        custody.receipt_scan(s, frida, "SH-AUH-1", qrpayload.make_payload(other_site[0], SECRET), SECRET)
    assert missing.value.field == "shipment" and missing.value.message == "No shipment 'SH-AUH-1'."
    with db.write() as s, pytest.raises(Forbidden) as refused:
        custody.complete_receipt(s, frida, custody.by_number(s, "SH-AUH-1"), seal_intact=True,
                                 logger=custody.logger_record("manual", minimum=-190, maximum=-170))
    assert refused.value.field == "shipment"


def test_the_investigator_may_not_enrol_or_randomise_at_another_site(trial_world, other_site, db):
    ida = actor_of(db, "ida")
    with db.write() as s, pytest.raises(Forbidden) as refused:
        pharmacy.enrol(s, ida, studies.by_code(s, STUDY), site_code=OTHER, screening_number="AAR-009")
    assert refused.value.field == "site"
    with db.write() as s, pytest.raises(Forbidden) as refused:
        pharmacy.randomise(s, ida, pharmacy.participant_by_ref(s, STUDY, "AAR-001"))
    assert refused.value.field == "participant"


def test_the_site_people_read_their_own_sites_only(trial_world, other_site, db):
    frida, mette, sara = actor_of(db, "frida"), actor_of(db, "mette"), actor_of(db, "sara")
    with db.read() as s:
        assert "AAR-001" not in [p.screening_number for p, _s, _site in pharmacy.participants(s, reader=frida)]
        assert "AAR-001" in [p.screening_number for p, _s, _site in pharmacy.participants(s, reader=sara)]
        with pytest.raises(NotFound) as missing:
            pharmacy.participant_by_ref(s, STUDY, "AAR-001", reader=mette)
        assert missing.value.message == "No participant AAR-001 in NCT07290946."
        shown = kits.kits(s, Ask(None, SECRET, 1000), reader=mette).rows
        assert not set(other_site) & {k.number for k in shown}
        with pytest.raises(NotFound):
            kits.by_number(s, other_site[0], reader=frida)
        assert [r.number for r in custody.shipments(s, reader=mette)] == []
        places = {row.place_key for row in accountability.rows(s, studies.by_code(s, STUDY), reader=mette)}
        assert OTHER not in places and OTHER in {row.place_key for row in
                                                 accountability.rows(s, studies.by_code(s, STUDY), reader=sara)}


def test_a_cross_site_kit_page_answers_404_like_a_missing_one(trial_world, other_site, as_):
    seen = as_("mette").get(f"/api/v1/kits/{other_site[0]}")
    assert seen.status_code == 404 and seen.json()["field"] == "number"
    assert as_("sara").get(f"/api/v1/kits/{other_site[0]}").status_code == 200


def test_a_site_role_with_no_link_acts_on_nothing(trial_world, other_site, db):
    with db.write() as s:
        users.create_user(s, users.cli_actor(), "nora", "Nora Nowhere", PASSWORD, ["pharmacist"])
    nora = actor_of(db, "nora")
    assert nora.sites == frozenset() and nora.studies == frozenset()
    with db.read() as s:
        assert pharmacy.participants(s, reader=nora) == []
        assert kits.kits(s, Ask(None, SECRET), reader=nora).rows == []


def test_the_administrator_links_and_unlinks_with_an_audit_event_each(people, trial_world, db):
    adam = actor_of(db, "adam")
    with db.write() as s:
        frida = users.by_username(s, "frida")
        users.link(s, adam, frida, site=OTHER)
    with db.read() as s:
        assert users.links_of(s, users.by_username(s, "frida").id)[0] == [OTHER, "RH-ENT"]
    with db.write() as s, pytest.raises(InvalidInput) as refused:
        users.unlink(s, adam, users.by_username(s, "frida"), site=OTHER)
    assert refused.value.field == "reason"
    with db.write() as s:
        users.unlink(s, adam, users.by_username(s, "frida"), site=OTHER, reason="moved back to Copenhagen")
    with db.read() as s:
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.entity_id == "frida",
                                                         AuditEvent.field == "sites").order_by(AuditEvent.seq)))
        assert [(e.action, e.user_name) for e in events][-2:] == [("site linked", "Adam Admin"),
                                                                   ("site unlinked", "Adam Admin")]
        assert events[-1].reason == "moved back to Copenhagen"
    with db.write() as s, pytest.raises(Forbidden):
        users.link(s, actor_of(db, "frida"), users.by_username(s, "ida"), site=OTHER)
    with db.write() as s, pytest.raises(InvalidInput) as refused:
        users.link(s, adam, users.by_username(s, "sara"), site=OTHER)
    assert refused.value.field == "site", "supply is global"


# --- every site role, moved to the other site, is refused at this one ------------------------------------------
# The visit is at RH-ENT; one person at a time is linked to AUH-ENT instead (as when someone changes
# hospital): their part of the visit is refused naming the place, and nothing is recorded.


def works_at(db, username: str, site: str) -> None:
    """Link the user to `site` only (the administrator's links, audited)."""
    adam = actor_of(db, "adam")
    with db.write() as s:
        user = users.by_username(s, username)
        have = users.links_of(s, user.id)[0]
        if site not in have:
            users.link(s, adam, user, site=site)
        for code in set(have) - {site}:
            users.unlink(s, adam, user, site=code, reason=f"moved to {site}")


def refused_elsewhere(db, username: str, attempt) -> None:
    """`attempt()` by `username` working at AUH-ENT only is refused (403 naming the site or the
    participant, the words of users.scope) and leaves the trail as it was; then they move back."""
    works_at(db, username, OTHER)
    before = len(all_events(db))
    answer = attempt()
    assert answer.status_code in (403, 404), answer.text
    body = answer.json()
    assert body["field"] in ("site", "participant", "code", "visit"), body
    assert "do not work for" in body["error"] or body["error"].startswith("No "), body
    assert len(all_events(db)) == before, "a refusal records nothing"
    works_at(db, username, "RH-ENT")


def all_events(db):
    """The trail's events but the users' own (signing in is recorded on the user)."""
    with db.read() as s:
        return list(s.scalars(select(AuditEvent.seq).where(AuditEvent.entity_type != "user")))


@pytest.fixture
def pharmacy_site(kit_world, db):
    """kit_world's released kits at RH-ENT and a sealed randomisation list (as tests/pharmacy's `site`)."""
    sealed_randomisation_list(db)
    kits_at_site(db)
    return kit_world


def test_dispense_prepare_administer_and_unblind_are_refused_to_each_site_role_of_another_site(pharmacy_site, as_,
                                                                                             db):
    number = randomised(as_, "SCR-001")["randomisation_number"]
    visit = visit_url("SCR-001")
    refused_elsewhere(db, "frida", lambda: as_("frida").post(f"{visit}/assign"))
    kit = assign(as_, "SCR-001").json()["kit_number"]
    refused_elsewhere(db, "frida", lambda: as_("frida").post(f"{visit}/dispense", json={"code": payload(kit)}))
    assert as_("frida").post(f"{visit}/dispense", json={"code": payload(kit)}).status_code == 200
    refused_elsewhere(db, "jonas", lambda: as_("jonas").post("/api/v1/preparation", json={"code": payload(kit)}))
    assert as_("jonas").post("/api/v1/preparation", json={"code": payload(kit)}).status_code == 200
    refused_elsewhere(db, "ida", lambda: as_("ida").post(f"{visit}/administrations",
                                                          json={"gland": "left", "volume_ml": 1.0}))
    refused_elsewhere(db, "ida", lambda: as_("ida").post("/api/v1/unblindings", json={
        "study": STUDY, "participant": number, "reason_code": "serious_adverse_event", "reason": "SAE",
        "password": PASSWORD}))
    refused_elsewhere(db, "mette", lambda: as_("mette").get(visit))
    scanned_at_bedside(as_("ida"), visit, doses=(1,))
    assert as_("ida").post(f"{visit}/administrations", json={"gland": "left", "volume_ml": 1.0}).status_code == 201


def test_the_storage_and_destruction_lists_hold_the_readers_sites_only(trial_world, other_site, as_, db):
    sara, frida = as_("sara"), as_("frida")
    for site, code in (("", "CB-T1"), ("RH-ENT", "RH-F1"), (OTHER, "AUH-F1")):
        assert sara.post("/api/v1/storage-locations", json={"site": site, "code": code, "name": f"Tank {code}",
                                                             "kind": "tank"}).status_code == 201
    assert [row["code"] for row in frida.get("/api/v1/storage-locations").json()] == ["RH-F1"]
    assert frida.get("/api/v1/storage-locations", params={"site": OTHER}).json() == []
    assert frida.get("/api/v1/storage-locations", params={"site": "bench"}).json() == []
    assert {row["code"] for row in sara.get("/api/v1/storage-locations").json()} == {"CB-T1", "RH-F1", "AUH-F1"}
    page = frida.get("/storage").text
    assert "RH-F1" in page or "Tank RH-F1" in page
    assert "AUH-F1" not in page and "Tank CB-T1" not in page and f'<option value="{OTHER}"' not in page
    with db.write() as s:  # setup: an authorised destruction at each site (the flow is tested in accountability)
        for code, place in (("DS-RH-1", "RH-ENT"), ("DS-AUH-1", OTHER)):
            s.add(Destruction(number=code, study_id=studies.by_code(s, STUDY).id, kit_count=1,
                              site_id=s.scalars(select(Site.id).where(Site.code == place)).one(),
                              authorised_by=users.by_username(s, "sara").id, authorised_at=utcnow()))
    number = "DS-AUH-1"
    assert {d["number"] for d in sara.get("/api/v1/destructions").json()["destructions"]} == {"DS-RH-1", number}
    assert [d["number"] for d in frida.get("/api/v1/destructions").json()["destructions"]] == ["DS-RH-1"]
    assert as_("mette").get(f"/api/v1/destructions/{number}").status_code == 404
    assert number not in frida.get("/destructions").text
    # its certificate and its record read as missing too, on the page and in the API
    assert frida.get(f"/destructions/{number}/certificate.pdf").status_code == 404
    assert frida.get(f"/api/v1/destructions/{number}/certificate.pdf").status_code == 404
    assert frida.get("/api/v1/destructions/DS-RH-1/certificate.pdf").status_code != 404  # her own site's is found



def test_the_participant_pages_offer_only_the_studies_the_investigator_works_in(trial_world, db, as_):
    with db.write() as s:
        left = next(st.code for st in studies.all_studies(s) if st.code != STUDY)
        users.unlink(s, users.cli_actor(), users.by_username(s, "ida"), study=left, reason="moved to one trial")
    ida = actor_of(db, "ida")
    with db.read() as s:
        others = [st.code for st in studies.all_studies(s) if st.id not in (ida.studies or set())]
        mine = [st.code for st in studies.all_studies(s) if st.id in (ida.studies or set())]
    assert mine and others == [left], "Ida works in one study of the two"
    page = as_("ida").get("/participants").text
    assert all(f'<option value="{code}"' in page for code in mine)
    assert not any(f'<option value="{code}"' in page for code in others)
