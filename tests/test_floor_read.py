"""The page floor's one read: a GET page that reads is identified in its own read, so the gate and
the page share one connection and one snapshot; the read is given back when the request ends,
whether the page rendered, failed or refused; a route that writes never gets a read begun before
its write."""
from __future__ import annotations

import anyio.to_thread
import pytest
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlmodel import Session

from cellbench import gate, users
from cellbench.app import iter_routes, small_reads_in_the_loop
from cellbench.deps import Viewer, current_viewer, read_session
from cellbench.wal import on_event_loop

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


# --- where a page's work runs: thread hops ------------------------------------------------------------


def hops(monkeypatch, work) -> int:
    """How many times the app handed work to the thread pool while `work` ran."""
    count = 0
    original = anyio.to_thread.run_sync

    async def counted(*args, **kwargs):
        nonlocal count
        count += 1
        return await original(*args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    try:
        work()
    finally:
        monkeypatch.setattr(anyio.to_thread, "run_sync", original)
    return count


def test_a_small_read_runs_in_the_event_loop_on_sqlite_and_in_the_thread_pool_on_postgresql(app, db, people,
                                                                                             monkeypatch):
    client = sign_in(app, "anna")
    client.get("/account")
    ran_in_the_loop = []
    tokens_of = users.tokens_of

    def noted(*args):
        ran_in_the_loop.append(on_event_loop())
        return tokens_of(*args)

    monkeypatch.setattr(users, "tokens_of", noted)
    assert client.get("/account").status_code == 200
    assert ran_in_the_loop == [db.is_sqlite]
    # SQLite: no hop at all; PostgreSQL: who is asking, the page, the read's end (each a round trip)
    assert hops(monkeypatch, lambda: client.get("/account")) == (0 if db.is_sqlite else 3)
    assert hops(monkeypatch, lambda: client.get("/search")) == (0 if db.is_sqlite else 3)


def test_a_page_that_is_not_a_small_read_still_runs_in_the_thread_pool(app, db, people, monkeypatch):
    client = sign_in(app, "adam")
    assert not gate.declared(route(app, "GET", "/admin/users"), app).small  # a list
    assert hops(monkeypatch, lambda: client.get("/admin/users")) >= 1


def test_taking_the_database_costs_no_thread_hop(app, db, people, monkeypatch):
    client = sign_in(app, "anna")
    # a form post that takes the database (get_db) and writes: the write alone goes to the thread pool
    assert "get_db" in {getattr(call, "__name__", "") for call in gate.calls(route(app, "POST", "/logout").dependant)}
    assert hops(monkeypatch, lambda: client.submit("/logout", {})) == 2  # who is asking, and the write


def test_a_small_read_whose_dependency_would_hop_to_the_thread_pool_stops_the_app(app, monkeypatch):
    def blocking(request: Request) -> None:
        return None

    @app.get("/account/plain")
    def plain(viewer: Viewer = Depends(current_viewer), session: Session = Depends(read_session),
              _=Depends(blocking)) -> dict[str, str]:
        return {}

    monkeypatch.setattr(gate, "SMALL_READS", gate.SMALL_READS | {"/account/plain"})
    with pytest.raises(TypeError, match=r"GET /account/plain is a small read, but its dependencies \['blocking'\]"):
        small_reads_in_the_loop(app)
