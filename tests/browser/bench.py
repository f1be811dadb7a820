"""The bench half of the walk (issue 14): the operator finishes an in-process lot on the tablet with the
verifier co-signing on the same page (every filled vial given its fate: pulled for QC, retained or
placed), QC enters the lot's results in the grid, QA reviews the set and the batch record, the QP
certifies with every gate passed, the vial reconciliation among them. Each function walks its pages as
`supply_and_site` does, one task per piece of work, with the issue's targets asserted on the tasks that
have one.

The lot page sends its forms by fetch and replaces itself with the answer (templates/static/step.js):
no browser navigation, so `submit` waits for what the answer shows and counts it as a page load.
"""
from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import expect

from cellbench import clock
from cellbench.demo import DEMO_PASSWORD
from cellbench.demo.manufacturing import EQUIPMENT, asc_values
from cellbench.demo.release import passing_value
from cellbench.specifications import Specification, Step

from .walking import DESK, TABLET, Person, Walk

OPERATOR, VERIFIER, QC, QA, QP = "operator", "verifier", "qc", "qa", "qp"
ASSET_OF_KIND = {kind: asset for asset, kind, _name in EQUIPMENT}  # one registered instrument of each kind
VIALS_FILLED = 8  # two kits of two vials (one per gland) placed in the tank, two pulled for QC, two retained
QC_VIALS, RETAINED_VIALS = 2, 2


@dataclass
class LotInHand:
    """What the walk knows of the lot it finishes: its number, row id (its box in the tank), donation and
    specification; the values typed are the demo's (cellbench.demo.manufacturing.asc_values)."""

    number: str
    id: int
    donation: str
    spec: Specification


def submit(someone: Person, button, shown) -> None:
    """Press a button of a form that the page sends by fetch and replaces itself with the answer: wait
    for `shown` (a locator on the answer) and count the answer as one page load."""
    button.click()
    expect(shown).to_be_visible()
    someone.walk.loaded_in_place()


def material_scan(code: str) -> str:
    """The material label's code as the demo's released material lots carry it (seed_basics)."""
    return f"{code}:{code[:3].upper()}-2611"


def scan_into(page, field: str, code: str) -> None:
    """A scanner is a keyboard: the operator taps the scan field, the scanner types and presses Enter;
    the draft keeps the scan without a page load."""
    page.click(f"#step-form input[name={field}]")
    page.keyboard.type(code)
    page.keyboard.press("Enter")


def values_for(lot: LotInHand, step: Step, index: int) -> dict[str, str]:
    values = asc_values(step.code, index, clock.utcnow(), lot, lot.donation)  # type: ignore[arg-type]
    if step.code == "fill":
        values["vials_filled"] = str(VIALS_FILLED)
    if step.code == "qc_and_retained_samples":
        values = {**values, "qc_vials": str(QC_VIALS), "retained_vials": str(RETAINED_VIALS)}
    return values


def type_step(page, step: Step, values: dict[str, str]) -> None:
    """Type the step's values as the operator would: a time by the Now button, a yes/no or a choice by
    picking it, everything else typed; then scan every material and instrument the step names."""
    for p in step.parameters:
        if p.computed:
            continue
        name = f"#step-form [name='v:{p.code}']"
        if p.type == "datetime":
            page.click(f"#step-form fieldset:has([name='v:{p.code}']) button[data-now]")
        elif p.type in ("boolean", "choice"):
            page.select_option(name, values[p.code])
        else:
            page.fill(name, values[p.code])
    for material in step.materials:
        code = material_scan(material.code)
        scan_into(page, "material_scan", code)
        expect(page.locator(f"#step-form input[name=materials][value='{code}']")).to_have_count(1)
    for kind in step.equipment:
        scan_into(page, "equipment_scan", ASSET_OF_KIND[kind.code])
        expect(page.locator("#step-form fieldset[data-kind=equipment] li")
               .filter(has_text=ASSET_OF_KIND[kind.code])).to_have_count(1)


def record_step(ole: Person, lot: LotInHand, step: Step, title: str, values: dict[str, str]) -> None:
    """One entry of a step on the lot page: started, typed and scanned on its one form and signed by
    the operator (at most 2 page loads, 1 signature); where the step needs a second person, the
    verifier co-signs on the same tablet (1 page load, 1 signature)."""
    walk, page = ole.walk, ole.page
    with walk.task(f"operator: {title}", loads_at_most=2, signatures_at_most=1):
        submit(ole, page.locator(f"li#step-{step.code} form[action$='/start'] button"), page.locator("#step-form"))
        type_step(page, step, values)
        expect(page.locator("#step-form .draft-note")).to_contain_text("Draft, not part of the record")
        if step.code == "fill":  # values typed, materials and the cabinet scanned, not yet signed
            page.evaluate("document.getElementById('step-form').scrollIntoView({block: 'start'});"
                          "window.scrollBy(0, -document.getElementById('progress').offsetHeight)")
            ole.shot("lot-step-typed", full_page=False)
            page.evaluate("document.querySelector('#step-form .sign-row').scrollIntoView({block: 'end'})")
            ole.shot("lot-step-scanned", full_page=False)
        page.fill("#step-form input[name=password]", DEMO_PASSWORD)
        submit(ole, page.locator("#step-form button[value=sign]"),
               page.locator(".notice", has_text="Signed: performed."))
        walk.signed()
    if step.verify:
        with walk.task(f"verifier: co-sign {title} on the operator's tablet", loads_at_most=1, signatures_at_most=1):
            page.fill("form.cosign input[name=username]", VERIFIER)
            page.fill("form.cosign input[name=password]", DEMO_PASSWORD)
            submit(ole, page.locator("form.cosign button"), page.locator(".notice", has_text="Signed: verified."))
            walk.signed()
            assert "Ole Jensen" in page.inner_text("header .who"), "the operator stays signed in"


def give_the_samples_their_fates(ole: Person) -> list[str]:
    """At the storage step, the vials pulled for QC and those kept as retained samples are scanned on
    the lot page's vial form, each with its fate; returns the vials left to place in the tank, as the
    page lists them (as their labels read)."""
    page = ole.page
    form = page.locator("#vials form[action$='/vial']")
    # The co-signed page replaces this one by document.write; the notice at its top can be seen before
    # the vial list further down is parsed on a loaded machine, so wait for the list, then read it.
    expect(page.locator("#vials .attention .nowrap")).to_have_count(VIALS_FILLED)
    waiting = page.locator("#vials .attention .nowrap").all_inner_texts()
    assert len(waiting) == VIALS_FILLED, f"every filled vial waits for its fate: {waiting}"
    fates = ["qc"] * QC_VIALS + ["retained"] * RETAINED_VIALS
    with ole.walk.task(f"operator: scan {QC_VIALS} vials pulled for QC and {RETAINED_VIALS} retained samples"):
        for vial, fate in zip(waiting, fates, strict=False):
            form.locator("select[name=fate]").select_option(fate)
            if fate == "retained":
                form.locator("input[name=reason]").fill("LN2-A/R9/B01, retained samples box")
            form.locator("input[name=vial]").click()
            page.keyboard.type(vial)  # the scanner types the vial label's code and presses Enter
            if form.get_attribute("data-keep") is not None:  # sent by the page's script, the page replaced
                page.keyboard.press("Enter")
                expect(page.locator("#vials .attention .nowrap", has_text=vial)).to_have_count(0)
                ole.walk.loaded_in_place()
            else:
                with page.expect_navigation():
                    page.keyboard.press("Enter")
            said = {"qc": "pulled for QC", "retained": "retained sample"}[fate]
            assert ole.notice() == f"Vial {vial}: {said}.", ole.error()
            if vial != waiting[len(fates) - 1]:  # the page opens at the vial form again, for the next scan
                expect(form.locator("input[name=vial]")).to_be_in_viewport()
            if fate == "qc" and vial == waiting[0]:
                ole.shot("lot-after-a-vial-fate", full_page=False)
    left = page.locator("#vials .attention .nowrap").all_inner_texts()
    assert left == waiting[len(fates):], left
    return left


def operator_finishes_the_lot(walk: Walk, lot: LotInHand) -> None:
    """The operator (TABLET) opens the in-process lot from her work queue and finishes each step left
    on ONE form: values, material and equipment scans and her signature, at most 2 page loads a step
    (starting the step, signing it). For a step that needs a second person, the verifier co-signs on
    the same page and tablet with username and password; the operator stays signed in. The storage
    step stays open until every filled vial has its fate: the QC vials and retained samples scanned out
    on the page's vial form, then one entry per vial left, scanned and placed in the tank."""
    ole = walk.person(OPERATOR, TABLET)
    page = ole.page
    with walk.task("operator: open the lot in process from the work queue"):
        ole.from_queue(r"lots? in process")
        if not ole.at(f"/lots/{lot.number}"):
            ole.click(f"main a[href='/lots/{lot.number}']")
        assert page.evaluate("window.scrollY") > 0, "the lot page opens at the current step"
        ole.shot("lot-opens-at-current-step", full_page=False)
    for step in lot.spec.steps:
        if page.locator(f"li.step.done#step-{step.code}").count():
            continue
        if not step.repeat:
            record_step(ole, lot, step, step.title, values_for(lot, step, 1))
            continue
        # The storage step: the vials pulled for QC and kept as retained samples are scanned out first,
        # then one entry per vial left, each scanned and placed, until every vial has its fate.
        to_place = give_the_samples_their_fates(ole)
        for index, vial in enumerate(to_place, start=1):
            record_step(ole, lot, step, f"{step.title}, vial {vial.rsplit('-', 1)[1]}",
                        values_for(lot, step, index) | {"vial_id": vial})
        assert not page.locator(f"li#step-{step.code} form[action$='/start']").count(), "every vial has its fate"
        # filled 8 = placed 4 + pulled for QC 2 + retained 2 + destroyed 0, no vial without a fate
        assert "every vial accounted for" in page.inner_text("#vials h2")
        counts = page.locator("#vials table.reconciliation tbody td").all_inner_texts()
        assert [int(n) for n in counts] == [VIALS_FILLED, len(to_place), QC_VIALS, RETAINED_VIALS, 0, 0], counts
    assert page.inner_text(".titlebar .tag").lower() == "qc pending", "the batch record is complete"
    assert f"{len(lot.spec.steps)} of {len(lot.spec.steps)} steps done" in page.inner_text("#progress")


def qc_enters_results_in_the_grid(walk: Walk, lot: str, spec: Specification) -> int:
    """The QC analyst (TABLET) opens the lot's results grid from her queue, types every lot-stage release
    test's result (the donor-stage tests are shown, not offered) and saves the grid at once."""
    kim = walk.person(QC, TABLET)  # in the QC lab, on the tablet
    tests = [t for t in spec.tests if t.stage != "donor"]
    kim.home()  # where she is between tasks: her work queue; the task counts from there
    with walk.task(f"QC: enter {len(tests)} results of {lot} in the grid", loads_at_most=3):
        kim.open_queue_item(r"lots? with QC results to enter")
        if not kim.at(f"/lots/{lot}/qc"):
            kim.click(f"main a[href^='/lots/{lot}/qc']")
        grid = kim.page.locator("#grid")
        assert grid.locator("[name^='value:donor_']").count() == 0, "donor tests are shown, not offered"
        for test in tests:
            field = grid.locator(f"[name='value:{test.code}']")
            if field.evaluate("e => e.tagName") == "SELECT":
                field.select_option(passing_value(test))
            else:
                field.fill(passing_value(test))
        kim.shot(f"qc-grid-typed-{lot}", full_page=False)
        kim.shot(f"qc-grid-typed-{lot}-whole")
        kim.click("#grid button[type=submit]")
        assert f"{len(tests)} results saved" in kim.notice(), kim.error()
    return len(tests)


def qa_reviews_the_set_and_the_batch_record(walk: Walk, lot: str, results: int) -> None:
    """QA (DESK), who entered none of them, reviews the lot's set of QC results under ONE signature,
    then signs the batch-record review by exception and the lot's audit-trail review."""
    anna = walk.person(QA, DESK)
    with walk.task(f"QA: review the set of {results} QC results of {lot}", signatures_at_most=1):
        anna.from_queue(r"sets? of QC results for you to review")
        if not anna.at(f"/lots/{lot}/qc"):
            anna.click(f"main a[href^='/lots/{lot}/qc']")
        assert anna.page.locator("#review input[name=result]:checked").count() == results
        anna.sign("#review form")
        assert f"{results} results reviewed under one signature" in anna.notice(), anna.error()
    with walk.task(f"QA: review the batch record and the audit trail of {lot}", signatures_at_most=2):
        anna.from_queue(r"lots? awaits? your batch-record and audit-trail review")
        if not anna.at(f"/lots/{lot}/release"):
            anna.click(f"main a[href^='/lots/{lot}/release']")
        for kind in ("batch_record", "audit_trail"):
            anna.sign(f"#reviews form:has(input[name=kind][value={kind}])")
            assert anna.notice() == "Review signed.", anna.error()


def qp_certifies(walk: Walk, lot: str) -> None:
    """The QP (DESK) opens the lot from "reviewed lots await your certification", reads the gates on the lot's
    release page and signs the final certification."""
    peter = walk.person(QP, DESK)
    with walk.task(f"QP: certify {lot}", signatures_at_most=1):
        peter.from_queue(r"reviewed lots? awaits? your certification")
        if not peter.at(f"/lots/{lot}/release"):
            peter.click(f"main a[href^='/lots/{lot}/release']")
        gates = peter.page.locator("#gates li")
        assert gates.count() and not peter.page.locator("#gates li.blocked").count(), gates.all_inner_texts()
        assert "✓ Every vial accounted for" in peter.page.inner_text("#gates li[data-gate=vials_reconciled]")
        assert peter.page.locator("#certify input[name=stage][value=final]").is_checked()
        peter.sign("#certify form")
        assert peter.notice() == "Lot certified.", peter.error()
        assert "qp certified" in peter.main().lower()
