"""Users and roles: creation, segregation of duties, lock-out, deactivation, passwords, tokens."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cellbench import users
from cellbench.app import iter_routes
from cellbench.errors import AuthenticationFailed, Forbidden, InvalidInput
from cellbench.models import ApiToken, AuditEvent, User, WebSession

from ..conftest import PASSWORD, actor_of, sign_in


def events(db, action=None, entity_id=None):
    with db.read() as s:
        q = select(AuditEvent).order_by(AuditEvent.seq)
        if action:
            q = q.where(AuditEvent.action == action)
        if entity_id:
            q = q.where(AuditEvent.entity_id == entity_id)
        return list(s.scalars(q))


def test_a_created_user_has_a_hashed_password_and_an_audited_creation(db, people):
    with db.read() as s:
        anna = users.by_username(s, "anna")
        assert anna.password_hash.startswith("$argon2id$")
        assert PASSWORD not in anna.password_hash
    created = events(db, "user created", "anna")
    assert len(created) == 1 and created[0].new_value == "Anna QA"
    assert events(db, "roles changed", "anna")[0].new_value == '["qa"]'


@pytest.mark.parametrize("roles", [["pharmacist", "operator"], ["admin", "qa"], ["investigator", "preparer"],
                                   ["monitor", "supply_manager"]])
def test_a_blinded_role_together_with_an_unblinded_one_is_refused(db, people, roles):
    admin = actor_of(db, "adam")
    with pytest.raises(InvalidInput) as refused, db.write() as s:
        users.create_user(s, admin, "mixed", "Mixed Roles", PASSWORD, roles)
    assert refused.value.field == "roles"
    assert "blinded role" in refused.value.message
    with db.read() as s:
        assert s.scalars(select(User).where(User.username == "mixed")).first() is None


def test_changing_roles_to_a_blinded_unblinded_mix_is_refused_and_changes_nothing(db, people):
    admin = actor_of(db, "adam")
    with pytest.raises(InvalidInput), db.write() as s:
        users.set_roles(s, admin, users.by_username(s, "olivia"), ["operator", "pharmacist"], "new job")
    with db.read() as s:
        assert {r.value for r in users.roles_of(s, users.by_username(s, "olivia").id)} == {"operator"}


def test_only_an_administrator_manages_accounts(db, people):
    with pytest.raises(Forbidden), db.write() as s:
        users.create_user(s, actor_of(db, "anna"), "newbie", "New Person", PASSWORD, ["operator"])


def test_a_short_password_is_refused_naming_the_field(db, people):
    with pytest.raises(InvalidInput) as refused, db.write() as s:
        users.create_user(s, actor_of(db, "adam"), "shorty", "Short Pass", "tiny", ["operator"])
    assert refused.value.field == "password"


def test_five_wrong_passwords_lock_the_account_and_every_attempt_is_audited(db, people):
    for _ in range(5):
        with pytest.raises(AuthenticationFailed), db.write() as s:
            users.login(s, "olivia", "wrong password, really")
    with db.read() as s:
        olivia = users.by_username(s, "olivia")
        assert olivia.locked and olivia.failed_logins == 5
    assert len(events(db, "sign-in failed", "olivia")) == 5
    lock = events(db, "user locked", "olivia")
    assert len(lock) == 1 and lock[0].reason == "5 failed password attempts; lifts after 15 minutes"
    # Even the right password no longer works, and that refusal is audited too.
    with pytest.raises(AuthenticationFailed) as refused, db.write() as s:
        users.login(s, "olivia", PASSWORD)
    assert refused.value.message == users.SIGNIN_REFUSED  # the form does not say the account exists
    assert events(db, "authentication refused", "olivia")[0].reason == "account locked"
    # An administrator unlocks it, with a reason; then the right password works again.
    with db.write() as s:
        users.unlock(s, actor_of(db, "adam"), users.by_username(s, "olivia"), "identity confirmed by phone")
    with db.write() as s:
        assert users.login(s, "olivia", PASSWORD).username == "olivia"
    with db.read() as s:
        assert users.by_username(s, "olivia").failed_logins == 0


def test_a_successful_sign_in_resets_the_failure_count(db, people):
    for _ in range(3):
        with pytest.raises(AuthenticationFailed), db.write() as s:
            users.login(s, "oscar", "wrong password, really")
    with db.write() as s:
        users.login(s, "oscar", PASSWORD)
    with db.read() as s:
        assert users.by_username(s, "oscar").failed_logins == 0


def test_an_unknown_username_gets_the_same_message_as_a_wrong_password(db, people):
    with pytest.raises(AuthenticationFailed) as unknown, db.write() as s:
        users.login(s, "nobody", PASSWORD)
    with pytest.raises(AuthenticationFailed) as wrong, db.write() as s:
        users.login(s, "anna", "not the password at all")
    assert unknown.value.message == wrong.value.message
    # the typed name is not kept (it might be a password typed in the wrong box): only its keyed hash
    assert events(db, "sign-in failed", "(unknown user)")[0].reason.startswith("unknown username (key ")
    assert not events(db, entity_id="nobody")


def test_a_deactivated_user_cannot_sign_in_and_is_never_deleted(db, people):
    with pytest.raises(InvalidInput), db.write() as s:
        users.deactivate(s, actor_of(db, "adam"), users.by_username(s, "oscar"), "  ")
    with db.write() as s:
        users.deactivate(s, actor_of(db, "adam"), users.by_username(s, "oscar"), "left the unit")
    with pytest.raises(AuthenticationFailed) as refused, db.write() as s:
        users.login(s, "oscar", PASSWORD)
    assert refused.value.message == users.SIGNIN_REFUSED
    assert events(db, "authentication refused", "oscar")[0].reason == "account deactivated"
    with db.read() as s:
        assert users.by_username(s, "oscar").active is False
    assert events(db, "user deactivated", "oscar")[0].reason == "left the unit"


def test_nobody_changes_their_own_roles_or_deactivates_themselves(db, people):
    admin = actor_of(db, "adam")
    with pytest.raises(Forbidden), db.write() as s:
        users.set_roles(s, admin, users.by_username(s, "adam"), ["qa"], "promotion")
    with pytest.raises(Forbidden), db.write() as s:
        users.deactivate(s, admin, users.by_username(s, "adam"), "bored")


def test_changing_ones_own_password_needs_the_current_one(db, people):
    new = "a new long password"
    with pytest.raises(AuthenticationFailed), db.write() as s:
        users.change_own_password(s, users.by_username(s, "anna"), "wrong current pw", new, new)
    with pytest.raises(InvalidInput) as differ, db.write() as s:
        users.change_own_password(s, users.by_username(s, "anna"), PASSWORD, new, "another one!!")
    assert differ.value.field == "repeat_password"
    with db.write() as s:
        users.change_own_password(s, users.by_username(s, "anna"), PASSWORD, new, new)
    with db.write() as s:
        assert users.login(s, "anna", new)
    assert events(db, "password changed", "anna")


# --- pages ------------------------------------------------------------------------------------


def test_an_admin_creates_a_user_on_the_page_and_a_refused_form_keeps_what_was_typed(as_, db):
    adam = as_("adam")
    refused = adam.submit("/admin/users", {"username": "nina", "full_name": "Nina Nurse", "password": "short",
                                           "roles": ["pharmacist"]})
    assert refused.status_code == 422
    assert 'value="Nina Nurse"' in refused.text and "at least 12 characters" in refused.text
    done = adam.submit("/admin/users", {"username": "nina", "full_name": "Nina Nurse", "password": PASSWORD,
                                        "roles": ["pharmacist"]})
    assert done.status_code == 303 and done.headers["location"].startswith("/admin/users/nina")
    page = adam.get("/admin/users/nina")
    assert "Nina Nurse" in page.text and "user created" in page.text


def test_the_page_refuses_a_mixed_role_user(as_, db):
    refused = as_("adam").submit("/admin/users", {"username": "mix", "full_name": "Mix Up", "password": PASSWORD,
                                                  "roles": ["pharmacist", "qa"]})
    assert refused.status_code == 422 and "blinded role" in refused.text
    with db.read() as s:
        assert s.scalars(select(User).where(User.username == "mix")).first() is None


def test_user_administration_is_for_admins_only(as_):
    assert as_("anna").get("/admin/users").status_code == 403
    assert as_("anna").submit("/admin/users/olivia/deactivate", {"reason": "x"}).status_code == 403
    assert as_("adam").get("/admin/users").status_code == 200


def test_an_admin_unlocks_an_account_on_the_page(app, as_, db):
    for _ in range(5):
        with pytest.raises(AssertionError):
            sign_in(app, "olivia", "definitely wrong")
    with db.read() as s:
        assert users.by_username(s, "olivia").locked
    assert "locked" in as_("adam").get("/admin/users").text
    done = as_("adam").submit("/admin/users/olivia/unlock", {"reason": "verified by phone"})
    assert done.status_code == 303
    assert sign_in(app, "olivia").get("/").status_code == 200


# --- sessions ---------------------------------------------------------------------------------


def test_a_page_session_ends_after_the_idle_timeout(app, as_, db):
    client = as_("anna")
    assert client.get("/").status_code == 200
    with db.write() as s:
        ws = s.scalars(select(WebSession).where(WebSession.ended_at.is_(None))).first()
        ws.last_seen_at = ws.last_seen_at - timedelta(minutes=16)
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert "inactivity" in client.get("/login?" + response.headers["location"].split("?", 1)[1]).text
    assert events(db, "session ended (idle timeout)", "anna")
    assert client.get("/", follow_redirects=False).status_code == 303  # the session stays ended


def test_signing_out_ends_the_session(as_, db):
    client = as_("anna")
    assert client.submit("/logout").status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303
    assert events(db, "signed out", "anna")


def test_a_form_post_without_the_csrf_token_is_refused_and_changes_nothing(as_, db):
    adam = as_("adam")
    response = adam.post("/admin/users", data={"username": "evil", "full_name": "Evil", "password": PASSWORD,
                                               "roles": ["qa"]}, follow_redirects=False)
    assert response.status_code == 403 and "expired" in response.text
    forged = adam.post("/admin/users", data={"username": "evil", "full_name": "Evil", "password": PASSWORD,
                                             "roles": ["qa"], "csrf_token": "forged"}, follow_redirects=False)
    assert forged.status_code == 403
    with db.read() as s:
        assert s.scalars(select(User).where(User.username == "evil")).first() is None


def test_the_sign_in_form_needs_its_csrf_token(anonymous, people):
    response = anonymous.post("/login", data={"username": "anna", "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 403


def test_every_html_form_post_route_checks_the_csrf_token(app, as_):
    """Enumerates the app's own POST pages, so a new one is covered without editing this test."""
    adam = as_("adam")
    posts = [r for r in iter_routes(app.routes) if "POST" in r.methods and not r.path.startswith("/api/")
             and r.path != "/login"]
    assert len(posts) >= 5
    for route in posts:
        path = route.path.replace("{username}", "olivia").replace("{action}", "unlock").replace("{token_id}", "1")
        response = adam.post(path, data={"reason": "x"}, follow_redirects=False)
        assert response.status_code == 403, f"{route.path} accepted a post without a CSRF token"


# --- API tokens -------------------------------------------------------------------------------


def test_an_api_token_works_until_it_is_revoked_and_only_its_hash_is_stored(app, as_, db):
    anna = as_("anna")
    page = anna.submit("/account/tokens", {"name": "LIMS bridge"})
    token = re.search(r'<code class="token">([^<]+)</code>', page.text).group(1)
    with db.read() as s:
        row = s.scalars(select(ApiToken)).one()
        assert token not in (row.token_hash, row.prefix) and row.prefix == token[:10]
    api = TestClient(app)
    me = api.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["username"] == "anna" and me.json()["roles"] == ["qa"]
    anna.submit(f"/account/tokens/{row.id}/revoke")
    refused = api.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]


def test_the_api_creates_users_and_names_the_bad_field(app, db, people):
    with db.write() as s:
        token = users.create_token(s, users.cli_actor(), users.by_username(s, "adam"), "provisioning")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    bad = api.post("/api/v1/users", json={"username": "x1", "full_name": "X", "password": PASSWORD,
                                          "roles": ["qa", "monitor"]})
    assert bad.status_code == 422 and bad.json()["field"] == "roles"
    missing = api.post("/api/v1/users", json={"username": "x1"})
    assert missing.status_code == 422 and missing.json()["field"] in ("full_name", "password", "roles")
    made = api.post("/api/v1/users", json={"username": "x1", "full_name": "X One", "password": PASSWORD,
                                           "roles": ["qa"]})
    assert made.status_code == 201 and made.json()["roles"] == ["qa"]
    locked = api.post("/api/v1/users/x1/deactivate", json={"reason": "test account"})
    assert locked.status_code == 200 and locked.json()["active"] is False


def test_text_with_a_nul_character_is_refused_alike_on_every_engine(app, db, people):
    with db.write() as s:
        token = users.create_token(s, users.cli_actor(), users.by_username(s, "adam"), "provisioning")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    response = api.post("/api/v1/users", json={"username": "nul", "full_name": "Nul\u0000Name", "password": PASSWORD,
                                               "roles": ["qa"]})
    assert response.status_code == 422 and response.json()["field"] == "full_name"
    with db.read() as s:
        assert s.scalars(select(User).where(User.username == "nul")).first() is None


def test_a_lone_surrogate_is_bad_input_naming_the_field_not_a_crash(app, db, people):
    with db.write() as s:
        token = users.create_token(s, users.cli_actor(), users.by_username(s, "adam"), "provisioning")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    response = api.post("/api/v1/users", content=b'{"username": "sur", "full_name": "A\\ud800B", "password": "'
                        + PASSWORD.encode() + b'", "roles": ["qa"]}', headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["field"] == "full_name"
