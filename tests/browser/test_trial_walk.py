"""The trial walked in Chromium through the pages only, as the staff would (issue 14, "What must be
shown"): the bench and the site on a 768×1024 tablet, supply, QA and QP at a 1280×800 desk. Each
person signs in once on their own device; the walk prints the page loads of every task.

Run it alone, with the table printed:

    PYTHONPATH=. python -m pytest -q -n 0 -s tests/browser/test_trial_walk.py

With CELLBENCH_WALK_SCREENSHOTS=<folder>, the site's pages are saved there as the walk goes, to be
looked at.

The world is the whole demo (`cellbench demo`, tests/conftest.py `demo_trial_world`) with its demo
people and their password. The supply and site half goes to the second site, AUH-ENT (Aarhus),
whose pharmacy holds no kits before the walk: every kit the system assigns there is one the walk
packed, labelled and shipped, so every scan types a payload decoded from the printed label's QR code.

The walk starts at the bench (tests/browser/bench.py): the operator finishes the demo's first ASC lot
in process on the lot page, one form per step (values, material and equipment scans, her signature) and
the verifier co-signing on her tablet, every filled vial given its fate by scan (two pulled for QC, two
retained, four placed in the tank, one storage entry each); the QC analyst enters the lot's results in
the grid; QA, who entered none, reviews them as one set under one signature and signs the batch-record
and audit-trail reviews; the QP certifies. The demo's complete saline lot ("QC pending": its bench
steps were recorded by the demo, so there is none left to walk) goes through the same QC, QA and QP
pages. Then the supply and site half runs on those two lots. The issue's targets are asserted on their
tasks: a batch step in at most 2 page loads and 1 signature, 20 QC results in at most 3 page loads,
their review with 1 signature.
"""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from sqlmodel import col

from cellbench import clock, lots, studies
from cellbench.models import Donation, Lot, LotState, Study
from cellbench.specifications import STUDIES_DIR, specs_root
from cellbench.specifications import versions as spec_versions

from ..bedside_support import card_code, recorded_by_preparer, syringe_code
from ..conftest import chromium_path
from ..eligible import criteria
from . import bench
from .walking import DESK, TABLET, Walk, arm_words, qr_payloads

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(chromium_path() is None,
                                 reason="Chromium is not installed (apt-get install chromium)")]

STUDY = "NCT07290946"  # two treatments, four months apart, both glands each time
SITE = "AUH-ENT"
SCREENING = "AAR-101"
KITS_TO_MAKE = 4  # one permuted block: two kits of each arm, one per treatment of one participant
TREATMENT_INTERVAL_DAYS = 120

# The demo people (cellbench.demo DEMO_USERS and sites.SECOND_SITE_USERS): one per role.
SUPPLY = "supply"
PHARMACIST, PREPARER, INVESTIGATOR = "pharmacist-aarhus", "preparer-aarhus", "investigator-aarhus"


# --- the world ------------------------------------------------------------------------------------------


@pytest.fixture
def shared_phrases(demo_trial_world) -> tuple[str, ...]:
    """What blinded pages show alike for both arms and may use arm words in: the studies' titles
    ("Repeated ASC for ...") and the eligibility criteria ("... active disease of the salivary glands")."""
    with demo_trial_world.read() as s:
        titles = [title for study in s.scalars(select(Study)) for title in (study.title, study.short_title)]
    definition, _sha = studies.load_study_file(specs_root() / STUDIES_DIR / f"{STUDY}.toml")
    return (*titles, *(criterion.text for criterion in definition.eligibility))


def test_the_blind_reader_finds_arm_words_and_lot_numbers_but_not_in_kit_numbers_or_titles():
    title = "Repeated ASC for radiation-induced xerostomia"
    assert arm_words(f"Kit ASC7-PLAC-E · {title} · Dispensed", title) == []
    assert arm_words("Kit 934R-JJTJ-7 · Placebo: isotonic saline") == ["Placebo", "saline"]
    assert arm_words("Units: ASC-2026-0006-V001") == ["ASC-2026-0006"]
    assert arm_words("the active arm") == ["active", "arm"]
    assert arm_words("Pharmacist · pharmacy · ascending") == []


# --- the supply and site half -------------------------------------------------------------------------------


def supply_and_site(walk: Walk, clock_, asc_lot: str, saline_lot: str, db) -> None:
    """From two QP-certified lots to a participant treated twice, through the pages only. The
    pharmacist and the investigator are blinded: every page they reach is read for arm words."""
    sara = walk.person(SUPPLY, DESK)

    with walk.task("supply: sponsor release of the ASC lot and the saline lot"):
        for n, lot in enumerate((asc_lot, saline_lot)):
            if n == 0:
                sara.from_queue(r"certified lots? await.* sponsor release")
            else:
                sara.nav("Release")
            if not sara.at(f"/lots/{lot}/release"):
                sara.click(f"main a[href='/lots/{lot}/release']")
            assert "qp certified" in sara.main().lower()
            sara.sign(f"form[action='/lots/{lot}/release/sponsor_release']")
            assert sara.notice() == "Lot released.", sara.error()

    with walk.task("supply: seal a kit list of new kit numbers"):
        sara.nav("Supply")
        sara.click(f"main a[href='/supply/studies/{STUDY}/lists/new?kind=kit']")
        sara.page.fill("form[action$='/lists'] input[name=size]", str(KITS_TO_MAKE))
        sara.page.fill("form[action$='/lists'] input[name=block_sizes]", str(KITS_TO_MAKE))  # one block, no rounding
        sara.click("form[action$='/lists'] button")
        assert "Draft kit list" in sara.notice(), sara.error()
        entries = int(re.search(r"Entries\s+(\d+)", sara.main()).group(1))
        sara.sign("form[action$='/seal']")
        assert "sealed" in sara.notice() and "kit numbers are issued" in sara.notice(), sara.error()

    with walk.task("supply: package kits from the two lots"):
        sara.nav("Supply")
        sara.click(f"main a[href='/supply/packaging/new?study={STUDY}']")
        sara.page.select_option("select[name=study]", STUDY)
        sara.page.fill("input[name=kit_count]", str(entries))
        sara.page.check(f"input[name=asc_lots][value='{asc_lot}']")
        sara.page.check(f"input[name=placebo_lots][value='{saline_lot}']")
        sara.click("button:has-text('Package kits')")
        assert f"{entries} kits packaged" in sara.notice(), sara.error()
        run = sara.page.locator("main table").last
        kits = [row.locator("td").first.inner_text().strip() for row in run.locator("tbody tr").all()]
        states = run.locator("tbody tr").all_inner_texts()
        assert len(kits) == entries and all("Released" in row for row in states), "released with their lots"
        blinded_lot = re.search(r"Blinded lot\s+(\S+)", sara.main()).group(1)

    with walk.task("supply: print the kits' labels and download the PDF"):
        sara.nav("Labels")
        sara.click("main a[href='/labels/new']")
        sara.page.select_option("select[name=study]", STUDY)
        sara.page.fill("input[name=blinded_lot]", blinded_lot)  # typed or scanned: years make thousands
        sara.page.check("input[name=kind][value=outer]")
        sara.page.check("input[name=output][value=sheet]")
        sara.click("button:has-text('Print labels')")
        assert f"{entries} labels printed" in sara.notice(), sara.error()
        payloads = qr_payloads(walk.download(sara, "main a[href$='/download']"))
        assert sorted(payloads) == sorted(kits), "one QR code per kit, each carrying its own kit number"

    with walk.task("supply: build the shipment by scanning, then dispatch it"):
        sara.nav("Shipments")
        sara.click("main a[href='/shipments/new']")
        sara.page.select_option("select[name=study]", STUDY)
        sara.page.select_option("select[name=site]", SITE)
        sara.click("button:has-text('Create the shipment')")
        shipment = re.search(r"Shipment (SH-\S+) created", sara.notice()).group(1)
        for kit in kits:
            sara.scan(payloads[kit])
            assert sara.notice() == f"Kit {kit} packed.", sara.error()
        sara.page.fill("input[name=shipper_id]", "DS-31")
        sara.page.fill("input[name=seal_number]", "SEAL-3101")
        sara.page.fill("input[name=logger_id]", "TL-31")
        sara.click(f"button:has-text('Dispatch {entries} kits')")
        assert sara.notice() == f"Shipment {shipment} dispatched.", sara.error()
        assert "In transit" in sara.main()

    clock_(hours=26)  # the courier's day

    frida = walk.person(PHARMACIST, TABLET, blinded=True)
    with walk.task("pharmacist: receive the shipment by scanning each kit"):
        frida.from_queue(r"shipments? in transit")
        if not frida.at(f"/shipments/{shipment}"):
            frida.click(f"main a:has-text('{shipment}')")
        for n, kit in enumerate(kits, 1):
            frida.scan(payloads[kit])
            assert frida.page.inner_text(".progress").startswith(f"{n} of {entries} scanned")
            assert kit in frida.page.inner_text("#verdict") and "On the manifest" in frida.page.inner_text("#verdict")
        frida.shot("receipt-scanned")
        frida.page.check("input[name=seal_intact][value=yes]")
        frida.page.check("input[name=logger_source][value=manual]")
        frida.page.fill("input[name=logger_min]", "-189")
        frida.page.fill("input[name=logger_max]", "-163")
        frida.click("button:has-text('Complete the receipt')")
        assert frida.notice() == f"Shipment {shipment} received: every kit is in the site's stock.", frida.error()
        assert "26 h 0 min" in frida.main(), "the transit time is the courier's day"

    with walk.task("pharmacist: check a kit at the scan station"):
        frida.nav("Scan")
        frida.scan(payloads[kits[0]])
        verdict = frida.page.locator("#verdict .verdict")
        assert "accepted" in verdict.get_attribute("class") and kits[0] in verdict.inner_text()
        frida.shot("scan-station")

    ida = walk.person(INVESTIGATOR, TABLET, blinded=True)
    with walk.task("investigator: enrol and randomise a participant"):
        ida.nav("Participants")
        ida.page.select_option("form[action='/participants'][method=post] select[name=study]", STUDY)
        ida.page.select_option("form[action='/participants'][method=post] select[name=site]", SITE)
        ida.page.fill("input[name=screening_number]", SCREENING)
        ida.click("form[action='/participants'][method=post] button")
        assert ida.notice() == f"{SCREENING} enrolled.", ida.error()
        ida.page.fill("input[name=consent_date]", clock.today().isoformat())
        for code in criteria(STUDY):
            ida.page.check(f"input[name=criterion_{code}]")
        ida.click("form[action$='/randomise'] button")
        participant = re.search(r"Randomised: participant number (\S+)\.", ida.notice()).group(1)
        assert ida.page.locator("table.visits tbody tr").count() == 2, "both treatment visits are planned"
        ida.shot("randomised")
    participant_page = f"/participants/{STUDY}/{SCREENING}"

    jonas = walk.person(PREPARER, TABLET)
    given: list[str] = []
    for treatment in (1, 2):
        if treatment == 2:
            clock_(days=TREATMENT_INTERVAL_DAYS)  # four months later, the same participant

        with walk.task(f"pharmacist: dispense the assigned kit for treatment {treatment} by scanning"):
            frida.from_queue(r"visits? awaiting dispensing|visits? today awaits? a dispensed kit")
            if not frida.at(f"{participant_page}/visits/{treatment}/dispense"):
                row = frida.page.locator("main tr", has_text=participant)
                assert row.count() == 1 and row.locator("td").nth(1).inner_text().strip() == str(treatment)
                frida.follow(row.locator("a:has-text('Assign a kit')"))
            frida.click("button:has-text('Assign a kit')")
            kit = frida.page.inner_text(".kitno.huge").strip()
            assert kit in payloads and kit not in given, "a kit of this shipment, not one given before"
            assert f"Kit {kit} is assigned" in frida.notice()
            frida.scan(payloads[kit])
            assert frida.notice() == f"Kit {kit} dispensed to the preparer.", frida.error()
            frida.shot(f"dispensed-T{treatment}")
            given.append(kit)

        with walk.task(f"preparer: start the preparation clock for treatment {treatment} by scanning"):
            jonas.from_queue(r"dispensed kits? to thaw or prepare")
            assert kit in jonas.main()
            jonas.scan(payloads[kit])
            assert jonas.notice().startswith(f"Kit {kit}: the clock is running."), jonas.error()
            assert jonas.page.locator("tr", has_text=kit).locator("[role=timer]").inner_text().endswith("left")
            jonas.shot(f"preparation-T{treatment}")
        # The preparer's record (thaw end, units, masking, syringes and their labels) is made through the
        # service here; its pages are walked in tests/pharmacy/test_preparation.py.
        recorded_by_preparer(db, STUDY, participant, treatment)

        with walk.task(f"investigator: record treatment {treatment} in both glands"):
            ida.from_queue(r"treatment visits? (in (their|its) window|(is|are) due) today")
            if not ida.at(participant_page):
                ida.click(f"main a[href='{participant_page}']")
            ida.click(f"table.visits tr#T{treatment} a:has-text('Bedside check')")
            # at the bed: the participant's card, then each syringe label, with a keyboard-mode scanner
            ida.scan(card_code(STUDY, participant))
            assert ida.notice().startswith(f"Card: participant {participant}"), ida.error()
            for dose in (1, 2):
                ida.scan(syringe_code(kit, dose, participant))
                assert f"kit {kit}, dose {dose}" in ida.notice(), ida.error()
            ida.click("main a:has-text('Record administration')")
            for gland in ("left", "right"):
                form = f"form:has(button:has-text('Record {gland} gland'))"
                ida.page.fill(f"{form} input[name=volume_ml]", "1.0")
                ida.click(f"{form} button.primary")
                assert ida.notice() == f"{gland.capitalize()} gland recorded.", ida.error()
            assert ida.page.locator(".glands fieldset.done").count() == 2
            assert "Administered" in ida.page.inner_text("dl.facts")
            ida.shot(f"administered-T{treatment}")

    with walk.task("investigator: read the participant's treatments"):
        ida.go(participant_page)
        visits = ida.page.locator("table.visits tbody tr").all_inner_texts()
        assert len(visits) == 2 and all("Administered" in v for v in visits), visits
        assert all(kit in "".join(visits) for kit in given)


# --- the whole walk -----------------------------------------------------------------------------------------


def test_the_whole_trial_walked_through_the_pages(walk, clock, demo_trial_world, shared_phrases):
    """The whole walk of issue 14: the operator finishes the demo's in-process ASC lot, QC, QA and
    the QP bring it and the demo's complete saline lot to certification, then the supply and site
    half runs on those two lots."""
    with demo_trial_world.read() as s:
        def first(state: LotState, prefix: str) -> Lot:
            return next(lot for lot in s.scalars(select(Lot).where(col(Lot.state) == state).order_by(col(Lot.id)))
                        if lot.number.startswith(prefix))
        asc, saline = first(LotState.in_process, "ASC-"), first(LotState.qc_pending, "PLB-")
        in_hand = bench.LotInHand(asc.number, asc.id, s.get(Donation, asc.donation_id).identifier,
                                  spec_versions.parsed(lots.spec_of(s, asc)))
        specs = {lot.number: spec_versions.parsed(lots.spec_of(s, lot)) for lot in (asc, saline)}
        asc_lot, saline_lot = asc.number, saline.number
    walk.shared_phrases = shared_phrases
    bench.operator_finishes_the_lot(walk, in_hand)
    for lot in (asc_lot, saline_lot):
        results = bench.qc_enters_results_in_the_grid(walk, lot, specs[lot])
        bench.qa_reviews_the_set_and_the_batch_record(walk, lot, results)
        bench.qp_certifies(walk, lot)
    supply_and_site(walk, clock, asc_lot, saline_lot, demo_trial_world)
