"""Bounds on every number, date and id (issue 16): what no database can hold is 'not found', what no
bench could measure is refused naming its field, and nothing is stored from a refusal."""
from __future__ import annotations

import re
from datetime import date, datetime

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from cellbench import gate, inputs
from cellbench.app import iter_routes
from cellbench.errors import InvalidInput, NotFound
from tests.conftest import PEOPLE

HUGE_IDS = (2**63, 2**64)
# Keys people type, not row ids: an audit trail's entity (a lot number...) and an instrument's asset id.
TEXT_KEYS = {"entity_id", "asset_id"}


def _id_params(route: APIRoute) -> set[str]:
    return {p.name for p in route.dependant.path_params
            if p.field_info.annotation is int or p.name in ("entry", "version")
            or (p.name.endswith("_id") and p.name not in TEXT_KEYS)}


def _someone_for(route: APIRoute, app) -> str:
    access = gate.declared(route, app)
    if access.roles is None:
        return "anna"
    return next(name for name, (_, roles) in PEOPLE.items() if set(roles) & access.roles)


def _id_routes(app) -> list[APIRoute]:
    return [r for r in iter_routes(app.routes) if isinstance(r, APIRoute) and _id_params(r)]


def test_the_app_has_id_routes_to_check(app):
    assert len(_id_routes(app)) >= 20


@pytest.mark.parametrize("huge", HUGE_IDS)
def test_an_id_past_what_the_database_holds_is_not_found_on_every_id_route(app, as_, huge):
    for route in _id_routes(app):
        ids = _id_params(route)
        url = re.sub(r"{(\w+)(:\w+)?}", lambda m, ids=ids: str(huge) if m[1] in ids else "X", route.path)
        client = as_(_someone_for(route, app))
        for method in sorted(route.methods - {"HEAD"}):
            if method == "GET":
                answer = client.get(url)
            elif url.startswith("/api/"):
                answer = client.request(method, url, json={})
            else:
                answer = client.submit(url, {})
            assert answer.status_code == 404, (method, url, answer.status_code, answer.text[:300])
            if url.startswith("/api/"):  # the refusal names the id it could not find
                assert answer.json()["field"], (url, answer.text)


def test_a_huge_id_in_a_lookup_is_not_found_naming_the_field():
    for typed in (str(2**63), str(2**64), "0", "-1", "١٢", "1_00", "", None):
        with pytest.raises(NotFound) as refused:
            inputs.db_id(typed, "result_id", "QC result")
        assert refused.value.field == "result_id"
    assert inputs.db_id(str(2**63 - 1), "result_id") == 2**63 - 1


@pytest.mark.parametrize("typed", ["nan", "NaN", "inf", "-Infinity", "1e309", "1" * 401, "1_00", "١٢",
                                   float("nan"), float("inf"), 10**400, True, "0x10", " "])
def test_a_number_that_is_not_a_plain_finite_ascii_number_is_refused_naming_the_field(typed):
    with pytest.raises(InvalidInput) as refused:
        inputs.number(typed, "volume_ml", "volume in mL")
    assert refused.value.field == "volume_ml"


@pytest.mark.parametrize("typed", ["1_00", "١٢", "1" * 401, "1.0", "", True])
def test_a_whole_number_is_ascii_digits_of_sensible_length(typed):
    with pytest.raises(InvalidInput) as refused:
        inputs.whole(typed, "kit_count", "number of kits")
    assert refused.value.field == "kit_count"
    assert inputs.whole(" 12 ", "kit_count", "number of kits") == 12 and inputs.whole("-3", "n", "n") == -3


@pytest.mark.parametrize("typed", ["-273.16", "100.1", "10000000", "1e309", "nan"])
def test_a_temperature_is_between_absolute_zero_and_boiling_water(typed):
    with pytest.raises(InvalidInput) as refused:
        inputs.temperature(typed, "highest_temperature", "highest temperature (°C)")
    assert refused.value.field == "highest_temperature"
    assert inputs.temperature("-196", "t", "t") == -196.0


@pytest.mark.parametrize("typed", ["0001-01-01T00:00:00+14:00", "0001-01-01 00:00", "1970-01-01T00:00:00Z",
                                   "1999-12-31T23:00:00+00:00", "9999-12-31T23:59:59-14:00", "2100-01-01 00:00"])
def test_a_recorded_time_is_from_2000_and_not_in_the_future(typed):
    with pytest.raises(InvalidInput) as refused:
        inputs.moment(typed, "harvested_at", "harvest time")
    assert refused.value.field == "harvested_at"


def test_dates_have_their_plausible_ranges():
    with pytest.raises(InvalidInput, match="10 years") as refused:
        inputs.calibration_due("9999-12-31")
    assert refused.value.field == "calibration_due"
    with pytest.raises(InvalidInput, match="2000") as refused:
        inputs.expiry("1970-01-01")
    with pytest.raises(InvalidInput, match="future") as refused:
        inputs.past_day(date.today().replace(year=date.today().year + 2), "consent_date", "consent date")
    assert inputs.expiry(date.today().replace(year=date.today().year + 2)).year == date.today().year + 2


def test_a_harvest_time_in_year_1_or_1970_is_refused_as_a_step_value():
    from cellbench.specifications.model import Parameter
    from cellbench.specifications.values import parse_value
    harvest = Parameter(code="harvested_at", label="Harvest time", type="datetime")
    for typed in ("0001-01-01T00:00:00+14:00", "1970-01-01T00:00:00+00:00"):
        with pytest.raises(ValueError, match=r"2000|plausible"):
            parse_value(harvest, typed)
    assert isinstance(parse_value(harvest, "2025-03-01T10:00:00+00:00"), datetime)
    count = Parameter(code="cells", label="Cell count", type="number")
    for typed in ("1_00", "١٢", "1" * 401):
        with pytest.raises(ValueError):
            parse_value(count, typed)
    with pytest.raises(ValueError):
        parse_value(count, 10**400)


def _equipment_count(db) -> int:
    from cellbench.models import Equipment
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(Equipment)) or 0


def test_a_calibration_due_in_9999_is_refused_on_the_page_and_nothing_is_stored(db, as_, people):
    before = _equipment_count(db)
    answer = as_("anna").submit("/equipment", {"asset_id": "BSC-99", "equipment_code": "BSC", "name": "Safety cabinet",
                                               "calibration_due": "9999-12-31"})
    assert answer.status_code == 422 and "calibration" in answer.text.lower()
    assert _equipment_count(db) == before


def test_malformed_json_is_422_on_the_body_in_plain_words(as_, people):
    answer = as_("anna").post("/api/v1/equipment", content=b'{"asset_id": ',
                              headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["field"] == "body" and "JSON" in answer.json()["error"]


def test_invalid_utf8_is_422_naming_the_field_on_a_page_and_the_body_on_the_api(db, as_, people):
    client = as_("anna")
    before = _equipment_count(db)
    form = (f"csrf_token={client.csrf()}&asset_id=BSC-98&equipment_code=BSC&calibration_due=2027-01-01"
            "&name=%FF%FEcabinet").encode()
    answer = client.post("/equipment", content=form, follow_redirects=False,
                         headers={"content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 422 and "The field &#39;name&#39; is not valid UTF-8 text." in answer.text
    answer = client.post("/api/v1/equipment", content=b'{"asset_id": "\xff\xfe"}',
                         headers={"content-type": "application/json"})
    assert answer.status_code == 422 and answer.json()["field"] == "body"
    assert _equipment_count(db) == before


def test_a_page_cursor_not_made_by_cellbench_is_refused_naming_it(as_, people):
    answer = as_("sara").get(f"/api/v1/kits?after={2**64}")
    assert answer.status_code == 400 and answer.json()["field"] == "after"


def test_a_nan_or_boiling_excursion_temperature_is_refused_on_the_api_and_the_page(db, as_, demo_world):
    from cellbench.models import Lot, StorageExcursion
    with db.read() as s:
        lot = s.scalars(select(Lot)).first()
        before = s.scalar(select(func.count()).select_from(StorageExcursion))
    client = as_("anna")
    for temperature in ("NaN", "1e309", "10000000"):
        answer = client.post(f"/api/v1/lots/{lot.number}/release/excursions",
                             content=f'{{"observed_at": "2026-01-01T10:00:00Z", "highest_temperature": {temperature},'
                                     f' "description": "door left open"}}'.encode(),
                             headers={"content-type": "application/json"})
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] in ("highest_temperature", "body")
    for temperature in ("nan", "inf", "1e309", "-300", "1_00", "١٢"):
        answer = client.submit(f"/lots/{lot.number}/release/excursion",
                               {"observed_at": "2026-01-01 10:00", "highest_temperature": temperature,
                                "description": "door left open"})
        assert answer.status_code == 422 and "highest temperature" in answer.text, (temperature, answer.status_code)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(StorageExcursion)) == before
