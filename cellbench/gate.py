"""The gate: who may use each route, decided before the route reads anything the caller sent.

A route declares who may use it once, in its own dependency (deps.py): `require(...)` or
`form_by(...)` name the roles, `current_viewer` or `form_viewer` admit anyone signed in. The gate
reads those declarations, identifies the caller (page session cookie or API token) and answers
401 or 403 before FastAPI parses a body or a query string: an anonymous caller or a role without
access gets neither a validation error nor a rendered page, and nothing is written for them. The
CSRF check of form posts stays in the dependencies, after the role; an API change made with the
page session's cookie carries its token in a header, checked here (deps.check_api_csrf).

Routes that need no sign-in are named in PUBLIC, here and only here. A route that declares
nothing and is not public stops the app from starting (`check`), so a new route cannot be open
by accident. This is interface code: app.py installs it; domain code never imports it.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import Response
from fastapi.routing import APIRoute
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, Mount, Route, get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from . import users
from .deps import (
    FormRoleCheck,
    RoleCheck,
    bearer,
    check_api_csrf,
    current_viewer,
    db_of,
    end_read,
    identify,
    identify_reading,
    read_session,
    settings_of,
)
from .dispatch import bucket
from .errors import DomainError, NotAuthenticated
from .models import Role

# Everything a caller may reach without signing in: the sign-in form, the health probe for the
# load balancer, and the static files (CSS, scripts) the sign-in page needs.
# The renewal of a page session that ended idle is public too: it cannot need the session it renews
# (it checks the ended session's cookie, its form token and its user's password itself).
PUBLIC: frozenset[tuple[str, str]] = frozenset({("GET", "/login"), ("POST", "/login"), ("GET", "/health"),
                                                ("POST", "/session/renew")})
SIGNIN_HEADER = "X-Cellbench-Signin"
PUBLIC_MOUNTS: frozenset[str] = frozenset({"/static"})
# GET routes (sync, with deps.read_session) whose reads are a few statements on unique indexes,
# bounded whatever the data grows to (no list, no count, no pattern search): on SQLite they run in the
# event loop inside the read the gate opened (deps.in_the_loop states the rule), not in the thread
# pool. A route joins here, by its path, once its statements are shown flat (tests/test_floor*.py);
# their dependencies must be coroutines (app.py refuses one that would hop to the thread pool).
SMALL_READS: frozenset[str] = frozenset({"/account", "/search", "/api/v1/me"})


@dataclass(frozen=True)
class Access:
    """Who may use a route: anyone (public), anyone signed in (roles None), or one of `roles`."""

    public: bool = False
    roles: frozenset[Role] | None = None
    # A GET page that reads (deps.read_session): the gate identifies its caller in the page's own read.
    reads: bool = False
    # ... and its reads are small and indexed (SMALL_READS): on SQLite the route runs in the event loop.
    small: bool = False

    def admits(self, role: Role) -> bool:
        return self.public or self.roles is None or role in self.roles


ANYONE = Access(public=True)
SIGNED_IN = Access()


class Undeclared(RuntimeError):
    """A route says nothing about who may use it."""


def framework_pages(app: FastAPI) -> frozenset[str]:
    """FastAPI's own pages (the OpenAPI document, the API docs): for anyone signed in. They
    describe every endpoint, which is nobody's business before signing in."""
    return frozenset(p for p in (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
                     if p)


def calls(dependant: Dependant) -> Iterator[object]:
    """Every dependency a route's dependant calls, nested ones too."""
    for sub in dependant.dependencies:
        yield sub.call
        yield from calls(sub)


def declared(route: BaseRoute, app: FastAPI) -> Access:
    """The access a route declares; Undeclared if it declares none."""
    path = getattr(route, "path", "")
    if isinstance(route, Mount):
        if path in PUBLIC_MOUNTS:
            return ANYONE
        raise Undeclared(f"The mount {path} is not public and has no gate: list it in gate.PUBLIC_MOUNTS or remove it.")
    methods = set(getattr(route, "methods", None) or ()) - {"HEAD"}
    if methods and all((method, path) in PUBLIC for method in methods):
        return ANYONE
    if isinstance(route, APIRoute):
        called = list(calls(route.dependant))
        roles = [call.roles for call in called if isinstance(call, (RoleCheck, FormRoleCheck))]
        # Only a page that changes nothing: a route that writes and then reads must see its write,
        # which a read begun before it (at the gate) would not.
        reads = read_session in called and methods <= {"GET"}
        small = reads and path in SMALL_READS
        if roles:  # several checks on one route must all pass
            return Access(roles=frozenset.intersection(*roles), reads=reads, small=small)
        if current_viewer in called:
            return Access(reads=reads, small=small)
    elif path in framework_pages(app):
        return SIGNED_IN
    raise Undeclared(f"{'/'.join(sorted(methods))} {path} declares no access: give it a deps.require(...) "
                     f"or deps.form_by(...) dependency, deps.current_viewer for anyone signed in, or list it in "
                     f"gate.PUBLIC.")


@dataclass(frozen=True)
class _Entry:
    route: BaseRoute
    access: Access

    def matches(self, path: str, method: str) -> bool:
        if isinstance(self.route, Mount):
            return path == self.route.path or path.startswith(self.route.path + "/")
        assert isinstance(self.route, (Route, APIRoute))
        return bool(self.route.path_regex.match(path)) and method in (self.route.methods or ())


class Table:
    """Every route with its access, bucketed so that finding one costs a few regex matches, not
    one per route of the app (the scan endpoint is the pharmacy's hot path). Within a bucket the
    routes keep the app's order, so the gate picks the route the router will pick."""

    def __init__(self, routes: Iterable[BaseRoute], app: FastAPI):
        entries = [(bucket(getattr(r, "path", "")), _Entry(r, declared(r, app))) for r in routes]
        anywhere = [entry for key, entry in entries if key is None]
        self._buckets: dict[tuple[str, ...], list[_Entry]] = {}
        for key, _ in entries:
            if key is not None and key not in self._buckets:
                self._buckets[key] = [entry for k, entry in entries if k in (key, None)]
        self._anywhere = anywhere
        self.size = len(entries)

    def access(self, path: str, method: str) -> Access | None:
        """The access of the route the router will run for this request; None when no route
        matches (the router answers 404 or 405, which shows nothing)."""
        for entry in self._buckets.get(bucket(path) or (), self._anywhere):
            if entry.matches(path, method):
                return entry.access
        return None


Routes = Callable[[FastAPI], Iterable[BaseRoute]]


def check(app: FastAPI, routes: Routes) -> Table:
    """Every route declares who may use it, or the app does not start."""
    return Table(routes(app), app)


Respond = Callable[[Request, DomainError], Awaitable[Response]]


class Gate:
    """ASGI middleware: the caller identified and the route's roles checked before the route runs.
    The refusal is the app's own error response (`respond`): JSON under /api, a page or a redirect
    to sign in otherwise. The viewer is left in request.state for the route's dependencies."""

    def __init__(self, app: ASGIApp, respond: Respond, routes: Routes):
        self.app, self.respond, self.routes = app, respond, routes
        self._table: Table | None = None

    def table(self, app: FastAPI) -> Table:
        # Built at the first request, so that a route added after create_app is guarded too.
        if self._table is None:
            self._table = check(app, self.routes)
        return self._table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        access = self.table(scope["app"]).access(get_route_path(scope), scope["method"])
        if access is None or access.public:
            return await self.app(scope, receive, send)
        request = Request(scope)  # no receive: the gate never reads the body
        db, settings = db_of(request), settings_of(request)
        read: Session | None = None
        try:
            try:
                if bearer(request) is not None:
                    if db.is_sqlite:  # one Core query, in the loop: no thread hop
                        viewer = identify(request, db, settings)
                    else:  # on PostgreSQL the token's one query is a round trip that would hold the loop
                        viewer = await run_in_threadpool(identify, request, db, settings)
                elif access.reads:  # the page's read, begun here, handed to the route (deps.read_session)
                    viewer, read = await identify_reading(request, db, settings)
                    request.state.read = read
                else:  # a page session may be ended or touched (ORM reads and writes): in the thread pool
                    viewer = await run_in_threadpool(identify, request, db, settings)
                request.state.viewer = viewer  # the refusal page shows who is signed in, the route reuses it
                if access.roles is not None:
                    users.require_role(viewer.actor, *access.roles)
                check_api_csrf(request, viewer)  # after the role: a role without access is told that first
            except DomainError as refused:
                response = await self.respond(request, refused)
                if isinstance(refused, NotAuthenticated):
                    # Says "sign in first" apart from the 401 of a wrong signature password, so a page's
                    # script can ask for the password in place and send its pending save again.
                    response.headers[SIGNIN_HEADER] = "required"
                return await response(scope, receive, send)
            return await self.app(scope, receive, send)
        finally:  # once the whole response is sent (a streamed one too), or on any error
            if read is not None:
                await end_read(db, read)
