"""One field on every page finds a lot, vial, kit (typed or its label scanned), shipment,
participant, donor or deviation by its code and opens its page: within the reader's permissions,
sites and the blind. Whatever the reader may not see reads "Nothing found for …", in the same words
as a code that exists nowhere."""
from __future__ import annotations

from urllib.parse import quote

from sqlalchemy import select

from cellbench import qrpayload
from cellbench.models import Donor, Vial

from .blinding_support import sealed_tripwire
from .conftest import SECRET
from .trialworld import enrol, ship, to_site

BLINDED = ("frida", "ida", "mette")  # pharmacist, investigator, monitor: all linked to RH-ENT
OTHER_SITE = "AUH-ENT"


def find(client, text: str):
    return client.get(f"/search?q={quote(text)}", follow_redirects=False)


def nothing_found(client, text: str) -> str:
    """The answer's page when nothing is found, with the query taken out: to compare two answers."""
    page = find(client, text)
    assert page.status_code == 200, page.text
    assert f"Nothing found for “{text}”." in page.text
    main = page.text.split("<main>", 1)[1].replace(text, "").lower()
    assert not any(word in main for word in ("placebo", "active", "saline", "arm ")), "no arm words"
    return page.text.replace(text, "<query>").replace(quote(text), "<query>")


def first_vial_and_donor(db) -> tuple[str, str]:
    with db.read() as s:
        return s.scalars(select(Vial.code).order_by(Vial.id)).first(), s.scalars(select(Donor.code)).first()


def test_every_page_has_the_find_field_in_its_top_bar(kit_world, as_):
    for who, url in (("frida", "/"), ("anna", "/deviations"), ("sara", "/shipments")):
        page = as_(who).get(url).text
        assert '<form method="get" action="/search" role="search" class="find"' in page
        assert 'name="q"' in page and "Scan or type a code" in page


def test_a_blinded_person_opens_an_active_and_a_placebo_kit_alike_typed_or_scanned(kit_world, as_, db):
    active, placebo = kit_world.pair
    with sealed_tripwire(db) as touched:
        for who in BLINDED:
            client = as_(who)
            label_a, label_p = qrpayload.make_payload(active, SECRET), qrpayload.make_payload(placebo, SECRET)
            for typed_a, typed_p in ((active, placebo), (label_a, label_p),
                                     (active.replace("-", "").lower(), placebo.replace("-", "").lower())):
                went_a, went_p = find(client, typed_a), find(client, typed_p)
                assert (went_a.status_code, went_a.headers["location"]) == (303, f"/kits/{active}")
                assert (went_p.status_code, went_p.headers["location"]) == (303, f"/kits/{placebo}")
            # the page shows the label's code: it carries the kit number and a signature of it
            page_a = client.get(f"/kits/{active}").text.replace(label_a, "<label>").replace(active, "<kit>")
            page_p = client.get(f"/kits/{placebo}").text.replace(label_p, "<label>").replace(placebo, "<kit>")
            assert page_a == page_p, f"{who}: the two kits' pages differ beyond their numbers"
            api_a = client.get(f"/api/v1/search?q={active}").json()
            api_p = client.get(f"/api/v1/search?q={placebo}").json()
            assert api_a["matches"] == [{"kind": "kit", "reference": active, "label": f"Kit {active}",
                                         "href": f"/kits/{active}"}]
            assert str(api_a).replace(active, "<kit>") == str(api_p).replace(placebo, "<kit>")
    assert touched == [], "a blinded person's search reached the sealed compartment"


def test_a_pharmacist_searching_a_lot_vial_donor_or_deviation_number_finds_nothing_as_if_it_did_not_exist(
        demo_trial_world, app):
    from cellbench.demo import DEMO_PASSWORD

    from .conftest import sign_in

    frida = sign_in(app, "pharmacist", DEMO_PASSWORD)
    with demo_trial_world.read() as s:
        from cellbench.models import Deviation, Lot

        lot = s.scalars(select(Lot.number).order_by(Lot.id)).first()
        deviation = s.scalars(select(Deviation.number)).first()
    vial, donor = first_vial_and_donor(demo_trial_world)
    never = nothing_found(frida, "ASC-2099-9999")
    for code in (lot, vial, donor, deviation):
        assert nothing_found(frida, code) == never, code
        api = frida.get(f"/api/v1/search?q={quote(code)}").json()
        assert api["matches"] == [] and api["message"] == f"Nothing found for “{code}”."
    qa = sign_in(app, "qa", DEMO_PASSWORD)
    for code, page in ((lot, f"/lots/{lot}"), (vial, None), (donor, f"/donors/{donor}"),
                       (deviation, f"/deviations/{deviation}")):
        went = find(qa, code)
        assert went.status_code == 303, code
        assert page is None or went.headers["location"] == page
        assert qa.get(went.headers["location"].split("#")[0]).status_code == 200
    supply = sign_in(app, "supply", DEMO_PASSWORD)
    went = find(supply, lot)
    assert went.headers["location"] == f"/lots/{lot}/release", "supply reads a lot's release page"
    assert supply.get(went.headers["location"]).status_code == 200
    assert nothing_found(supply, donor) == nothing_found(supply, "D-99999").replace("D-99999", "<query>")


def test_another_sites_participant_kit_or_shipment_is_nothing_found_like_one_that_never_existed(trial_world, as_, db):
    kit_here, kit_there = trial_world.first_active[0], trial_world.first_placebo[0]
    to_site(db, [kit_here])
    to_site(db, [kit_there], site=OTHER_SITE)
    enrol(db, "R-HERE", "S-HERE")
    enrol(db, "R-THERE", "S-THERE", site=OTHER_SITE)
    ship(db, "SH-HERE-1", [kit_here])
    ship(db, "SH-THERE-1", [kit_there], site=OTHER_SITE)
    for who in BLINDED:
        client = as_(who)
        assert find(client, "S-HERE").headers["location"] == "/participants/NCT07290946/S-HERE"
        assert find(client, "r-here").headers["location"] == "/participants/NCT07290946/S-HERE"
        assert find(client, kit_here).headers["location"] == f"/kits/{kit_here}"
        if who != "ida":  # shipments are read by the pharmacy and the monitor
            assert find(client, "SH-HERE-1").headers["location"] == "/shipments/SH-HERE-1"
        never = nothing_found(client, "S-NEVER")
        for elsewhere in ("S-THERE", "R-THERE", kit_there, "SH-THERE-1"):
            assert nothing_found(client, elsewhere) == never, (who, elsewhere)
    sara = as_("sara")  # supply works for every site
    assert find(sara, "S-THERE").headers["location"] == "/participants/NCT07290946/S-THERE"
    assert find(sara, "SH-THERE-1").headers["location"] == "/shipments/SH-THERE-1"


def test_a_forged_or_damaged_label_is_nothing_found_with_why_the_label_was_refused(kit_world, as_):
    active = kit_world.active[0]
    good = qrpayload.make_payload(active, SECRET)
    forged = good[:-5] + ("AAAAA" if not good.endswith("AAAAA") else "BBBBB")
    page = find(as_("frida"), forged)
    assert page.status_code == 200 and f"Nothing found for “{forged}”." in page.text
    assert "This label was not issued by cellbench or is damaged" in page.text
    assert as_("frida").get(f"/api/v1/search?q={quote(forged)}").json()["label_refusal"]


def test_a_code_naming_two_things_lists_both_and_an_empty_search_asks_for_a_code(trial_world, as_, db):
    enrol(db, "X-1", "S-TWIN")
    enrol(db, "S-TWIN", "S-OTHER")  # one participant's screening number is another's randomisation number
    page = find(as_("frida"), "S-TWIN")
    assert page.status_code == 200
    assert page.text.count('href="/participants/NCT07290946/S-') >= 2
    empty = find(as_("frida"), "  ")
    assert empty.status_code == 200 and "Type or scan a code to find it." in empty.text


def test_a_search_with_a_control_character_or_a_huge_text_finds_nothing_on_either_engine(kit_world, as_):
    sara = as_("sara")
    for typed in ("ASC\x00-2026-0001", "\x1b[2J", "A" * 30_000):
        page = sara.get("/search", params={"q": typed}, follow_redirects=False)
        assert page.status_code == 200 and "Nothing found" in page.text and "\x00" not in page.text
        assert sara.get("/api/v1/search", params={"q": typed}).status_code == 200


def test_search_needs_a_signed_in_person(anonymous):
    assert anonymous.get("/api/v1/search?q=ASC-2026-0001").status_code == 401
    assert anonymous.get("/search?q=ASC-2026-0001", follow_redirects=False).status_code in (303, 401)


def test_who_looks_among_lots_is_who_reads_a_lots_batch_record_or_release_page():
    from cellbench import lots, release, search

    assert frozenset(lots.READERS) | frozenset(release.READERS) == search.LOT_READERS
