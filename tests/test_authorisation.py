"""Authorisation before anything else: every route of the app, asked by every role and by nobody,
with an empty body and with a valid-looking one, answers 401 to an anonymous caller and 403 to a
role it does not admit, before it validates or renders anything, and writes nothing.

The sweep reads the routes from the app (a new route is covered without editing this file) and
the roles from `Role` (a new role too); who a route admits is read from the route's own
declaration (gate.declared), the same one its dependencies check.
"""
from __future__ import annotations

import enum
import re
import types
import typing
from datetime import date, datetime
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlmodel import SQLModel

from cellbench import gate, qrpayload, users
from cellbench.app import create_app, gated_routes
from cellbench.audit import TRIAL_RECORDS, USER_RECORDS
from cellbench.models import AuditEvent, CustodyEvent, Role, User
from tests import blinding_support
from tests.conftest import FAST_HASHER, PASSWORD, SECRET, Client, sign_in

# What a valid-looking body puts in a field, by the field's name; other fields get a value of their type.
NAMED = {"password": PASSWORD, "reason": "Found on the shelf.", "comment": "Read through.", "station": "RH-ENT",
         "username": "newcomer", "full_name": "New Comer", "roles": "qa", "name": "integration",
         "to_seq": "1", "count": "1", "quantity": "1"}


# --- callers -------------------------------------------------------------------------------------------


def _user_with(db, role: Role) -> str:
    """A user holding just this role (one per Role, so a role added later is asked too)."""
    username = f"only-{role.value}".replace("_", "-")
    with db.write() as session:
        if not session.scalars(select(User).where(User.username == username)).first():
            users.create_user(session, users.cli_actor(), username, f"Only {role.value}", PASSWORD, [role.value])
    return username


def _token_of(db, username: str) -> str:
    with db.write() as session:
        user = users.by_username(session, username)
        return users.create_token(session, users.actor(session, user), user, "authorisation sweep")


# --- requests ------------------------------------------------------------------------------------------


def _path(route, kit: str, study: str) -> str:
    values = {"number": kit, "kit_number": kit, "code": kit, "study": study, "study_code": study}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "1"), route.path)


def _plausible(annotation: Any, name: str, kit: str) -> Any:
    """A value that would pass validation for a field of this type."""
    if name in ("code", "kit_number"):
        return kit
    if name in NAMED:
        return NAMED[name]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _plausible(inner[0], name, kit) if inner else None
    if origin in (list, tuple, set, frozenset):
        return []
    if origin is dict:
        return {}
    if origin is typing.Literal:
        return typing.get_args(annotation)[0]
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return {field: _plausible(info.annotation, field, kit) for field, info in annotation.model_fields.items()}
        if issubclass(annotation, enum.Enum):
            return next(iter(annotation)).value
        if issubclass(annotation, bool):
            return True
        if issubclass(annotation, int):
            return 1
        if issubclass(annotation, float):
            return 1.0
        if issubclass(annotation, datetime):
            return "2026-01-05T10:00:00+01:00"
        if issubclass(annotation, date):
            return "2026-01-05"
    return "x"


def _bodies(route, kit: str) -> list[dict[str, Any]]:
    """The request keyword arguments of an empty and of a valid-looking body (and a malformed one)."""
    if not isinstance(route, APIRoute) or not route.dependant.body_params:
        form = dict.fromkeys(NAMED, "x") | {"code": kit}
        return [{}, {"data": form}] if "POST" in route.methods else [{}]
    params = route.dependant.body_params
    is_form = any(type(p.field_info).__name__ in ("Form", "File") for p in params)
    if len(params) == 1 and not is_form:
        body = _plausible(params[0].field_info.annotation, params[0].name, kit)
    else:
        body = {p.name: _plausible(p.field_info.annotation, p.name, kit) for p in params}
    if is_form:
        return [{}, {"data": {k: str(v) for k, v in body.items()}}]
    # Malformed JSON too: FastAPI parses the body before it solves a route's dependencies.
    return [{"json": {}}, {"json": body}, {"content": b"{not json", "headers": {"content-type": "application/json"}}]


def _rows(db) -> dict[str, int]:
    with db.read() as session:
        return {t.name: session.scalar(select(func.count()).select_from(t)) for t in SQLModel.metadata.sorted_tables}


def _expect_refused(response, route, method: str, status: int, who: str) -> None:
    where = f"{method} {route.path} as {who}"
    if status == 401 and response.status_code == 303:  # a browser's page request goes to the sign-in form
        # (the API reference, /api/docs, is a page for people: web/api_reference.py)
        assert method == "GET" and (not route.path.startswith("/api/") or route.path == "/api/docs"), where
        assert response.headers["location"].startswith("/login?next="), where
        return
    assert response.status_code == status, f"{where}: {response.status_code} {response.text[:200]}"
    if route.path.startswith("/api/"):
        assert set(response.json()) == {"error", "field"}, where  # the app's own error shape
    else:
        assert "text/html" in response.headers["content-type"], where


def _sweep(app, client, who: str, status: int, refuses, kit: str, study: str) -> int:
    """Every route `refuses` says this caller may not use, every method, both bodies."""
    asked = 0
    for route in gated_routes(app):
        if not hasattr(route, "methods"):
            continue  # the static files mount is public
        access = gate.declared(route, app)
        if not refuses(access):
            continue
        path = _path(route, kit, study)
        for method in sorted(route.methods - {"HEAD"}):
            for body in _bodies(route, kit):
                response = client.request(method, path, follow_redirects=False, **body)
                _expect_refused(response, route, method, status, who)
                asked += 1
    return asked


# --- the sweep -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_every_route_refuses_a_role_it_does_not_admit_before_reading_the_request(app, db, kit_world, role):
    username = _user_with(db, role)
    pages = sign_in(app, username)
    api = Client(app, headers={"Authorization": f"Bearer {_token_of(db, username)}"})
    before = _rows(db)
    kit = kit_world.active[0]

    def refuses(access: gate.Access) -> bool:
        return not access.admits(role)

    asked = 0
    for client in (pages, api):  # a page session and an API token: both ways of being someone
        asked += _sweep(app, client, role.value, 403, refuses, kit, kit_world.study)
    assert _rows(db) == before, "a refused request wrote something"
    if role is not Role.admin:  # every role but the administrator is kept out of the user pages
        assert asked > 0


@pytest.mark.parametrize("credentials", ["none", "unknown token", "ended session"])
def test_every_route_but_the_public_ones_answers_401_to_an_anonymous_caller(app, db, kit_world, credentials):
    client = Client(app)
    if credentials == "unknown token":
        client.headers["Authorization"] = "Bearer cb_not-a-token-of-cellbench"
    elif credentials == "ended session":
        client = sign_in(app, _user_with(db, Role.qa))
        client.submit("/logout")
    before = _rows(db)
    asked = _sweep(app, client, credentials, 401, lambda access: not access.public, kit_world.active[0],
                   kit_world.study)
    assert asked > 300  # every route but three, most with two bodies
    assert _rows(db) == before, "a refused request wrote something"


def test_the_sweep_would_catch_a_route_that_reads_the_body_before_it_asks_who_is_calling(settings, db):
    """Without the gate, FastAPI parses the body before it runs a route's role dependency: a
    malformed body got 422 from anyone (and, before the scan route declared its roles, `{}` did);
    with the gate, 401."""
    malformed = {"content": b"{not json", "headers": {"content-type": "application/json"}}
    ungated = create_app(settings, password_hasher=FAST_HASHER, database=db)
    ungated.user_middleware = [m for m in ungated.user_middleware if m.cls is not gate.Gate]
    assert TestClient(ungated).post("/api/v1/scan", **malformed).status_code == 422
    gated = create_app(settings, password_hasher=FAST_HASHER, database=db)
    assert TestClient(gated).post("/api/v1/scan", **malformed).status_code == 401


def test_a_route_that_declares_no_access_stops_the_app(app):
    @app.get("/open-by-accident")
    def open_by_accident() -> dict[str, str]:
        return {}

    with pytest.raises(gate.Undeclared, match="GET /open-by-accident declares no access"):
        gate.check(app, gated_routes)


def test_the_public_routes_are_the_sign_in_the_health_probe_and_the_static_files(app):
    public = sorted(f"{'/'.join(sorted(r.methods - {'HEAD'}))} {r.path}" for r in gated_routes(app)
                    if hasattr(r, "methods") and gate.declared(r, app).public)
    # The renewal after an idle timeout cannot need the session it renews: it checks that session's
    # cookie, its form token and its user's password itself (users.renew_session).
    assert public == ["GET /health", "GET /login", "POST /login", "POST /session/renew"]
    assert Client(app).get("/static/app.css").status_code in (200, 404)  # served or absent, never refused


def test_domain_code_never_imports_the_gate():
    graph = blinding_support.imports_only(blinding_support.import_graph())
    interface = ("cellbench.web", "cellbench.api", "cellbench.app", "cellbench.cli", "cellbench.gate")
    importers = sorted(source for source, edges in graph.edges.items()
                       if not any(source == i or source.startswith(i + ".") for i in interface)
                       and any(edge.target == "cellbench.gate" for edge in edges))
    assert importers == []


# --- the API's description ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/openapi.json", "/api/docs"])
def test_the_api_description_needs_a_signed_in_user(app, as_, path):
    refused = Client(app).get(path, follow_redirects=False)
    if path.endswith(".json"):
        assert refused.status_code == 401 and refused.json()["error"] == "Please sign in."
    else:  # the reference is a page for people: to the sign-in form, and back after it
        assert refused.status_code == 303 and refused.headers["location"].startswith("/login?next=/api/docs")
    assert as_("olivia").get(path).status_code == 200


# --- the audit-trail review ----------------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["mette", "adam", "peter", "olivia"])
def test_only_qa_reaches_the_audit_review_even_with_a_wrong_password(as_, db, username):
    client = as_(username)
    seq = _rows(db)["audit_event"]
    response = client.submit("/audit/review", {"to_seq": str(seq), "password": "wrong password"})
    assert response.status_code == 403
    assert "This needs the qa role." in response.text
    assert "signed in" not in response.text  # QA's pending trail is not rendered
    assert _rows(db)["audit_event"] == seq  # no failed-password count either: the password was never read


def test_qa_with_a_wrong_password_sees_the_review_page_again_and_the_attempt_counted(as_, db):
    anna = as_("anna")
    seq = _rows(db)["audit_event"]
    response = anna.submit("/audit/review", {"to_seq": str(seq), "password": "wrong password"})
    assert response.status_code == 401 and "Audit" in response.text
    with db.read() as session:
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()  # type: ignore[attr-defined]
    assert last.user_name == "Anna QA" and last.field == "failed_logins"


# --- the monitor reads, never writes --------------------------------------------------------------------------


def _sightings(db) -> tuple[int, int]:
    with db.read() as session:
        return (session.scalar(select(func.count()).select_from(CustodyEvent)),
                session.scalar(select(func.count()).select_from(AuditEvent)))


def test_a_monitors_scan_is_a_lookup_that_leaves_no_sighting(app, db, kit_world, as_):
    kit = kit_world.active[0]
    label = qrpayload.make_payload(kit, SECRET)
    token, mette = _token_of(db, "mette"), as_("mette")  # signing in is on record: before counting
    before = _sightings(db)
    by_token = Client(app, headers={"Authorization": f"Bearer {token}"}).post(
        "/api/v1/scan", json={"code": label, "station": "RH-ENT"})
    assert by_token.status_code == 200 and by_token.json()["kit_number"] == kit
    by_session = mette.post("/api/v1/scan", json={"code": label, "station": "RH-ENT"})
    assert by_session.json() == by_token.json()
    station = mette.submit("/scan", {"code": label, "station": "RH-ENT"})
    assert station.status_code == 200 and kit in station.text
    assert _sightings(db) == before


def test_a_pharmacists_scan_records_the_sighting(as_, db, kit_world):
    kit, frida = kit_world.active[0], as_("frida")
    custody, events = _sightings(db)
    assert frida.post("/api/v1/scan", json={"code": qrpayload.make_payload(kit, SECRET),
                                            "station": "RH-ENT"}).status_code == 200
    assert _sightings(db) == (custody + 1, events + 1)


def test_no_route_lets_a_monitor_or_an_administrator_change_gmp_data(app):
    """The writes each may make, read from the declarations: the monitor's are lookups (a scan, a
    kit found by its label) and her signed verification of a site's accountability against source
    (a record of her own, changing no GMP data); the administrator's are users and its own account."""
    writes = {role: sorted(f"{m} {r.path}" for r in gated_routes(app) if hasattr(r, "methods")
                           for m in r.methods - {"GET", "HEAD"}
                           if not gate.declared(r, app).public and gate.declared(r, app).admits(role))
              for role in (Role.monitor, Role.admin)}
    own_account = ["POST /account/password", "POST /account/tokens", "POST /account/tokens/{token_id}/revoke",
                   "POST /logout"]
    assert writes[Role.monitor] == sorted([*own_account, "POST /api/v1/kits/scan", "POST /api/v1/scan",
                                           "POST /kits/scan", "POST /scan", "POST /accountability/verifications",
                                           "POST /api/v1/accountability/verifications"])
    assert [w for w in writes[Role.admin] if w not in own_account] == [
        w for w in writes[Role.admin] if w.split()[1].startswith(("/admin/users", "/api/v1/users"))]


# --- the audit trail's scope by role ----------------------------------------------------------------------------


def _types_in_csv(text: str) -> set[str]:
    lines = text.splitlines()
    column = lines[0].split(",").index("entity_type")
    return {line.split(",")[column] for line in lines[1:] if line}


DONOR = "D-0042"


@pytest.fixture
def donor(as_, kit_world) -> str:
    """A donor on record (a donor record's events: outside the monitor's and the admin's trail)."""
    registered = as_("olivia").post("/api/v1/donors", json={"code": DONOR, "consent_date": "2026-01-02",
                                                             "consent_reference": "ICF v3"})
    assert registered.status_code == 201, registered.text
    return DONOR


def test_each_reader_sees_the_trail_of_its_job_on_the_page_the_csv_and_the_api(as_, kit_world, donor):
    seen = {}
    for username in ("anna", "mette", "adam"):
        client = as_(username)
        in_csv = _types_in_csv(client.get("/audit.csv").text)
        in_api = {e["entity_type"] for e in client.get("/api/v1/audit", params={"limit": 1000}).json()["events"]}
        page = client.get("/audit").text
        assert in_csv == in_api, username
        seen[username] = (in_csv, page)
    qa, monitor, admin = (seen[u][0] for u in ("anna", "mette", "adam"))
    assert {"donor", "specification", "user", "kit", "blinded_lot"} <= qa
    assert monitor and monitor <= TRIAL_RECORDS and "kit" in monitor
    assert admin == USER_RECORDS
    assert donor in seen["anna"][1]
    assert donor not in seen["mette"][1] and donor not in seen["adam"][1]


def test_a_records_history_outside_the_readers_scope_is_empty(as_, kit_world, donor):
    history = f"/api/v1/audit/donor/{donor}"
    assert as_("anna").get(history).json()
    assert as_("mette").get(history).json() == []
    assert as_("adam").get(history).json() == []
    assert as_("mette").get(f"/api/v1/audit/kit/{kit_world.active[0]}").json()
    assert "donor registered" not in as_("mette").get(f"/audit/donor/{donor}").text


def test_the_trail_filter_offers_only_the_record_types_in_scope(as_):
    page = as_("adam").get("/audit").text
    offered = set(re.findall(r"<option (?:selected )?>([a-z_]+)</option>", page))
    assert offered <= USER_RECORDS
