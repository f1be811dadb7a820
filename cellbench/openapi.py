"""The API's contract as it is, not as FastAPI guesses it, and the two request rules it states.

FastAPI documents every operation as answering 200 (JSON) or 422 (its own validation body). The
API answers more than that, always in one error shape (errors.py, rendered by app.py's handler):
401 unsigned, 403 the wrong role or site, 404 no such record, 409 somebody else was first, 422
bad input naming the field, 400 a body that is not what it says. Files (PDF, CSV, XML) are declared
with their media type, not as JSON. `install` puts that into the document and adds the middleware
for what the document promises about requests:

- a query parameter the operation takes once, given twice, is refused naming it (FastAPI would
  silently keep the last value: `since=…&since=…` read the second);
- a 405 says which methods the path does take, in `Allow` (RFC 9110 §15.5.6).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from types import UnionType
from typing import Any, Union, get_args, get_origin
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import InvalidInput

API_PREFIX = "/api/v1"
ERROR = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {"title": "Error", "type": "object", "required": ["error", "field"],
                "properties": {"error": {"type": "string", "description": "What is wrong, for a person to read"},
                               "field": {"anyOf": [{"type": "string"}, {"type": "null"}],
                                         "description": "The input it concerns, when there is one"}}}
ERRORS = {"400": "The request body is not what its content type says",
          "401": "Not signed in: no valid bearer token",
          "403": "The caller's role or site may not do this",
          "404": "No such record (or none the caller may see)",
          "409": "Somebody else changed it first, or its state does not allow this now",
          "422": "Bad input; `field` names it, and nothing was changed"}
FILE_TYPES = {".pdf": "application/pdf", ".csv": "text/csv", ".xml": "application/xml", ".zpl": "text/plain"}
BINARY = {"type": "string", "format": "binary"}
FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def install(app: FastAPI, routes: Iterable[BaseRoute]) -> None:
    """Give `app` the honest document and the request rules. `routes`: every endpoint route of the
    app (app.iter_routes), read once here."""
    app.openapi = lambda: _cached(app)  # type: ignore[method-assign]
    _serve_serialised(app)
    routes = list(routes)
    app.add_middleware(RequestRules, routes=routes)


def _serve_serialised(app: FastAPI) -> None:
    """The document's route answers with its bytes, serialised once per app (per root path): the
    document is built once (_cached), but FastAPI's route turned its ~300 kB into JSON again on
    every request (some 7 ms). What it answers is FastAPI's own, byte for byte."""
    serialised: dict[str, bytes] = {}

    async def document(request: Request) -> Response:
        root_path = request.scope.get("root_path", "").rstrip("/")
        if root_path not in serialised:
            schema = app.openapi()
            if root_path and app.root_path_in_servers and root_path not in {s.get("url") for s in
                                                                           schema.get("servers", [])}:
                schema = {**schema, "servers": [{"url": root_path}, *schema.get("servers", [])]}
            serialised[root_path] = bytes(JSONResponse(schema).body)
        return Response(serialised[root_path], media_type="application/json")

    for index, route in enumerate(app.router.routes):
        if isinstance(route, Route) and route.path == app.openapi_url:
            app.router.routes[index] = Route(route.path, document, include_in_schema=False)


def _cached(app: FastAPI) -> dict[str, Any]:
    if not app.openapi_schema:
        app.openapi_schema = honest(get_openapi(title=app.title, version=app.version, description=app.description,
                                                routes=app.routes))
    return app.openapi_schema


def honest(document: dict[str, Any]) -> dict[str, Any]:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                "description": "An API token (`cellbench users token`)"}}
    for path, operations in document.get("paths", {}).items():
        if not path.startswith(API_PREFIX):
            continue
        for operation in operations.values():
            operation["security"] = [{"bearer": []}]
            _declare_files(path, operation["responses"])
            for code, description in ERRORS.items():
                operation["responses"][code] = {"description": description,
                                                "content": {"application/json": {"schema": ERROR}}}
    if FASTAPI_VALIDATION[0] not in json.dumps(document.get("paths", {})):
        for name in FASTAPI_VALIDATION:
            schemas.pop(name, None)
    return document


def _declare_files(path: str, responses: dict[str, Any]) -> None:
    """A route serving a file says so: by its suffix, or by the non-JSON types it declares itself;
    FastAPI's default 'application/json: {}' beside them is dropped."""
    suffix = next((s for s in FILE_TYPES if path.endswith(s)), None)
    for code, response in responses.items():
        if not code.startswith("2"):
            continue
        content = response.get("content", {})
        if suffix:
            response["content"] = {FILE_TYPES[suffix]: {"schema": BINARY}}
        elif any(not media.endswith("json") for media in content):
            response["content"] = {media: {"schema": BINARY} for media in content if not media.endswith("json")}


class RequestRules:
    """Plain ASGI (as app.SecurityHeaders): a repeated single-valued query parameter of an API
    operation is refused; a 405 carries `Allow`."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]):
        self.app = app
        self.routes = routes
        # Per route, the query parameters it takes as a list (any number of times).
        self.repeatable = {id(route): set(_list_parameters(route.dependant)) for route in routes
                           if isinstance(route, APIRoute)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        repeated = self._repeated(scope)
        if repeated:
            refusal = InvalidInput(f"Give the query parameter {repeated!r} once.", field=repeated)
            return await JSONResponse(refusal.as_json(), status_code=refusal.status)(scope, receive, send)

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                headers = MutableHeaders(scope=message)
                if "allow" not in headers:
                    headers["allow"] = ", ".join(self._allowed(scope))
            await send(message)

        return await self.app(scope, receive, send_with_allow)

    def _repeated(self, scope: Scope) -> str | None:
        if not scope["path"].startswith(API_PREFIX + "/") or not scope.get("query_string"):
            return None
        names = [name for name, _ in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)]
        twice = {name for name in names if names.count(name) > 1}
        if not twice:
            return None
        route = next((r for r in self.routes if r.matches(scope)[0] == Match.FULL), None)
        allowed = self.repeatable.get(id(route), set())
        return min(twice - allowed, default=None)

    def _allowed(self, scope: Scope) -> list[str]:
        methods: set[str] = set()
        for route in self.routes:  # FULL or PARTIAL: the path is this route's, whatever the method
            if route.matches(scope)[0] != Match.NONE:
                methods |= set(getattr(route, "methods", ()) or ())
        return sorted(methods)


def _list_parameters(dependant: Dependant) -> Iterable[str]:
    """The query parameters an operation (with its dependencies) takes as a list."""
    for param in dependant.query_params:
        if _is_list(param.field_info.annotation):
            yield param.alias
    for inner in dependant.dependencies:
        yield from _list_parameters(inner)


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) in (list, set, tuple, frozenset):
        return True
    # Optional[list[...]] and list[...] | None
    return get_origin(annotation) in (Union, UnionType) and any(_is_list(arg) for arg in get_args(annotation))
