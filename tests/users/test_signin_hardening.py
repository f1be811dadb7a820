"""Sign-in that reveals nothing, locks that lift, rate limits, sessions that end with the password,
an idle timeout that is honoured, a password policy against guessing, fixed sign-in notices."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher, extract_parameters
from fastapi.testclient import TestClient
from sqlalchemy import select

from cellbench import clock, users
from cellbench.app import create_app
from cellbench.config import Settings
from cellbench.deps import IDLE_MESSAGE
from cellbench.errors import AuthenticationFailed, InvalidInput
from cellbench.models import ApiToken, AuditEvent, WebSession

from ..conftest import FAST_HASHER, PASSWORD, SECRET, actor_of, sign_in


class CountingHasher(PasswordHasher):
    """The test's hasher: the same costs as the world's, and it counts its verifications."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified += 1
        return super().verify(hash, password)


@pytest.fixture
def hasher(monkeypatch) -> CountingHasher:
    counting = CountingHasher()
    monkeypatch.setattr(users.POLICY, "hasher", counting)
    return counting


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def at():
    held = Clock()
    with clock.held(held):
        yield held


def events(db, action=None, entity_id=None):
    with db.read() as s:
        q = select(AuditEvent).order_by(AuditEvent.seq)
        if action:
            q = q.where(AuditEvent.action == action)
        if entity_id:
            q = q.where(AuditEvent.entity_id == entity_id)
        return list(s.scalars(q))


def refusal(db, username, password, address="10.0.0.1") -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as refused, db.write() as s:
        users.login(s, username, password, address)
    return refused.value


def lock(db, username):
    for _ in range(5):
        refusal(db, username, "wrong password, really")


# --- one answer, one verification ---------------------------------------------------------------


def test_unknown_wrong_locked_and_deactivated_all_get_the_same_message(db, people):
    unknown = refusal(db, "nobody", PASSWORD)
    wrong = refusal(db, "anna", "not the password at all")
    lock(db, "olivia")
    locked = refusal(db, "olivia", PASSWORD)  # the right password: still the same words
    with db.write() as s:
        users.deactivate(s, actor_of(db, "adam"), users.by_username(s, "oscar"), "left the unit")
    deactivated = refusal(db, "oscar", PASSWORD)
    assert {unknown.message, wrong.message, locked.message, deactivated.message} == {users.SIGNIN_REFUSED}
    assert {unknown.field, wrong.field, locked.field, deactivated.field} == {"password"}
    assert "locked" not in users.SIGNIN_REFUSED and "deactivated" not in users.SIGNIN_REFUSED
    # the trail still knows the reason
    assert events(db, "authentication refused", "olivia")[-1].reason == "account locked"
    assert events(db, "authentication refused", "oscar")[-1].reason == "account deactivated"


def test_the_sign_in_page_gives_the_same_words_for_an_unknown_and_a_locked_user(app, db, people):
    lock(db, "olivia")
    pages = []
    for username in ("nobody", "olivia"):
        client = TestClient(app)
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
        pages.append(client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token}))
    assert [p.status_code for p in pages] == [401, 401]
    assert all(users.SIGNIN_REFUSED in p.text and "locked" not in p.text for p in pages)


def test_an_unknown_and_an_existing_user_each_cost_exactly_one_verification_of_the_same_cost(db, people, hasher):
    refusal(db, "nobody", PASSWORD)
    assert hasher.verified == 1
    refusal(db, "anna", "not the password at all")
    assert hasher.verified == 2
    lock(db, "olivia")
    hasher.verified = 0
    refusal(db, "olivia", PASSWORD)  # locked: checked all the same, so the time tells nothing
    assert hasher.verified == 1
    with db.read() as s:
        real = extract_parameters(users.by_username(s, "anna").password_hash)
    dummy = extract_parameters(users.signin._dummy_hash())
    assert (dummy.time_cost, dummy.memory_cost, dummy.parallelism) == (real.time_cost, real.memory_cost,
                                                                       real.parallelism)


# --- a lock lifts itself ------------------------------------------------------------------------


def test_a_lock_lifts_after_the_set_time_and_the_lifting_is_audited(db, people, at):
    lock(db, "olivia")
    at.advance(minutes=14, seconds=59)
    refusal(db, "olivia", PASSWORD)
    at.advance(seconds=1)
    with db.write() as s:
        assert users.login(s, "olivia", PASSWORD, "10.0.0.1").username == "olivia"
    with db.read() as s:
        olivia = users.by_username(s, "olivia")
        assert not olivia.locked and olivia.locked_at is None and olivia.failed_logins == 0
    lifted = events(db, "user unlocked", "olivia")
    assert len(lifted) == 1 and lifted[0].reason == "lock expired after 15 minutes"


def test_a_wrong_password_after_the_lock_expired_counts_from_zero_again(db, people, at):
    lock(db, "olivia")
    at.advance(minutes=16)
    refusal(db, "olivia", "still wrong, sorry")
    with db.read() as s:
        olivia = users.by_username(s, "olivia")
        assert not olivia.locked and olivia.failed_logins == 1


# --- rate limits --------------------------------------------------------------------------------


def test_too_many_failures_from_one_address_refuse_even_the_right_password_without_checking_it(
        db, people, hasher, monkeypatch, at):
    monkeypatch.setattr(users.POLICY, "max_per_address", 4)
    for n in range(4):
        refusal(db, f"guess{n}", "whatever it is", address="203.0.113.9")
    hasher.verified = 0
    limited = refusal(db, "anna", PASSWORD, address="203.0.113.9")
    assert limited.message == users.SIGNIN_REFUSED and hasher.verified == 0
    with db.write() as s:  # another address is not held back
        assert users.login(s, "anna", PASSWORD, "198.51.100.7").username == "anna"
    at.advance(minutes=15, seconds=1)  # the window slides past the failures
    with db.write() as s:
        assert users.login(s, "anna", PASSWORD, "203.0.113.9").username == "anna"


def test_too_many_failures_for_one_username_from_many_addresses_are_refused_unchecked(db, people, hasher,
                                                                                       monkeypatch):
    monkeypatch.setattr(users.POLICY, "max_per_username", 3)
    for n in range(3):
        refusal(db, "Anna ", "not the password at all", address=f"10.1.0.{n}")  # case and blanks alike
    hasher.verified = 0
    assert refusal(db, "anna", PASSWORD, address="10.9.9.9").message == users.SIGNIN_REFUSED
    assert hasher.verified == 0
    with db.write() as s:
        assert users.login(s, "olivia", PASSWORD, "10.9.9.9").username == "olivia"


# --- the trail keeps no typed names -------------------------------------------------------------


def test_an_unknown_username_is_never_stored_verbatim_in_the_audit_trail(db, people):
    typed = "Tr0ub4dor&3-my-actual-password"  # typed into the username box by mistake
    refusal(db, typed, "whatever")
    refusal(db, typed, "whatever again")
    for event in events(db):
        assert typed not in " ".join(str(v) for v in vars(event).values())
        assert typed.lower() not in " ".join(str(v) for v in vars(event).values()).lower()
    failed = events(db, "sign-in failed", "(unknown user)")
    # the same keyed hash each time, so repeated attempts with one name can still be told apart
    assert len(failed) == 2 and failed[0].reason == failed[1].reason


def test_an_existing_username_is_named_in_the_trail(db, people):
    refusal(db, "anna", "not the password at all")
    assert events(db, "sign-in failed", "anna")[0].new_value == "1"


# --- a new password ends every other way in ------------------------------------------------------


def _token(db, username):
    with db.write() as s:
        user = users.by_username(s, username)
        return users.create_token(s, actor_of(db, username), user, "integration")


def _live_sessions(db, username):
    with db.read() as s:
        user = users.by_username(s, username)
        return list(s.scalars(select(WebSession).where(WebSession.user_id == user.id,
                                                       WebSession.ended_at.is_(None))))


def test_an_administrators_password_reset_revokes_tokens_and_ends_every_session(app, db, people):
    laptop, tablet = sign_in(app, "anna"), sign_in(app, "anna")
    token = _token(db, "anna")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    assert api.get("/api/v1/me").status_code == 200
    with db.write() as s:
        users.reset_password(s, actor_of(db, "adam"), users.by_username(s, "anna"), "a fresh one-off secret",
                             "forgotten")
    assert api.get("/api/v1/me").status_code == 401
    assert laptop.get("/", follow_redirects=False).status_code == 303
    assert tablet.get("/", follow_redirects=False).status_code == 303
    with db.read() as s:
        assert all(t.revoked_at is not None for t in s.scalars(select(ApiToken)))
    ended = events(db, "access ended", "anna")
    assert ended[-1].new_value == "2 other session(s) ended, 1 API token(s) revoked"
    assert ended[-1].user_name == "Adam Admin" or ended[-1].user_id == actor_of(db, "adam").user_id


def test_ones_own_password_change_keeps_this_session_and_ends_the_others_and_the_tokens(app, db, people):
    laptop, tablet = sign_in(app, "anna"), sign_in(app, "anna")
    token = _token(db, "anna")
    response = laptop.submit("/account/password", {"current_password": PASSWORD,
                                                   "new_password": "a fresh one-off secret",
                                                   "repeat_password": "a fresh one-off secret"})
    assert response.status_code == 303
    assert laptop.get("/account").status_code == 200
    assert tablet.get("/", follow_redirects=False).status_code == 303
    assert TestClient(app).get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert len(_live_sessions(db, "anna")) == 1
    assert events(db, "access ended", "anna")[-1].new_value == "1 other session(s) ended, 1 API token(s) revoked"


# --- idle time from the last request --------------------------------------------------------------


def test_a_session_used_every_20_seconds_outlives_a_one_minute_idle_limit(db, people, at):
    settings = Settings(database_url=db.url, secret_key=SECRET, demo=False, session_idle_minutes=1,
                        session_idle_minutes_by_role={})
    app = create_app(settings, password_hasher=FAST_HASHER, database=db)
    client = sign_in(app, "anna")
    for _ in range(12):  # four minutes of a request every 20 s
        at.advance(seconds=20)
        assert client.get("/", follow_redirects=False).status_code == 200
    at.advance(seconds=61)  # then a minute and a second with nothing
    assert client.get("/", follow_redirects=False).status_code == 303
    assert events(db, "session ended (idle timeout)", "anna")


# --- the password policy ------------------------------------------------------------------------


@pytest.mark.parametrize("weak", ["aaaaaaaaaaaa", "123456789012", "Password1234", "qwertyuiopas",
                                  "abcabcabcabc", "P@ssw0rd2024!", "sunshine2024!", "zyxwvutsrqpo"])
def test_guessable_passwords_are_refused_naming_the_field(db, people, weak):
    with pytest.raises(InvalidInput) as created, db.write() as s:
        users.create_user(s, actor_of(db, "adam"), "newbie", "New Person", weak, ["operator"])
    assert created.value.field == "password"
    with pytest.raises(InvalidInput) as changed, db.write() as s:
        users.change_own_password(s, users.by_username(s, "anna"), PASSWORD, weak, weak)
    assert changed.value.field == "new_password"
    with pytest.raises(InvalidInput) as reset, db.write() as s:
        users.reset_password(s, actor_of(db, "adam"), users.by_username(s, "anna"), weak, "forgotten")
    assert reset.value.field == "password"


def test_the_username_inside_the_password_is_refused(db, people):
    assert users.password_problem("xk-olivia-29-river", "olivia") == "The password must not contain the username."


def test_the_common_password_list_ships_in_the_package_and_passphrases_pass(db):
    assert len(users.strength.common()) > 10_000 and "dragon" in users.strength.common()
    assert users.password_problem(PASSWORD, "anna") is None
    assert users.password_problem("cellbench-demo", "adam") is None  # the demo's published password


# --- the sign-in page's notice --------------------------------------------------------------------


def test_the_login_notice_shows_only_fixed_messages(anonymous):
    evil = "Your account is compromised: call +1 555 0100 <b>now</b>"
    page = anonymous.get("/login", params={"notice": evil})
    assert page.status_code == 200 and "555 0100" not in page.text and "compromised" not in page.text
    assert "You are signed out." in anonymous.get("/login?notice=signed-out").text
    # the app's own redirect to sign in (its words, not a key) still reads as before
    assert "inactivity" in anonymous.get("/login", params={"notice": IDLE_MESSAGE}).text
