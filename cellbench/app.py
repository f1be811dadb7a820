"""The FastAPI application: pages for people, /api/v1 for integrations, one error handler."""
from __future__ import annotations

import asyncio
import gc
import importlib
import inspect
import logging
import pkgutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from urllib.parse import quote

from argon2 import PasswordHasher
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import api, clock, demo_marker, dispatch, display, gate, inputs, nav, notifications, openapi, startup, users, web
from .checkpoints import store as checkpoint_store
from .config import Settings, shipped
from .db import Database
from .deps import in_the_loop, over_tls
from .errors import DomainError, NotAuthenticated, body_error, unreadable_body
from .notices import SignNotices, secret_of
from .supply import resupply
from .templating import make_templates, render

log = logging.getLogger("cellbench")
OPENAPI_URL = "/api/v1/openapi.json"
API_REFERENCE = "/api/docs"  # a page for people, though under /api (web/api_reference.py)
STATIC = shipped("templates") / "static"


def create_app(settings: Settings | None = None, *, password_hasher: PasswordHasher | None = None,
               database: Database | None = None) -> FastAPI:
    settings = settings or Settings()
    users.configure(settings.password_min_length, settings.max_failed_logins, password_hasher,
                    **users.signin_settings(settings))
    clock.configure(settings.zone)
    if database is None:  # refused before anything opens it for writing: a damaged or newer database
        startup.refuse_to_serve(settings)
    db = database or Database(settings.url, background_checkpoint=True, wal_limit_mb=settings.sqlite_wal_limit_mb)
    if database is None:  # the served app, however started (cellbench serve, its workers, uvicorn --factory)
        settings.check_for_production(demo_database=demo_marker.is_demo_database(db))
        # Every write signs the chain head: no server without the key (the demo makes its own).
        checkpoint_store.install_key(settings.checkpoint_key_path, create_missing=settings.demo)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        freeze_startup_heap()
        sender = notifications.background(db, settings)  # None when the settings send nothing
        # The served app evaluates resupply in the background; an app handed its database (tests,
        # benchmarks) leaves that to its caller, so nothing writes behind a test's back.
        evaluator = asyncio.create_task(_resupply(db)) if database is None else None
        hourly = asyncio.create_task(_hourly_checkpoints(db)) if database is None else None
        yield
        for task in (evaluator, hourly):
            if task:
                task.cancel()
        if sender is not None:
            sender.stop()
        if database is None:
            db.dispose()

    # The API reference is the package's own page (web/api_reference.py, behind sign-in), not
    # FastAPI's Swagger UI, which loads its scripts from a public CDN.
    app = FastAPI(title="cellbench", version="0.1.0", lifespan=lifespan, docs_url=None,
                  openapi_url=OPENAPI_URL, redoc_url=None, swagger_ui_oauth2_redirect_url=None,
                  description="Batch record, release and blinded supply of an allogeneic ASC product.",
                  telemetry=None if settings.telemetry else {"tracing": False, "metrics": False, "logs": False})
    app.state.settings = settings
    app.state.notice_secret = secret_of(settings.secret_key)
    app.state.db = db
    app.state.templates = make_templates(settings.zone, reload=settings.template_reload)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    for router in _area_routers():
        app.include_router(router)
    _bound_ids(iter_routes(app.routes))
    app.state.nav = nav.build(list(iter_routes(app.routes)))
    _install_error_handlers(app)
    openapi.install(app, iter_routes(app.routes))  # the documented errors and file types, and its request rules
    gate.check(app, gated_routes)  # a route that declares no access stops the app here
    small_reads_in_the_loop(app)
    dispatch.install(app)  # a request is matched against the routes of its path's prefix only

    app.add_middleware(gate.Gate, respond=domain_error_response, routes=gated_routes)
    app.add_middleware(SignNotices, secret=app.state.notice_secret)
    app.add_middleware(SecurityHeaders, settings=settings)  # outermost: the gate's refusals carry the headers too
    return app


async def _resupply(db: Database) -> None:
    """Resupply off the request path (supply.resupply): the sites noted by kit moves and "no kit"
    answers every few seconds, and every site once a day."""
    daily_in = resupply.seconds_to_next_run()
    while True:
        await asyncio.sleep(resupply.POLL_SECONDS)
        daily_in -= resupply.POLL_SECONDS
        try:
            await asyncio.to_thread(_resupply_round, db, daily_in <= 0)
        except Exception:  # logged; the next round tries again
            log.exception("resupply evaluation failed")
        if daily_in <= 0:
            daily_in = resupply.seconds_to_next_run()


async def _hourly_checkpoints(db: Database, every: float = checkpoint_store.HOURLY_SECONDS) -> None:
    """A signed checkpoint every hour the chain moved (checkpoints.store), off the request path.
    The first is issued at start-up, not an hour after: a server restarted more often than hourly
    would otherwise never issue one, and a lot's evidence packet would have to prove the whole
    chain since its first event instead of its hours."""
    while True:
        try:
            await asyncio.to_thread(checkpoint_store.issue_if_moved, db, "hourly")
        except Exception:  # logged; the next hour tries again
            log.exception("the hourly checkpoint failed")
        await asyncio.sleep(every)


def _resupply_round(db: Database, daily: bool) -> None:
    with db.read() as session:  # nothing noted and not the daily run: no write transaction
        if not daily and not resupply.noted(session):
            return
    with db.write() as session:
        (resupply.evaluate_all if daily else resupply.process_noted)(session)


class SecurityHeaders:
    """Headers every response carries. Plain ASGI: BaseHTTPMiddleware costs about a millisecond a
    request, on every page.

    The policy allows scripts, styles, images and fonts from cellbench itself only, and no inline
    script: every page's script is a file under /static. Inline styles are allowed (style-src
    'unsafe-inline'): templates colour tags and size progress bars with style attributes, and a
    style cannot run code. No page may be framed (frame-ancestors, and X-Frame-Options for older
    browsers). HSTS only on a response that went out over TLS: sent over plain HTTP it is ignored,
    and a browser must not learn it from a test server on localhost."""

    CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; "
           "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
    HEADERS = (("content-security-policy", CSP), ("x-content-type-options", "nosniff"),
               ("x-frame-options", "DENY"), ("referrer-policy", "same-origin"), ("cache-control", "no-store"))
    HSTS = ("strict-transport-security", "max-age=31536000")

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app, self.trust_proxy = app, settings.trust_proxy
        # Encoded once: a response gets those of them it does not set itself (ASGI names are lower case).
        self._plain = tuple((name.encode(), value.encode()) for name, value in self.HEADERS)
        self._tls = (*self._plain, (self.HSTS[0].encode(), self.HSTS[1].encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        ours = self._tls if over_tls(scope, self.trust_proxy) else self._plain

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in ours if header[0] not in present)
                message["headers"] = headers
            await send(message)

        return await self.app(scope, receive, send_with_headers)


_HEAP = {"frozen": False}


def freeze_startup_heap() -> None:
    """Move what is alive when the first app of the process starts (modules, routes, compiled
    templates, the ORM's mappers: some 300,000 objects) out of the cycle collector's sight, once.

    Python's full collection walks every tracked object. Requests set it off every few dozen pages,
    and walking the start-up heap each time stopped a page for 0.3-0.5 s (the one slow request in
    six behind the ten-year benchmark's p95 spikes); frozen, a full collection walks what requests
    made. Once per process: a later app (tests build hundreds) would freeze its predecessors'
    leftovers, which then could never be collected."""
    if not _HEAP["frozen"]:
        gc.collect()
        gc.freeze()
        _HEAP["frozen"] = True


def _area_routers() -> Iterator[APIRouter]:
    """Every `router` in cellbench/web/*.py and cellbench/api/*.py: a new area is one new module."""
    modules = [f"{package.__name__}.{info.name}" for package in (web, api)
               for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name)]
    # FastAPI tries routers in order, and matching costs: the scan endpoint, the pharmacy's hot
    # path, comes first (measured: a quarter of a scan's time went on matching the routers before it).
    modules.sort(key=lambda name: name not in HOT_PATH_MODULES)
    for name in modules:
        module = importlib.import_module(name)
        if hasattr(module, "router"):
            yield module.router


HOT_PATH_MODULES = ("cellbench.api.scan", "cellbench.api.shipments")


def wants_json(request: Request) -> bool:
    if request.url.path.startswith("/api/"):
        return request.url.path != API_REFERENCE
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def error_response(request: Request, status: int, message: str, field: str | None = None) -> Response:
    if wants_json(request):
        return JSONResponse({"error": message, "field": field}, status_code=status)
    return render(request, "error.html", status_code=status, status=status, message=message, field=field)


async def domain_error_response(request: Request, exc: DomainError) -> Response:
    """A domain error as the caller sees it; the gate's refusals use it too."""
    if isinstance(exc, NotAuthenticated) and not wants_json(request) and request.method == "GET":
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return RedirectResponse(f"/login?next={target}&notice={quote(exc.message)}", status_code=303)
    return error_response(request, exc.status, exc.message, exc.field)


def _install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, domain_error_response)  # type: ignore[arg-type]

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        if (unreadable := body_error(first)) is not None:
            return error_response(request, unreadable.status, unreadable.message, unreadable.field)
        location = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form", "header")]
        field = ".".join(location) or None
        message = first.get("msg", "Invalid input.")
        if field and not wants_json(request):  # a person reads the field's name, not its key
            return error_response(request, 422, f"{display.label(location[-1])}: {message.lower()}.", field)
        return error_response(request, 422, f"{field}: {message}" if field else message, field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if (unreadable := unreadable_body(exc.status_code, exc.detail)) is not None:
            return error_response(request, unreadable.status, unreadable.message, unreadable.field)
        messages = {404: "There is no such page.", 405: "That action is not available here."}
        return error_response(request, exc.status_code, messages.get(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "Something went wrong; nothing was saved. The error was logged.")


def _bound_ids(routes: Iterable[BaseRoute]) -> None:
    """Every integer path parameter is an id the database can hold, or 'not found' naming it: 2^64
    in a path is a 404 like any unknown id, on every route, rather than a database overflow. One
    rule here, so a new route with an `int` id is bounded without anyone remembering to. Added
    before the first request: FastAPI builds the routes it matches from these, on first use."""
    for route in routes:
        if isinstance(route, APIRoute):
            ints = tuple(p.name for p in route.dependant.path_params if p.field_info.annotation is int)
            if ints:
                route.dependencies.append(Depends(_ids_within_range(ints)))


def _ids_within_range(names: tuple[str, ...]) -> Callable[[Request], Awaitable[None]]:
    async def ids_within_range(request: Request) -> None:  # a coroutine: a plain function hops threads
        for name in names:
            inputs.db_id(request.path_params.get(name), name, name.replace("_", " "))
    return ids_within_range


def small_reads_in_the_loop(app: FastAPI) -> None:
    """The sync GET routes declared small reads (gate.SMALL_READS) run as deps.in_the_loop says. Before
    the first request: FastAPI builds the routes it matches from their endpoints then. Their
    dependencies must all be coroutines, or the thread hop saved on the endpoint comes back."""
    for route in iter_routes(app.routes):
        if not isinstance(route, APIRoute) or not gate.declared(route, app).small:
            continue
        if hopping := [getattr(call, "__name__", repr(call)) for call in gate.calls(route.dependant)
                       if not _awaited(call)]:
            raise TypeError(f"GET {route.path} is a small read, but its dependencies {hopping} run in the "
                            "thread pool: make them coroutines (they must not wait for anything)")
        if not inspect.iscoroutinefunction(route.endpoint):
            route.endpoint = in_the_loop(route.endpoint)


def _awaited(call: object) -> bool:
    """Whether FastAPI awaits this dependency in the event loop (not in the thread pool)."""
    return (inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)
            or inspect.iscoroutinefunction(type(call).__call__))  # a RoleCheck


def iter_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every endpoint route of the app, including those inside included routers (newer FastAPI
    wraps them), so tests can enumerate the app's own routes without naming them."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from iter_routes(inner.routes)
        elif getattr(route, "methods", None):
            yield route


def gated_routes(app: FastAPI) -> list[BaseRoute]:
    """What the gate guards: every endpoint route and every mount of the app."""
    return [*iter_routes(app.routes), *(route for route in app.routes if isinstance(route, Mount))]
