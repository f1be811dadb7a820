"""Pages and errors: sign-in, role homes, and no 500s for unknown routes or bad input."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from cellbench import users
from cellbench.app import iter_routes

from .conftest import PEOPLE, sign_in


def test_an_anonymous_visitor_is_sent_to_sign_in_and_back_afterwards(anonymous, people, app):
    response = anonymous.get("/audit?user=x", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=/audit")
    login = anonymous.get(response.headers["location"])
    assert 'name="next" value="/audit?user=x"' in login.text


def test_sign_in_redirects_only_to_local_pages(app, people):
    client = sign_in(app, "anna")
    page = client.get("/login?next=//evil.example/x")
    assert 'name="next" value="/"' in page.text
    assert re.search(r'name="csrf_token" value="[^"]+"', page.text)


@pytest.mark.parametrize("username", list(PEOPLE))
def test_every_role_has_a_home_page_naming_its_duties(as_, username):
    page = as_(username).get("/")
    assert page.status_code == 200
    assert PEOPLE[username][0] in page.text  # the printed name, top right
    assert "Your recent actions" in page.text


def test_qa_home_shows_the_audit_review_that_is_due(as_):
    assert "day of the audit trail awaits your periodic review" in as_("anna").get("/").text
    assert "periodic review" not in as_("olivia").get("/").text


def test_the_wrong_password_on_the_sign_in_page_keeps_the_username(anonymous, people):
    page = anonymous.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = anonymous.post("/login", data={"username": "anna", "password": "nope", "csrf_token": token})
    assert response.status_code == 401
    assert users.SIGNIN_REFUSED in response.text and 'value="anna"' in response.text


def test_unknown_pages_give_a_404_page_or_json(as_, anonymous):
    page = as_("anna").get("/no/such/page")
    assert page.status_code == 404 and "There is no such page" in page.text and "<html" in page.text
    api = anonymous.get("/api/v1/nothing-here")
    assert api.status_code == 404 and api.json() == {"error": "There is no such page.", "field": None}


def test_bad_json_names_the_field(as_, app, db, people):
    with db.write() as s:
        token = users.create_token(s, users.cli_actor(), users.by_username(s, "adam"), "t")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    response = api.post("/api/v1/users", json={"username": "x", "full_name": "X", "password": 5, "roles": "qa"})
    assert response.status_code == 422 and response.json()["field"] in ("password", "roles")
    not_json = api.post("/api/v1/users", content=b"{not json", headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    assert api.get("/api/v1/audit", params={"limit": "lots"}).json()["field"] == "limit"
    assert api.get("/api/v1/audit", params={"since": "2026-01-01T00:00:00"}).status_code == 422


def test_no_route_answers_junk_with_a_server_error(app, as_):
    """Every route of the app, with junk in its path parameters and form, as the busiest users."""
    for username in ("anna", "adam", "frida"):
        client = as_(username)
        for route in iter_routes(app.routes):
            if route.path == "/logout":
                continue  # it would end the session the rest of the loop uses
            path = route.path
            for param in ("{username}", "{action}", "{token_id}", "{entity_type}", "{entity_id}"):
                path = path.replace(param, "%27%3B--%00junk")
            for method in route.methods - {"HEAD"}:
                if method == "POST":
                    response = client.post(path, data={"csrf_token": client.csrf(), "to_seq": "x", "roles": "zz"})
                else:
                    response = client.request(method, path)
                assert response.status_code < 500, f"{method} {route.path} as {username}: {response.status_code}"


def test_the_openapi_document_describes_the_api_to_a_signed_in_user(as_):
    spec = as_("olivia").get("/api/v1/openapi.json").json()
    assert {"/api/v1/me", "/api/v1/users", "/api/v1/audit"} <= set(spec["paths"])
    assert not any(p.startswith("/admin") or p == "/login" for p in spec["paths"])


@pytest.mark.parametrize("username,path", [("anna", "/audit/review"), ("anna", "/account"),
                                           ("adam", "/admin/users/new"), ("adam", "/admin/users/olivia"),
                                           ("frida", "/")])
def test_every_form_on_a_page_carries_the_sessions_csrf_token(as_, username, path):
    client = as_(username)
    page = client.get(path).text
    forms = page.count("<form method=\"post\"")
    tokens = re.findall(r'name="csrf_token" value="([^"]*)"', page)
    assert forms >= 1 and len(tokens) == forms
    assert set(tokens) == {client.csrf()}
