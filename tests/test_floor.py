"""The page floor: who is asking is read in one statement and nothing about them is cached across
requests, so a role taken, a lock, a deactivation or an ended session counts at the very next
request; the nav is worked out once per role set and shows only pages the roles may open; templates
are compiled once."""
from __future__ import annotations

import gc

from fastapi.testclient import TestClient
from sqlalchemy import event, select
from starlette.requests import Request

from cellbench import dispatch, users
from cellbench.app import create_app, iter_routes
from cellbench.config import Settings
from cellbench.deps import Viewer, identify
from cellbench.models import Role, Site
from cellbench.nav import Nav

from .conftest import FAST_HASHER, SECRET, actor_of, link_site_people, sign_in


def heard(db, name: str, work) -> list[tuple]:
    """The arguments of every `name` event of the engine while `work` runs."""
    seen: list[tuple] = []

    def note(*args) -> None:
        seen.append(args)

    event.listen(db.engine, name, note)
    try:
        work()
    finally:
        event.remove(db.engine, name, note)
    return seen


def statements(db, work) -> list[str]:
    executed = (args[2] for args in heard(db, "before_cursor_execute", work))
    return [sql for sql in executed if not sql.lstrip().upper().startswith(("BEGIN", "ROLLBACK", "COMMIT"))]


def nav_hrefs(client) -> list[str]:
    page = client.get("/search").text
    nav = page[page.index('<nav class="main"'):page.index("</nav>")]
    return [part.split('"')[0] for part in nav.split('href="')[1:]]


# --- who is asking, in one read ---------------------------------------------------------------------


def test_the_one_read_gives_the_same_actor_as_the_user_rules_for_everyone(db, people, kit_world):
    link_site_people(db)
    for username in people:
        with db.write() as s:
            token = users.start_session(s, users.by_username(s, username))
        with db.read() as s:
            ws, user, actor = users.live_session(s.connection(), token)
            assert (ws.id, user.username) == (users.token_digest(token), username)
            assert actor == users.actor(s, user)


def test_a_signed_in_page_asks_the_database_who_is_asking_once(app, db, people, kit_world):
    link_site_people(db)  # a site-role user: roles, sites and studies, all in that one statement
    client = sign_in(app, "frida")
    client.get("/search")
    asked = statements(db, lambda: client.get("/search"))
    who = [sql for sql in asked if "web_session" in sql]
    assert len(who) == 1, who
    assert not [sql for sql in asked if sql.lstrip().upper().startswith("UPDATE")]  # the touch is rare


def test_a_role_taken_away_counts_at_the_next_request_and_its_links_go(app, db, people):
    client = sign_in(app, "oscar")
    assert client.get("/specifications").status_code == 200
    assert "/specifications" in nav_hrefs(client)
    with db.write() as s:
        users.set_roles(s, actor_of(db, "adam"), users.by_username(s, "oscar"), ["verifier"], "moved to verification")
    assert client.get("/specifications").status_code == 403
    assert "/specifications" not in nav_hrefs(client)


def test_a_site_link_taken_away_counts_at_the_next_request(app, db, people, settings, kit_world):
    link_site_people(db)
    client = sign_in(app, "frida")
    cookie = f"cellbench_session={client.cookies.get('cellbench_session')}"

    def asking() -> Viewer:
        scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"cookie", cookie.encode())]}
        return identify(Request(scope), db, settings)

    with db.read() as s:
        home = s.scalars(select(Site.id).where(Site.code == "RH-ENT")).one()
    assert home in asking().actor.sites
    with db.write() as s:
        users.unlink(s, actor_of(db, "adam"), users.by_username(s, "frida"), site="RH-ENT", reason="left the site")
    assert asking().actor.sites == frozenset()


def test_a_user_locked_while_signed_in_is_refused_at_the_next_request(app, db, people):
    client = sign_in(app, "anna")
    assert client.get("/account").status_code == 200
    with db.write() as s:
        users.by_username(s, "anna").locked = True
    assert client.get("/account", follow_redirects=False).status_code == 303
    assert client.get("/api/v1/me").status_code == 401


def test_a_deactivated_user_and_an_ended_session_are_refused_at_the_next_request(app, db, people):
    anna, oscar = sign_in(app, "anna"), sign_in(app, "oscar")
    with db.write() as s:
        users.deactivate(s, actor_of(db, "adam"), users.by_username(s, "anna"), "left the company")
    assert anna.get("/account", follow_redirects=False).status_code == 303
    assert oscar.submit("/logout").status_code == 303
    assert oscar.get("/account", follow_redirects=False).status_code == 303


def test_the_user_of_the_one_read_can_be_changed_in_a_session_of_ones_own(app, db, people):
    client = sign_in(app, "anna")
    response = client.submit("/account/tokens", {"name": "balance"})
    assert response.status_code in (200, 303), response.text
    assert "balance" in client.get("/account").text


# --- route matching, by the path's prefix ----------------------------------------------------------------


def test_every_route_is_in_the_router_of_its_paths_prefix(app, people):
    sign_in(app, "anna").get("/account")  # the prefix routers are built at the first request
    by_prefix = app.router.middleware_stack
    assert isinstance(by_prefix, dispatch.ByPrefix)
    routers = by_prefix.routers()
    for route in iter_routes(app.routes):
        key = dispatch.bucket(route.path)
        chosen = routers[key].__self__.routes if key is not None else app.router.routes  # type: ignore[union-attr]
        assert any(route in iter_routes([entry]) for entry in chosen), route.path
    assert len(routers[("account",)].__self__.routes) < len(app.router.routes) / 4  # type: ignore[union-attr]


def test_matching_by_prefix_answers_as_the_whole_router_did(app, people):
    client = sign_in(app, "anna")
    assert client.get("/account").status_code == 200
    assert client.get("/account/", follow_redirects=False).headers["location"].endswith("/account")  # the slash
    assert client.get("/no-such-area/at-all").status_code == 404
    assert client.get("/account/no-such-page").status_code == 404
    assert client.delete("/account").status_code == 405
    assert client.get("/api/v1/me").json()["username"] == "anna"
    assert client.get("/static/app.css").status_code in (200, 404)


# --- the nav, once per role set ---------------------------------------------------------------------


def test_the_nav_of_a_role_set_is_worked_out_once_and_holds_only_links_it_may_open(app):
    nav: Nav = app.state.nav
    for role in Role:
        share = nav.share(frozenset({role}))
        assert nav.share(frozenset({role})) is share  # cached: the same answer, not worked out again
        assert all(role in link.roles for link, _ in share)
        assert {link.href for link, _ in share} == {link.href for link in nav.links if role in link.roles}


def test_the_nav_key_is_the_whole_role_set(app):
    nav: Nav = app.state.nav
    both = {link.href for link, _ in nav.share(frozenset({Role.operator, Role.verifier}))}
    operator = {link.href for link, _ in nav.share(frozenset({Role.operator}))}
    verifier = {link.href for link, _ in nav.share(frozenset({Role.verifier}))}
    assert both == operator | verifier


def test_each_link_a_viewer_is_shown_opens_for_them(as_):
    for username in ("anna", "frida", "oscar", "adam", "mette"):
        client = as_(username)
        for href in nav_hrefs(client):
            assert client.get(href, follow_redirects=False).status_code in (200, 303), (username, href)


# --- templates, compiled once ------------------------------------------------------------------------


def test_templates_are_not_looked_at_on_disk_again_unless_asked_for(db):
    served = create_app(Settings(database_url=db.url, secret_key=SECRET, demo=False), password_hasher=FAST_HASHER,
                        database=db)
    assert served.state.templates.env.auto_reload is False
    editing = create_app(Settings(database_url=db.url, secret_key=SECRET, demo=False, template_reload=True),
                         password_hasher=FAST_HASHER, database=db)
    assert editing.state.templates.env.auto_reload is True


def test_the_header_names_the_viewers_roles_and_signs_out_with_the_session_token(as_):
    client = as_("oscar")
    page = client.get("/account").text
    assert '<span class="roles">Operator</span>' in page
    assert f'<input type="hidden" name="csrf_token" value="{client.csrf()}"><button class="link">Sign out' in page


def test_the_first_app_of_a_process_freezes_its_start_up_heap_out_of_the_collectors_sight(app):
    with TestClient(app):  # the lifespan runs
        assert gc.get_freeze_count() > 10_000, "modules, routes and templates are frozen"
