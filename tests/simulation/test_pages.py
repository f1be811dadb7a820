"""The simulation page and its PDF: unblinded planning that the supply manager, QA and the QP read,
and that no blinded role reaches; a bad value re-renders the form with its field marked."""
from __future__ import annotations

import io
import re

import pytest
from pypdf import PdfReader

from ..kitworld import load_studies

STUDY = "NCT07290946"
RUN = f"/simulation/{STUDY}?run=1&seed=7"


@pytest.fixture
def studies_loaded(db, people):
    load_studies(db)
    return db


def _invalid(page: str, name: str) -> bool:
    marked = re.finditer(r'<label class="field invalid">(.*?)</label>', page, re.S)
    return any(f'name="{name}"' in m.group(1) and '<small class="why">' in m.group(1) for m in marked)


def test_the_supply_manager_finds_the_simulation_in_the_nav_and_gets_the_form_with_the_study_defaults(
        as_, studies_loaded):
    sara = as_("sara")
    home = sara.get("/")
    assert 'href="/simulation"' in home.text
    listing = sara.get("/simulation")
    assert listing.status_code == 200 and f'href="/simulation/{STUDY}"' in listing.text
    form = sara.get(f"/simulation/{STUDY}")
    assert form.status_code == 200
    assert 'name="interval_days" value="120"' in form.text and 'name="shelf_life_months" value="24"' in form.text
    assert 'name="active.lot_vials" value="10"' in form.text and 'name="placebo.AUH-ENT.max" value="4"' in form.text
    assert "<svg" not in form.text, "the form alone runs nothing"
    assert "PROPOSAL" in form.text and "study file: schedule" in form.text, "each default says where it comes from"


def test_a_run_shows_the_figures_and_three_accessible_charts(as_, studies_loaded):
    page = as_("sara").get(RUN)
    assert page.status_code == 200, page.text
    assert "1000 runs, seed 7" in page.text
    for figure in ("Kits needed", "Lots needed at least", "Kits expired unused", "Runs with a stock-out at RH-ENT"):
        assert figure in page.text
    assert page.text.count("<svg") == 3
    for title in ("Kits needed per month", "Lots started per month", "Probability of a stock-out"):
        assert re.search(rf'<title id="chart-\w+-title">{title}</title>', page.text)
    assert page.text.count("<desc id=") == 3
    assert f'href="/simulation/{STUDY}/simulation.pdf?run=1&amp;seed=7"' in page.text


@pytest.mark.parametrize("reader", ["anna", "peter"])
def test_qa_and_the_qp_may_read_it(as_, studies_loaded, reader):
    assert as_(reader).get(f"/simulation/{STUDY}").status_code == 200


@pytest.mark.parametrize("blinded", ["frida", "ida", "mette", "adam"])
def test_no_blinded_role_reaches_the_page_the_list_or_the_pdf(as_, studies_loaded, blinded):
    client = as_(blinded)
    for url in ("/simulation", f"/simulation/{STUDY}", RUN, f"/simulation/{STUDY}/simulation.pdf?seed=7"):
        assert client.get(url).status_code == 403, url
    assert 'href="/simulation"' not in client.get("/").text


@pytest.mark.parametrize(("field", "value"), [("screened_per_site_month", "-1"), ("dropout", "NaN"),
                                              ("runs", "100000000"), ("placebo.RH-ENT.max", "0")])
def test_a_bad_value_is_named_beside_its_field_and_nothing_is_run(as_, studies_loaded, field, value):
    page = as_("sara").get(f"/simulation/{STUDY}", params={"run": "1", field: value})
    assert page.status_code == 422
    assert _invalid(page.text, field)
    assert f'name="{field}" value="{value}"' in page.text, "what was typed is shown again"
    assert "<svg" not in page.text


def test_the_pdf_holds_the_figures_the_charts_and_every_parameter(as_, studies_loaded):
    response = as_("sara").get(f"/simulation/{STUDY}/simulation.pdf?seed=7")
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    assert "supply-simulation-NCT07290946-seed-7.pdf" in response.headers["content-disposition"]
    reader = PdfReader(io.BytesIO(response.content))
    text = " ".join(page.extract_text() for page in reader.pages)
    for words in ("Supply simulation: NCT07290946", "Figures per arm", "Kits needed per month",
                  "Lots started per month", "Probability of a stock-out", "Lots needed at least",
                  "Shelf life (months)", "Seed", "study file: schedule", "PROPOSAL"):
        assert words in text, words
    drawn = b"".join(page.get_contents().get_data() for page in reader.pages)
    assert drawn.count(b" re f") + drawn.count(b" re\nf") >= 40, "the bars and legend keys are drawn rectangles"
    assert drawn.count(b" l\n") + drawn.count(b" l ") >= 100, "axes, grid and lines are drawn paths"


def test_the_demos_supply_manager_runs_the_simulation_from_the_nav_and_gets_its_pdf(app, demo_trial_world):
    from cellbench.demo import DEMO_PASSWORD

    from ..conftest import sign_in

    supply = sign_in(app, "supply", DEMO_PASSWORD)
    assert 'href="/simulation"' in supply.get("/").text
    form = supply.get(f"/simulation/{STUDY}").text  # site stock starts from the demo's resupply settings
    assert 'name="active.RH-ENT.min" value="12"' in form and 'name="placebo.RH-ENT.max" value="16"' in form
    assert 'name="active.AUH-ENT.min" value="2"' in form
    page = supply.get(f"/simulation/{STUDY}?run=1")
    assert page.status_code == 200 and page.text.count("<svg") == 3
    assert supply.get(f"/simulation/{STUDY}/simulation.pdf?run=1").content.startswith(b"%PDF")
    assert sign_in(app, "pharmacist", DEMO_PASSWORD).get(f"/simulation/{STUDY}").status_code == 403
