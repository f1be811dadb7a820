"""FastAPI dependencies: the database, who is asking, and the CSRF check for form posts.

Who may use a route is declared here and nowhere else: `require(...)` / `form_by(...)` name the
roles, `current_viewer` / `form_viewer` admit anyone signed in. The gate (gate.py) reads these
declarations and refuses before the route reads its body; the dependencies apply the same rule
again, which is all that guards a route of an app built without the gate."""
from __future__ import annotations

import functools
import hmac
import inspect
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import anyio
from fastapi import Depends, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.types import Scope

from . import users
from .audit import Actor
from .clock import utcnow
from .config import Settings
from .db import Database
from .errors import Forbidden, NotAuthenticated, undecodable_field
from .models import Role, User, WebSession

T = TypeVar("T")
SESSION_COOKIE = "cellbench_session"
# A page's script that calls the JSON API with the session cookie sends the session's form token in
# this header (the page has it in <meta name="csrf-token">); integrations send an API token instead.
CSRF_HEADER = "X-CSRF-Token"
_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOGIN_CSRF_COOKIE = "cellbench_login_csrf"
# The step page's script knows this answer by its status (401) and asks for the password in place;
# without the script, the words say that what was saved as a draft is kept.
IDLE_MESSAGE = ("Your session ended after a period of inactivity. Please sign in again; "
                "what you saved as a draft is kept.")


def db_of(request: Request) -> Database:
    return request.app.state.db


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


# The dependencies are coroutines though they wait for nothing: FastAPI runs a plain function
# dependency in the thread pool, a hop for every route that takes the database (over 200 of them).
async def get_db(request: Request) -> Database:
    return db_of(request)


async def get_settings(request: Request) -> Settings:
    return settings_of(request)


async def read_session(request: Request) -> AsyncIterator[Session]:
    """The route's read. A GET page's is the one the gate identified the caller in (request.state.read,
    closed by the gate once the response is sent): one snapshot for who is asking and what the page
    shows, one connection. Otherwise a read of its own, as db.read(): opening it touches nothing (the
    session begins at its first statement), so it opens in the event loop without a thread hop, unless
    a WAL catch-up is draining the reads (then in the thread pool, where it waits for it, as the loop
    must not), and it ends like the gate's (end_read)."""
    shared: Session | None = getattr(request.state, "read", None)
    if shared is not None:
        yield shared
        return
    db = db_of(request)
    session = await run_in_threadpool(db.open_read) if db.reads_held_back else db.open_read()
    try:
        yield session
    finally:
        await end_read(db, session)


SMALL_READ_REQUEST = "small_read_request"  # the parameter in_the_loop adds for the request


def in_the_loop(endpoint: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """A sync GET endpoint whose reads are small and indexed (gate.SMALL_READS), as a coroutine that
    runs it where its reads belong. The rule, enforced here: in the event loop only on SQLite and only
    inside the read the gate opened for the page (request.state.read: the caller identified, the read
    begun, so no statement waits for the WAL gate or a lock), saving the thread hop that was a good part
    of a small page's time; everywhere else in the thread pool: on PostgreSQL each statement is a round
    trip that would hold the loop, and a read opened here could wait for a WAL catch-up."""
    if getattr(endpoint, "__small_read__", False):  # route modules are shared by every app built
        return endpoint  # type: ignore[return-value]
    signature = inspect.signature(endpoint, eval_str=True)
    parameters = list(signature.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        raise TypeError(f"{endpoint.__qualname__}: a small read cannot take **kwargs")
    # FastAPI passes the request to one parameter only: the endpoint's own, or one added for it.
    own = next((p.name for p in parameters if p.annotation is Request), None)
    if own is None:
        parameters.append(inspect.Parameter(SMALL_READ_REQUEST, inspect.Parameter.KEYWORD_ONLY, annotation=Request))

    @functools.wraps(endpoint)
    async def run(*args: object, **kwargs: object) -> T:
        request = kwargs[own] if own is not None else kwargs.pop(SMALL_READ_REQUEST)
        assert isinstance(request, Request)
        if db_of(request).is_sqlite and getattr(request.state, "read", None) is not None:
            return endpoint(*args, **kwargs)
        return await run_in_threadpool(endpoint, *args, **kwargs)

    run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    run.__small_read__ = True  # type: ignore[attr-defined]
    return run


async def end_read(db: Database, session: Session) -> None:
    """Closes a request's read: a rollback, in the event loop on SQLite (a read transaction's end
    waits for no lock), in the thread pool on PostgreSQL (a round trip). Shielded: a cancelled
    request still gives its connection back and leaves the WAL gate's count right."""
    if db.is_sqlite:
        db.close_read(session)
        return
    with anyio.CancelScope(shield=True):
        await run_in_threadpool(db.close_read, session)


class Viewer:
    """Who is asking: the actor (id, name, roles) always; the user row when a route needs it. An
    API-token request is identified by one Core query (the scan's hot path, in the event loop)
    and reads its user row only if the route asks for it."""

    def __init__(self, user: User | None, actor: Actor, web_session: WebSession | None,
                 db: Database | None = None):
        self._user, self.actor, self._db = user, actor, db
        self.web_session = web_session  # None for API-token requests

    @property
    def user(self) -> User:
        if self._user is None:
            if self._db is None:
                raise NotAuthenticated("Please sign in.")
            with self._db.read() as session:
                self._user = session.get(User, self.actor.user_id)
            if self._user is None:
                raise NotAuthenticated("This account can no longer sign in.")
        return self._user

    @property
    def roles(self) -> frozenset[Role]:
        return self.actor.roles

    @property
    def is_blinded(self) -> bool:
        return self.actor.is_blinded

    @property
    def csrf_token(self) -> str | None:
        return self.web_session.csrf_token if self.web_session else None

    def has(self, *roles: Role) -> bool:
        return bool(self.actor.roles & set(roles))


def bearer(request: Request) -> str | None:
    """The API token of a request, if it carries one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def current_viewer(request: Request) -> Viewer:
    """The signed-in caller. The gate has identified it before the route began (and left it in
    request.state, where templates read who is signed in); without the gate, identify it now."""
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    if viewer is None:
        viewer = await run_in_threadpool(identify, request, db_of(request), settings_of(request))
        check_api_csrf(request, viewer)
        request.state.viewer = viewer
    return viewer


def check_api_csrf(request: Request, viewer: Viewer) -> None:
    """A change through the JSON API signed in by the page session's cookie must carry that
    session's form token in the X-CSRF-Token header: a browser sends the cookie with a request any
    other site makes it send, but only cellbench's own pages can read the token. Reading (GET)
    changes nothing; an API token (bearer) cannot be sent by another site, so it needs none."""
    if viewer.web_session is None or request.method not in _CHANGES or not request.url.path.startswith("/api/"):
        return
    if not _same(request.headers.get(CSRF_HEADER), viewer.csrf_token):
        raise Forbidden(f"A change through the API signed in by the page session must carry the page's form token "
                        f"in the {CSRF_HEADER} header; integrations use an API token (Authorization: Bearer …).",
                        field=CSRF_HEADER)


def identify(request: Request, db: Database, settings: Settings) -> Viewer:
    if (token := bearer(request)) is not None:
        with db.engine.connect() as conn:
            actor = users.actor_for_token(conn, token)
        if actor is None:
            raise NotAuthenticated("The API token is unknown, revoked, or its account is inactive.")
        return Viewer(None, actor, None, db)

    with db.read() as session:  # one statement: the session, its user, roles, sites and studies
        found = users.live_session(session.connection(), request.cookies.get(SESSION_COOKIE))
    return admitted(found, db, settings)


# What a page session needs written before its request goes on (checked, then write_due).
IDLE, TOUCH = "idle", "touch"


def checked(found: users.LiveSession | None, settings: Settings, now: datetime) -> tuple[Viewer, str | None]:
    """A page session's checks, without touching the database: the viewer, and what must be written
    first (IDLE: end the session, then refuse; TOUCH: note that it was used), or a refusal."""
    if found is None:
        raise NotAuthenticated("Please sign in.")
    ws, user, actor = found
    idle = users.idle_limit(actor.roles, settings.session_idle_minutes, settings.session_idle_minutes_by_role)
    if users.is_idle(ws, idle, now):
        return Viewer(user, actor, ws), IDLE
    if not user.active or user.locked:
        raise NotAuthenticated("This account can no longer sign in.")
    # rare: at most once a minute per session (users.touch_due)
    return Viewer(user, actor, ws), TOUCH if users.touch_due(ws, idle, now) else None


def write_due(db: Database, ws: WebSession, due: str, now: datetime) -> None:
    """checked's pending write, in its own transaction."""
    with db.write() as session:
        if due == IDLE:
            users.end_session(session, _live_session(session, ws.id), users.IDLE_ENDED)
        else:
            _live_session(session, ws.id).last_seen_at = now
    if due == IDLE:
        raise NotAuthenticated(IDLE_MESSAGE)


def admitted(found: users.LiveSession | None, db: Database, settings: Settings) -> Viewer:
    now = utcnow()
    viewer, due = checked(found, settings, now)
    if due is not None:
        assert viewer.web_session is not None  # a page session's viewer
        write_due(db, viewer.web_session, due, now)
    return viewer


def _identify_reading(request: Request, db: Database, settings: Settings) -> tuple[Viewer, Session]:
    session = db.open_read()
    try:
        found = users.live_session(session.connection(), request.cookies.get(SESSION_COOKIE))
        return admitted(found, db, settings), session
    except BaseException:
        db.close_read(session)
        raise


async def identify_reading(request: Request, db: Database, settings: Settings) -> tuple[Viewer, Session]:
    """identify for a page session, in a read left open for the route (read_session hands it over;
    the caller ends it with end_read). On SQLite the one indexed read runs in the event loop, as the
    API token's does (no thread hop), unless a WAL catch-up is draining the reads: then in the thread
    pool, where opening a read waits for it. A write the session needs (rare) goes to the thread pool;
    on PostgreSQL everything does (each statement is a round trip that would hold the loop)."""
    if not db.is_sqlite or db.reads_held_back:
        return await run_in_threadpool(_identify_reading, request, db, settings)
    session = db.open_read()
    try:
        now = utcnow()
        viewer, due = checked(users.live_session(session.connection(), request.cookies.get(SESSION_COOKIE)),
                              settings, now)
        if due is not None:
            assert viewer.web_session is not None
            await run_in_threadpool(write_due, db, viewer.web_session, due, now)
    except BaseException:
        db.close_read(session)
        raise
    return viewer, session


def over_tls(scope: Scope, trust_proxy: bool) -> bool:
    """Whether the request reached cellbench over TLS: its own scheme (uvicorn sets it from a local
    proxy's X-Forwarded-Proto), or, with CELLBENCH_TRUST_PROXY, the forwarded protocol of any proxy."""
    if scope.get("scheme") == "https":
        return True
    if not trust_proxy:
        return False
    forwarded = dict(scope.get("headers") or ()).get(b"x-forwarded-proto", b"")
    return forwarded.split(b",")[0].strip().lower() == b"https"


def secure_cookie(request: Request) -> bool:
    """Whether cookies go out Secure: always with CELLBENCH_SECURE_COOKIES, else over TLS."""
    settings = settings_of(request)
    return settings.secure_cookies or over_tls(request.scope, settings.trust_proxy)


def _live_session(session: Session, session_id: str) -> WebSession:
    ws = session.get(WebSession, session_id)
    if ws is None:
        raise NotAuthenticated("Please sign in.")
    return ws


def _same(a: object, b: object) -> bool:
    return isinstance(a, str) and isinstance(b, str) and bool(a) and bool(b) and hmac.compare_digest(a, b)


async def read_form(request: Request) -> FormData:
    """The posted form; a field whose bytes were not UTF-8 is refused naming it, not read as '\ufffd'."""
    form = await request.form()
    if (refusal := undecodable_field(form.multi_items())) is not None:
        raise refusal
    return form


async def form_viewer(request: Request, viewer: Viewer = Depends(current_viewer)) -> Viewer:
    """For every HTML form post: the viewer, after checking the form's CSRF token."""
    if viewer.web_session is not None:
        form = await read_form(request)
        if not _same(form.get("csrf_token"), viewer.csrf_token):
            raise Forbidden("This form has expired or did not come from cellbench. Reload the page and try again.",
                            field="csrf_token")
    return viewer


@dataclass(frozen=True)
class RoleCheck:
    """Dependency: the viewer must hold one of these roles. `roles` is read by nav: a page's link
    shows to whoever the page admits."""

    roles: frozenset[Role]

    async def __call__(self, viewer: Viewer = Depends(current_viewer)) -> Viewer:
        users.require_role(viewer.actor, *self.roles)
        return viewer


@dataclass(frozen=True)
class FormRoleCheck:
    """For form posts that need a role. The gate has checked the role before the form is read;
    then the CSRF token (form_viewer), then the role again for an app without the gate."""

    roles: frozenset[Role]

    async def __call__(self, viewer: Viewer = Depends(form_viewer)) -> Viewer:
        users.require_role(viewer.actor, *self.roles)
        return viewer


def require(*roles: Role) -> RoleCheck:
    """Dependency: the viewer must hold one of these roles."""
    return RoleCheck(frozenset(roles))


def form_by(*roles: Role) -> FormRoleCheck:
    """For form posts that need a role: the role (at the gate), then the CSRF token."""
    return FormRoleCheck(frozenset(roles))


async def check_login_csrf(request: Request) -> None:
    """The sign-in form has no session yet: its token is matched against a cookie instead."""
    form = await read_form(request)
    if not _same(form.get("csrf_token"), request.cookies.get(LOGIN_CSRF_COOKIE)):
        raise Forbidden("The sign-in form has expired. Reload the page and try again.", field="csrf_token")


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


async def form_data(request: Request) -> FormData:
    """The posted form, read in the event loop so that routes can stay synchronous: database
    work must run in the thread pool, never blocking the loop."""
    return await read_form(request)


def form_text(form: FormData, name: str) -> str:
    """A text field of a posted form, "" when absent (a file posted where text belongs reads as absent)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def form_texts(form: FormData, name: str) -> list[str]:
    """Every value of a repeated text field (checkboxes), files left out."""
    return [value for value in form.getlist(name) if isinstance(value, str)]
