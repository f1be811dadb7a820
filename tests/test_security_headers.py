"""Sessions and secrets (issue 16): the headers every answer carries, Secure cookies, the CSRF token
of an API change made with the page session, and the API reference served from the package."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from cellbench import users
from cellbench.app import create_app
from cellbench.config import Settings
from cellbench.models import AuditEvent, User

from .conftest import FAST_HASHER, PASSWORD, SECRET, Client, chromium_path, launch_chromium, served, sign_in

NEW_USER = {"username": "newqa", "full_name": "New QA", "password": PASSWORD, "roles": ["qa"]}


def _csp(response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {part.split()[0]: part.partition(" ")[2] for part in (p.strip() for p in policy.split(";")) if part}


# --- headers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/", "/lots", "/api/v1/me", "/api/v1/nothing-here", "/static/confirm.js"])
def test_every_answer_carries_the_content_security_policy_and_its_friends(as_, path):
    response = as_("anna").get(path)
    csp = _csp(response)
    assert csp["default-src"] == "'self'" and csp["script-src"] == "'self'"  # no inline script, no other host
    assert csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'"
    assert "unsafe-inline" not in csp["script-src"] and "unsafe-eval" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-frame-options"] == "DENY"


def test_a_refusal_at_the_gate_carries_the_headers_too(anonymous):
    refused = anonymous.get("/api/v1/me")
    assert refused.status_code == 401 and "content-security-policy" in refused.headers


def test_hsts_is_sent_only_over_tls(app, people):
    plain = TestClient(app, base_url="http://cellbench.test").get("/login")
    assert "strict-transport-security" not in plain.headers
    secure = TestClient(app, base_url="https://cellbench.test").get("/login")
    assert secure.headers["strict-transport-security"] == "max-age=31536000"


def test_a_forwarded_https_counts_only_behind_a_trusted_proxy(db, people):
    forwarded = {"X-Forwarded-Proto": "https"}
    untrusted = create_app(Settings(database_url=db.url, secret_key=SECRET), password_hasher=FAST_HASHER, database=db)
    assert "strict-transport-security" not in TestClient(untrusted).get("/login", headers=forwarded).headers
    trusted = create_app(Settings(database_url=db.url, secret_key=SECRET, trust_proxy=True),
                         password_hasher=FAST_HASHER, database=db)
    assert "strict-transport-security" in TestClient(trusted).get("/login", headers=forwarded).headers


def _session_cookie(app) -> str:
    """The Set-Cookie of a sign-in over plain HTTP (the sign-in form's cookie sent back by hand:
    a Secure one is not sent over HTTP by a client, which is the point of it)."""
    page = TestClient(app).get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = TestClient(app).post("/login", data={"username": "anna", "password": PASSWORD, "csrf_token": token},
                                    headers={"Cookie": f"cellbench_login_csrf={token}"}, follow_redirects=False)
    assert response.status_code == 303
    return _set_cookie(response)


def _set_cookie(response) -> str:
    return next(v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith("cellbench_session"))


def test_session_cookies_are_secure_when_the_setting_says_so(db, people):
    plain = create_app(Settings(database_url=db.url, secret_key=SECRET), password_hasher=FAST_HASHER, database=db)
    cookie = _session_cookie(plain)
    assert "httponly" in cookie.lower() and "secure" not in cookie.lower()
    forced = create_app(Settings(database_url=db.url, secret_key=SECRET, secure_cookies=True),
                        password_hasher=FAST_HASHER, database=db)
    assert "secure" in _session_cookie(forced).lower().split("; ")


def test_session_cookies_are_secure_over_tls_without_the_setting(app, people):
    client = Client(app, base_url="https://cellbench.test")
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    response = client.post("/login", data={"username": "anna", "password": PASSWORD, "csrf_token": token},
                           follow_redirects=False)
    assert "secure" in _set_cookie(response).lower().split("; ")


# --- the API's CSRF token for the page session ---------------------------------------------------------


def _made(db, username: str) -> bool:
    with db.read() as s:
        return s.scalars(select(User).where(User.username == username)).first() is not None


def test_an_api_change_with_the_session_cookie_and_no_token_is_refused_and_changes_nothing(app, db, people):
    adam = sign_in(app, "adam")
    adam.api_csrf = False  # as another site's page would send it: the cookie, and no token
    with db.read() as s:
        events = len(s.scalars(select(AuditEvent.seq)).all())
    refused = adam.post("/api/v1/users", json=NEW_USER)
    assert refused.status_code == 403
    assert refused.json() == {"error": refused.json()["error"], "field": "X-CSRF-Token"}
    assert "X-CSRF-Token" in refused.json()["error"] and "Bearer" in refused.json()["error"]
    wrong = adam.post("/api/v1/users", json=NEW_USER, headers={"X-CSRF-Token": "not the session's"})
    assert wrong.status_code == 403
    assert not _made(db, "newqa")
    with db.read() as s:
        assert len(s.scalars(select(AuditEvent.seq)).all()) == events


def test_an_api_change_with_the_session_cookie_and_its_token_is_made(app, db, people):
    adam = sign_in(app, "adam")
    adam.api_csrf = False
    made = adam.post("/api/v1/users", json=NEW_USER, headers={"X-CSRF-Token": adam.csrf()})
    assert made.status_code == 201 and _made(db, "newqa")


def test_an_api_change_with_a_bearer_token_needs_no_csrf_token(app, db, people):
    with db.write() as s:
        token = users.create_token(s, users.cli_actor(), users.by_username(s, "adam"), "provisioning")
    made = TestClient(app, headers={"Authorization": f"Bearer {token}"}).post("/api/v1/users", json=NEW_USER)
    assert made.status_code == 201 and _made(db, "newqa")


def test_reading_the_api_with_the_session_cookie_needs_no_token(app, people):
    anna = sign_in(app, "anna")
    anna.api_csrf = False
    assert anna.get("/api/v1/me").json()["username"] == "anna"


def test_a_role_without_access_is_told_so_before_the_token(app, people):
    anna = sign_in(app, "anna")
    anna.api_csrf = False
    refused = anna.post("/api/v1/users", json=NEW_USER)
    assert refused.status_code == 403 and "admin" in refused.json()["error"]


def test_a_page_carries_its_sessions_token_for_its_scripts(as_):
    anna = as_("anna")
    assert f'<meta name="csrf-token" content="{anna.csrf()}">' in anna.get("/").text


# --- the API reference --------------------------------------------------------------------------------


def test_the_api_reference_is_a_page_of_the_package_behind_sign_in(app, as_, anonymous):
    refused = anonymous.get("/api/docs", follow_redirects=False)
    assert refused.status_code == 303 and refused.headers["location"].startswith("/login?next=/api/docs")
    page = as_("olivia").get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<code>POST /api/v1/users</code>" in page.text and "UserOut" in page.text
    assert "Parameters" in page.text and "Responses" in page.text
    # Nothing comes from another host: every src and href is the app's own.
    linked = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert linked and all(url.startswith(("/", "#")) for url in linked), [u for u in linked if "//" in u]
    assert "swagger" not in page.text.lower() and "cdn" not in page.text.lower()


def test_the_api_reference_is_rendered_once_and_the_same_for_every_reader(app, as_):
    # The reference is the app's OpenAPI document, fixed when the app is built: rendered once per
    # app, it is the same under the page of a blinded and of an unblinded reader.
    def reference(name: str) -> str:
        text = as_(name).get("/api/docs").text
        return text[text.index("<h1>API reference"):text.rindex("</section>")]

    assert reference("olivia") == reference("frida") == reference("olivia")
    assert app.state.api_reference_body.startswith("<h1>API reference")


def test_swagger_ui_and_its_oauth_redirect_are_gone(as_):
    assert as_("olivia").get("/docs/oauth2-redirect").status_code == 404


def test_the_openapi_document_is_read_with_an_api_token(app, db, people):
    with db.write() as s:
        token = users.create_token(s, users.cli_actor(), users.by_username(s, "anna"), "schemathesis")
    assert TestClient(app).get("/api/v1/openapi.json").status_code == 401
    spec = TestClient(app, headers={"Authorization": f"Bearer {token}"}).get("/api/v1/openapi.json")
    assert spec.status_code == 200 and "/api/v1/me" in spec.json()["paths"]


# --- no inline script in any template ---------------------------------------------------------------


def test_no_template_holds_an_inline_script_or_handler():
    from cellbench.config import shipped

    for template in shipped("templates").rglob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), f"{template}: inline <script>"
        assert not re.search(r"\son[a-z]+\s*=", text), f"{template}: an on…= handler"
        assert "javascript:" not in text, f"{template}: a javascript: URL"


# --- in a real browser: the pages' scripts run under the policy ------------------------------------------


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed (apt-get install chromium)")
def test_the_pages_scripts_run_under_the_policy_and_nothing_comes_from_another_host(app, people):
    from playwright.sync_api import sync_playwright

    with served(app) as live, sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page()
        blocked: list[str] = []
        elsewhere: list[str] = []
        page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
        page.on("request", lambda r: elsewhere.append(r.url) if not r.url.startswith(live) else None)
        page.goto(f"{live}/login")
        page.fill("input[name=username]", "anna")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"{live}/lots")
        with page.expect_navigation():  # the filter applies when chosen: page.js, not an onchange= handler
            page.select_option("select[name=state]", "released")
        assert "state=released" in page.url
        page.goto(f"{live}/api/docs")
        assert "POST /api/v1/users" in page.inner_text("main")
        page.goto(f"{live}/no-such-page")
        page.click("a[data-back]")  # the error page's "Go back": history, not a javascript: URL
        page.wait_for_url(f"{live}/api/docs")
        browser.close()
    assert blocked == [] and elsewhere == []
