"""The page floor's one read: a GET page that reads is identified in its own read, so the gate and
the page share one connection and one snapshot; the read is given back when the request ends,
whether the page rendered, failed or refused; a route that writes never gets a read begun before
its write."""
from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from cellbench import gate, users
from cellbench.app import iter_routes

from .conftest import sign_in
from .test_floor import heard


def checkouts(db, work) -> int:
    return len(heard(db, "checkout", work))


def route(app, method: str, path: str) -> APIRoute:
    return next(r for r in iter_routes(app.routes)
                if isinstance(r, APIRoute) and r.path == path and method in (r.methods or ()))


def test_a_page_that_reads_takes_one_connection_for_who_is_asking_and_what_it_shows(app, db, people):
    client = sign_in(app, "anna")
    client.get("/account")
    assert checkouts(db, lambda: client.get("/account")) == 1


def test_the_page_read_is_given_back_when_the_page_is_sent(app, db, people):
    client = sign_in(app, "anna")
    before = db.engine.pool.checkedout()
    assert client.get("/account").status_code == 200
    assert db._gate._open == 0
    assert db.engine.pool.checkedout() == before


def test_the_page_read_is_given_back_when_the_page_fails(app, db, people, monkeypatch):
    client = sign_in(app, "anna")
    before = db.engine.pool.checkedout()

    def broken(*_args):
        raise RuntimeError("the page failed")

    monkeypatch.setattr(users, "tokens_of", broken)
    with pytest.raises(RuntimeError, match="the page failed"):  # the test client raises what the app logged
        client.get("/account")
    assert db._gate._open == 0
    assert db.engine.pool.checkedout() == before


def test_the_page_read_is_given_back_when_the_caller_is_refused(app, db, people):
    client = sign_in(app, "anna")
    with db.write() as s:
        users.by_username(s, "anna").locked = True
    before = db.engine.pool.checkedout()
    assert client.get("/account", follow_redirects=False).status_code == 303
    assert db._gate._open == 0
    assert db.engine.pool.checkedout() == before


def test_only_a_get_page_that_reads_is_identified_in_its_own_read(app):
    assert gate.declared(route(app, "GET", "/account"), app).reads
    # A post writes, then may read what it wrote: a read begun at the gate would not see it.
    assert not gate.declared(route(app, "POST", "/account/tokens"), app).reads
    assert not gate.declared(route(app, "GET", "/login"), app).reads  # public: nobody to identify


def test_every_form_of_the_account_page_carries_the_sessions_token(app, people):
    client = sign_in(app, "anna")
    page = client.get("/account").text
    field = f'<input type="hidden" name="csrf_token" value="{client.csrf()}">'
    assert page.count(field) == 3  # change password, create a token, sign out
    assert client.submit("/account/tokens", {"name": "balance"}).status_code in (200, 303)
    page = client.get("/account").text
    assert "balance" in page and page.count(field) == 4  # and the new token's revoke button
