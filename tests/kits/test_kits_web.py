"""Kit, blinded-lot and study pages and API: what blinded and unblinded people read about kits, the
label QR decoded for real and scanned back, refusals that name the code, and the blind holding."""
from __future__ import annotations

import html
import io
import re

import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import select

from cellbench import audit, kits, qrpayload
from cellbench.errors import Forbidden, InvalidInput
from cellbench.identifiers import KIT_ALPHABET, format_kit_number, kit_check_character, new_kit_numbers
from cellbench.models import Kit, Visibility
from cellbench.statemachine import Machine

from ..blinding_support import chains_into, import_graph
from ..conftest import SECRET, actor_of

BLINDED = ("frida", "ida", "mette")
UNBLINDED_READERS = ("sara", "anna", "peter")


def _decoded_from_served_png(client, number: str) -> str:
    response = client.get(f"/kits/{number}/qr.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    (barcode,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(response.content)))
    return barcode.text


def _other_char(char: str) -> str:
    return next(c for c in KIT_ALPHABET if c != char)


def _unknown_kit_number(kit_world) -> str:
    (number,) = new_kit_numbers(1, set(kit_world.active + kit_world.placebo))
    return number


def _move(db, who: str, number: str, name: str, reason: str | None = None) -> None:
    with db.write() as s:
        kit = s.scalars(select(Kit).where(Kit.number == number)).one()
        kits.move(s, actor_of(db, who), kit, name, reason=reason)


def _history_times(client, number: str) -> list[str]:
    return re.findall(r'<td class="nowrap">([^<]+)</td>', client.get(f"/kits/{number}").text)


def _same_situation_pair(kit_world, client) -> tuple[str, str]:
    """An active and a placebo kit whose histories were written in the same second. Kits packaged in
    one run share their history's times to the second unless the run straddled a second."""
    for active in kit_world.active:
        for placebo in kit_world.placebo:
            if _history_times(client, active) == _history_times(client, placebo):
                return active, placebo
    raise AssertionError("no active and placebo kit share their history times")


# --- the label QR, decoded for real and scanned back -----------------------------------------


def test_the_served_qr_image_decodes_to_the_signed_label_code_and_scanning_it_opens_that_kit(kit_world, as_):
    client = as_("frida")
    for number in kit_world.pair:
        text = _decoded_from_served_png(client, number)
        assert text == qrpayload.make_payload(number, SECRET) and number in text

        by_form = client.submit("/kits/scan", {"code": text})
        assert by_form.status_code == 303 and by_form.headers["location"] == f"/kits/{number}"
        by_link = client.get("/kits/scan", params={"code": text + "\n"}, follow_redirects=False)
        assert by_link.status_code == 303 and by_link.headers["location"] == f"/kits/{number}"
        landed = client.get(by_form.headers["location"])
        assert landed.status_code == 200 and f"<h1>Kit {number}" in landed.text

        answer = client.post("/api/v1/kits/scan", json={"code": text})
        assert answer.status_code == 200 and answer.json()["kit_number"] == number


def test_a_kit_number_typed_by_hand_opens_the_kit_whatever_its_case_and_hyphens(kit_world, as_):
    number = kit_world.placebo[0]
    typed = number.replace("-", " ").lower()
    by_hand = {"manual": "on", "manual_reason": "the label will not scan"}
    response = as_("ida").submit("/kits/scan", {"code": typed, **by_hand})
    assert response.status_code == 303 and response.headers["location"] == f"/kits/{number}"
    answer = as_("ida").post("/api/v1/kits/scan", json={"code": typed, "manual": True,
                                                      "manual_reason": "the label will not scan"})
    assert answer.json()["kit_number"] == number
    bare = as_("ida").submit("/kits/scan", {"code": typed})
    assert bare.status_code == 422 and "a kit number alone is not a scan" in html.unescape(bare.text)


def test_forged_altered_mistyped_and_unknown_codes_are_refused_in_large_type_naming_the_code(kit_world, as_):
    number = kit_world.active[0]
    genuine = qrpayload.make_payload(number, SECRET)
    one_char_changed = genuine.replace(number, _other_char(number[0]) + number[1:], 1)
    body = _other_char(number[0]) + number[1:4] + number[5:9]
    rechecked = format_kit_number(body + kit_check_character(body))
    unknown = _unknown_kit_number(kit_world)
    cases = {
        "a label signed with another key": (qrpayload.make_payload(number, "another-secret-key-cellbench-never-issued"),
                                            "signature does not match"),
        "one kit-number character changed": (one_char_changed, "check character"),
        "another valid kit number put in": (genuine.replace(number, rechecked, 1), "signature does not match"),
        "a cut-off label": (genuine[:-5], "incomplete or damaged"),
        "a bare kit number": (number, "a kit number alone is not a scan"),
        "a genuine label of an unknown kit": (qrpayload.make_payload(unknown, SECRET),
                                              f"No kit {unknown} in cellbench"),
        "nothing": ("   ", "Scan the kit's label, or tick 'typed by hand'"),
    }
    client = as_("frida")
    for case, (code, words) in cases.items():
        api = client.post("/api/v1/kits/scan", json={"code": code})
        assert api.status_code == 422, (case, api.text)
        assert api.json()["field"] == "code" and words in api.json()["error"], (case, api.json())

        page = client.submit("/kits/scan", {"code": code})
        assert page.status_code == 422, case
        text = html.unescape(page.text)
        assert 'class="verdict refused"' in text and '<p class="big">Refused</p>' in text, case
        assert words in text and "(field:" not in text, case  # the field is marked, not named by its key
        assert re.search(r'<input name="code"[^>]*autofocus[^>]*aria-invalid="true"', page.text, re.S), \
            f"{case}: the scan field is marked and ready for the next scan"


def test_the_scan_field_is_at_the_top_of_the_kit_list_and_focused_on_load(kit_world, as_):
    page = as_("frida").get("/kits").text
    assert page.index('name="code"') < page.index("<table"), "the field comes before the list"
    assert re.search(r'<input name="code"[^>]*autofocus', page) and "Scan a kit label" in page


# --- the blind holds ----------------------------------------------------------------------------


def test_blinded_people_read_the_same_kit_page_and_api_answer_for_an_active_and_a_placebo_kit(kit_world, as_):
    for who in BLINDED:
        client = as_(who)
        active, placebo = _same_situation_pair(kit_world, client)

        def neutral(text: str, number: str) -> str:
            return text.replace(qrpayload.make_payload(number, SECRET), "<PAYLOAD>").replace(number, "<KIT>")

        pages = [neutral(client.get(f"/kits/{n}").text, n) for n in (active, placebo)]
        assert pages[0] == pages[1], who
        answers = [neutral(client.get(f"/api/v1/kits/{n}").text, n) for n in (active, placebo)]
        assert answers[0] == answers[1], who
        scans = [neutral(client.post("/api/v1/kits/scan", json={"code": qrpayload.make_payload(n, SECRET)}).text, n)
                 for n in (active, placebo)]
        assert scans[0] == scans[1] == answers[0], who
        assert "Released" in pages[0] and "/supply/kits/" not in pages[0]


def test_quarantined_kits_read_temporarily_unavailable_the_same_for_both_arms(kit_world, as_, db):
    for number in kit_world.pair:
        _move(db, "sara", number, "quarantine", reason=kits.GENERIC_QUARANTINE_REASON)
    client = as_("frida")
    active, placebo = _same_situation_pair(kit_world, client)
    pages = [client.get(f"/kits/{n}").text.replace(qrpayload.make_payload(n, SECRET), "<P>").replace(n, "<K>")
             for n in (active, placebo)]
    assert pages[0] == pages[1]
    assert '<span class="tag big">Temporarily unavailable</span>' in pages[0]
    listed = client.get("/api/v1/kits", params={"state": "quarantined"}).json()
    assert {k["kit_number"] for k in listed["kits"]} == {active, placebo}
    assert {k["state_label"] for k in listed["kits"]} == {"Temporarily unavailable"}


def test_blinded_viewers_never_see_an_unblinded_event_in_a_kit_history(kit_world, as_, db):
    number = kit_world.active[0]
    with db.write() as s:
        audit.record(s, actor_of(db, "sara"), "kit contents checked", "kit", number, field="arm", new="active",
                     visibility=Visibility.unblinded)
    for who in BLINDED:
        page, api = as_(who).get(f"/kits/{number}").text, as_(who).get(f"/api/v1/kits/{number}").json()
        assert "kit contents checked" not in page and "kit contents checked" not in str(api), who
        assert [e["action"] for e in api["history"]] == ["kit number issued", "kit package", "kit release"], who
    assert "kit contents checked" in as_("sara").get(f"/kits/{number}").text, "unblinded viewers see it"
    assert "kit contents checked" in str(as_("sara").get(f"/api/v1/kits/{number}").json()["history"])


def test_the_unblinded_view_link_follows_the_viewers_role_never_the_kit(kit_world, as_):
    for number in kit_world.pair:
        for who in UNBLINDED_READERS:
            assert f'href="/supply/kits/{number}"' in as_(who).get(f"/kits/{number}").text, (who, number)
        for who in (*BLINDED, "jonas"):
            assert "/supply/kits/" not in as_(who).get(f"/kits/{number}").text, (who, number)


def test_the_kit_modules_cannot_reach_the_sealed_compartment():
    """Follow every import (top level or inside a function) from the kit and study pages and API:
    none reaches the sealed compartment or a module built on it (supply, the demo). That no module
    but sealed names a Sealed model is test_sealed's."""
    starts = ["cellbench.web.kits", "cellbench.api.kits", "cellbench.web.studies", "cellbench.api.studies"]
    assert not chains_into(starts, {"cellbench.sealed", "cellbench.supply", "cellbench.demo"})
    assert {"cellbench.kits", "cellbench.studies"} <= import_graph().reachable("cellbench.web.kits") | \
        import_graph().reachable("cellbench.web.studies"), "the follower follows"


# --- the kit lifecycle -------------------------------------------------------------------------


def test_the_kit_lifecycle_is_one_table_that_moves_and_pages_share(kit_world, db):
    assert isinstance(kits.MACHINE, Machine) and kits.MACHINE.table is kits.MOVES
    assert not kits.LEAVES_STORAGE - kits.MOVES.keys(), "only moves of the table leave storage"
    with db.read() as s:
        active, placebo = (s.scalars(select(Kit).where(Kit.number == kit_world.active[0])).one(),
                           s.scalars(select(Kit).where(Kit.number == kit_world.placebo[0])).one())
        offered = kits.allowed_moves(active, actor_of(db, "sara"))
        assert "ship" in offered and "dispense" not in offered
        assert offered == kits.allowed_moves(placebo, actor_of(db, "sara")), "the same table for both arms"
    with pytest.raises(InvalidInput) as refused:
        _move(db, "frida", kit_world.active[0], "dispense")
    assert refused.value.message == f"Kit {kit_world.active[0]} is released; it cannot be moved by 'dispense' now."
    with pytest.raises(Forbidden):
        _move(db, "frida", kit_world.active[0], "ship")


# --- who may read ----------------------------------------------------------------------------


def test_an_administrator_gets_403_everywhere_here_and_lab_roles_read_studies_but_not_kits(kit_world, as_):
    number = kit_world.active[0]
    kit_urls = ["/kits", f"/kits/{number}", f"/kits/{number}/qr.png", f"/kits/scan?code={number}",
                "/blinded-lots/XB26-001", "/api/v1/kits", f"/api/v1/kits/{number}", "/api/v1/blinded-lots/XB26-001"]
    study_urls = ["/studies", "/studies/NCT07290946", "/api/v1/studies", "/api/v1/studies/NCT07290946"]
    adam, olivia = as_("adam"), as_("olivia")
    for url in kit_urls + study_urls:
        assert adam.get(url, follow_redirects=False).status_code == 403, url
    assert adam.post("/api/v1/kits/scan", json={"code": number}).status_code == 403
    for url in kit_urls:
        assert olivia.get(url, follow_redirects=False).status_code == 403, url
    for url in study_urls:
        assert olivia.get(url).status_code == 200, url


def test_signed_out_visitors_are_sent_to_sign_in(kit_world, anonymous):
    response = anonymous.get(f"/kits/{kit_world.active[0]}", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert anonymous.get("/api/v1/kits").status_code == 401


# --- the list, the kit page, the blinded lot --------------------------------------------------


def test_the_kit_list_filters_by_study_blinded_lot_and_state_in_kit_number_order_and_pages(kit_world, as_, db,
                                                                                         monkeypatch):
    every = sorted(kit_world.active + kit_world.placebo)
    client = as_("mette")
    page = client.get("/kits", params={"study": "NCT07290946", "blinded_lot": "XB26-001", "state": "released"})
    assert page.status_code == 200
    assert re.findall(r'<a href="/kits/([A-Z0-9-]+)">', page.text) == every
    # the blinded lot is typed or scanned, and kept: the page lists no lots (ten years make thousands)
    assert '<input name="blinded_lot" value="XB26-001"' in page.text and "<option value=\"XB26" not in page.text

    from cellbench.web import kits as kit_pages
    monkeypatch.setattr(kit_pages, "PAGE_SIZE", 3)
    first = client.get("/kits", params={"study": "NCT07290946"}).text
    second = client.get(html.unescape(re.search(r'href="([^"]+)" rel="next"', first).group(1))).text
    assert re.findall(r'<a href="/kits/([A-Z0-9-]+)">', second) == every[3:6]
    assert 'rel="next"' in second and 'rel="first"' in second and "study=NCT07290946" in second

    api = client.get("/api/v1/kits", params={"study": "NCT07290946", "limit": 3}).json()
    assert [k["kit_number"] for k in api["kits"]] == every[:3] and api["next"]
    api = client.get("/api/v1/kits", params={"study": "NCT07290946", "limit": 3, "after": api["next"]}).json()
    assert [k["kit_number"] for k in api["kits"]] == every[3:6]
    assert client.get("/api/v1/kits", params={"study": "NCT06805448"}).json() == {"kits": [], "next": None}

    _move(db, "sara", every[0], "quarantine", reason=kits.GENERIC_QUARANTINE_REASON)
    held = client.get("/kits", params={"state": "quarantined"}).text
    assert re.findall(r'<a href="/kits/([A-Z0-9-]+)">', held) == [every[0]] and "Temporarily unavailable" in held


def test_unknown_filters_are_refused_naming_the_field(kit_world, as_):
    client = as_("frida")
    for params, _field in (({"state": "eaten"}, "state"), ({"study": "NCT00000000"}, "study"),
                           ({"blinded_lot": "XB99-999"}, "blinded_lot"), ({"after": "zero"}, "after")):
        page = client.get("/kits", params=params)
        assert page.status_code in (400, 404, 422) and 'class="error"' in page.text, params
    assert client.get("/api/v1/kits", params={"state": "eaten"}).json()["field"] == "state"
    assert client.get("/api/v1/kits", params={"study": "NCT00000000"}).json()["field"] == "study"
    assert client.get("/api/v1/kits", params={"limit": 0}).json()["field"] == "limit"
    missing = client.get("/api/v1/kits/XXXX-XXXX-X")
    assert missing.status_code == 422 and missing.json()["field"] == "number"


def test_the_kit_page_shows_the_kit_its_label_code_and_its_history(kit_world, as_):
    number = kit_world.placebo[0]
    page = as_("frida").get(f"/kits/{number}").text
    for words in (number, "NCT07290946", "XB26-001", "Released", "Cell bench", f'src="/kits/{number}/qr.png"',
                  qrpayload.make_payload(number, SECRET), "kit number issued", "kit package", "kit release",
                  "Sara Supply", "packaging run PR-2026-0001, blinded lot XB26-001"):
        assert words in page, words
    api = as_("frida").get(f"/api/v1/kits/{number}").json()
    assert {k: api[k] for k in ("kit_number", "study", "blinded_lot", "state", "state_label", "location")} == {
        "kit_number": number, "study": "NCT07290946", "blinded_lot": "XB26-001", "state": "released",
        "state_label": "Released", "location": "Cell bench"}
    assert api["history"][0]["who"] == "Sara Supply"
    assert all("." not in event["at"] for event in api["history"]), "whole seconds, as the page shows them"


def test_the_blinded_lot_page_shows_its_code_study_expiry_and_counts_and_no_arm(kit_world, as_, db):
    _move(db, "sara", kit_world.active[0], "quarantine", reason=kits.GENERIC_QUARANTINE_REASON)
    for who in ("frida", "sara"):
        page = as_(who).get("/blinded-lots/XB26-001").text
        api = as_(who).get("/api/v1/blinded-lots/xb26-001").json()
        assert api["code"] == "XB26-001" and api["study"] == "NCT07290946" and api["kits"] == 8
        assert api["kits_by_state"] == {"released": 7, "quarantined": 1}
        assert api["expiry"] in page and "NCT07290946" in page and "Temporarily unavailable" in page
        for arm_word in ("active", "placebo", kit_world.asc_lot, kit_world.placebo_lot):
            assert arm_word not in page.lower() and arm_word not in str(api).lower(), (who, arm_word)


# --- studies ---------------------------------------------------------------------------------


def test_the_study_page_gives_the_protocol_particulars_blinded_lots_and_the_label_key(kit_world, as_):
    page = html.unescape(as_("ida").get("/studies/NCT07290946").text)
    for words in ("2025-522559-25-00", "Repeated Mesenchymal Stem Cell Therapy", "Christian von Buchwald",
                  "Joachim Hansen, MD", "+45 23 31 25 52", "Allogeneic adipose-derived mesenchymal stem cells",
                  "Placebo: isotonic saline", "Allocation ratio 1:1", "120 days", "± 14 days",
                  "left submandibular gland, right submandibular gland", "da, en", "RH-ENT",
                  "XB26-001", "Released: 8", qrpayload.public_key_text(SECRET).strip()):
        assert words in page, words
    listed = as_("ida").get("/studies").text
    assert "NCT07290946" in listed and "NCT06805448" in listed

    api = as_("ida").get("/api/v1/studies/NCT07290946").json()
    assert api["eu_ct_number"] == "2025-522559-25-00" and api["ratio"] == "1:1"
    assert api["schedule"] == {"treatments": 2, "interval_days": 120, "window_days": 14, "doses_per_treatment": 2,
                               "dose_sites": ["left submandibular gland", "right submandibular gland"]}
    assert {s["code"]: s["investigator"] for s in api["sites"]}["RH-ENT"] == "Christian von Buchwald"
    assert api["blinded_lots"] == [{"code": "XB26-001", "expiry": api["blinded_lots"][0]["expiry"], "kits": 8,
                                    "kits_by_state": {"released": 8}}]
    assert qrpayload.load_public_key(api["label_public_key"]).public_bytes_raw() == \
        qrpayload.public_key_bytes(SECRET), "the printed key checks the labels"
    assert [s["code"] for s in as_("ida").get("/api/v1/studies").json()] == ["NCT06805448", "NCT07290946"]


@pytest.mark.parametrize("url", ["/studies/NCT99999999", "/api/v1/studies/NCT99999999"])
def test_an_unknown_study_is_not_found(kit_world, as_, url):
    assert as_("mette").get(url).status_code == 404


def test_a_mistyped_kit_number_is_named_once_in_one_sentence(kit_world, as_, db):
    """identifiers.parse_kit_number's reason already names the number: the refusal says it once."""
    from cellbench import kits as kits_module
    from cellbench.errors import InvalidInput

    number = kit_world.active[0]
    cases = {
        number[:7]: f"Kit number '{number[:7]}' has 6 characters; a kit number has 9",
        number[:-1] + _other_char(number[-1]):
            f"Kit number {number[:-1] + _other_char(number[-1])}: the check character does not match",
        number[:4] + "-O" + number[6:]: f"Kit number '{number[:4]}-O{number[6:]}': character 'O' is not valid",
    }
    for typed, opening in cases.items():
        with db.read() as s, pytest.raises(InvalidInput) as refused:
            kits_module.by_number(s, typed)
        message = refused.value.message
        assert message.startswith(opening) and message.endswith("."), message
        assert message.count(typed) == 1, message
        api = as_("frida").post("/api/v1/kits/scan", json={"code": typed, "manual": True, "manual_reason": "smudged"})
        assert api.status_code == 422 and api.json()["error"].startswith(opening), api.json()
    with db.read() as s, pytest.raises(InvalidInput, match="Enter or scan a kit number"):
        kits_module.by_number(s, "  ")
