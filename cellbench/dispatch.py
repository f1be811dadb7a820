"""Route matching by path prefix: a request is matched against the routes that can match it, not all
of them.

The app's router tries its routes in order, and each area's router tries each of its routes: ~300
regex matches for a page near the end, twice (once to find the area, once inside it), about a
millisecond of every request, more than a small page's own work. A route can only match a path
with the same literal bucket segments (bucket: the first segment, the first three under /api),
so per bucket the app keeps a copy of its router holding only the areas with a route in that bucket
(or with a parameter there, which are in every bucket), in the router's own order: the router picks
the route it would have picked from the whole list, and everything after the match (the area's
router, 404, 405, the trailing-slash redirect) is FastAPI's own. A path in no bucket goes to the
whole router. Built at the first request, so that a route added after create_app is matched too.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable

from fastapi import FastAPI
from starlette.routing import BaseRoute, Mount, get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

Bucket = tuple[str, ...]


def bucket(path: str) -> tuple[str, ...] | None:
    """The bucket a path falls in: its first segment (the first three under /api). None for a
    route whose bucket segments hold a parameter: it is tried for every path. A request's path and
    a route's path with the same literal bucket segments are the only ones that can match (the
    gate's Table and dispatch.ByPrefix both rely on it)."""
    parts = path.strip("/").split("/")
    head = tuple(parts[:3] if parts[0] == "api" else parts[:1])
    return None if any("{" in part for part in head) else head


def _paths(route: BaseRoute) -> Iterable[str | None]:
    """The paths a top-level entry of the app's router can match; None: any path."""
    inner = getattr(route, "original_router", None)  # an included area router (newer FastAPI wraps them)
    if inner is not None:
        for sub in inner.routes:
            yield from _paths(sub)
    elif isinstance(route, Mount) or hasattr(route, "path_regex"):
        yield getattr(route, "path", None)
    else:
        yield None


def _buckets(route: BaseRoute) -> set[Bucket | None]:
    return {bucket(path) if path is not None else None for path in _paths(route)}


class ByPrefix:
    """The app router's middleware stack (Router.__call__ runs it): the request goes to the copy of
    the router for its bucket."""

    def __init__(self, app: FastAPI):
        self.router = app.router
        self.whole: ASGIApp = app.router.app
        self._routers: dict[Bucket, ASGIApp] | None = None

    def routers(self) -> dict[Bucket, ASGIApp]:
        if self._routers is None:
            entries = [(route, _buckets(route)) for route in self.router.routes]
            keys = {key for _, keys in entries for key in keys if key is not None}
            routers: dict[Bucket, ASGIApp] = {}
            for key in keys:
                part = copy.copy(self.router)
                part.routes = [route for route, within in entries if key in within or None in within]
                routers[key] = part.app
            self._routers = routers
        return self._routers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.whole(scope, receive, send)
        key = bucket(get_route_path(scope))
        router = self.routers().get(key, self.whole) if key is not None else self.whole
        scope.setdefault("router", self.router)  # url_for and the like see every route, not the bucket's
        await router(scope, receive, send)


def install(app: FastAPI) -> None:
    """Matches the app's requests by prefix, unless its router already has a middleware stack of its
    own (then its plain, whole matching stays)."""
    router = app.router
    if router.middleware_stack == router.app:
        router.middleware_stack = ByPrefix(app)
