"""The API reference: the OpenAPI document (/api/v1/openapi.json) as a plain page, for anyone
signed in. It replaces FastAPI's Swagger UI, which loads its scripts from a public CDN: this page
is rendered here, from the package, with no script at all. Integrations and schemathesis read the
JSON document itself (with an API token)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from markupsafe import Markup

from ..deps import Viewer, current_viewer
from ..templating import render

router = APIRouter(include_in_schema=False)
METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool
    where: str = ""  # a parameter's place: path, query, header
    description: str = ""


@dataclass(frozen=True)
class Body:
    code: str  # a response's status code; "" for a request body
    description: str
    content: tuple[tuple[str, str], ...]  # (media type, the type of its schema)


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    description: str
    parameters: list[Field] = field(default_factory=list)
    body: Body | None = None
    responses: list[Body] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return f"{self.method}-{self.path}".replace("/", "-").replace("{", "").replace("}", "")


@dataclass(frozen=True)
class Schema:
    name: str
    description: str
    fields: tuple[Field, ...]
    type: str  # for a schema that is no object: an enumeration, say


def type_of(schema: dict[str, Any]) -> str:
    """A schema as a person reads it: "list of Kit", "integer or null", "one of: a, b"."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(type_of(s) for s in schema[key])
    if "allOf" in schema:
        return " and ".join(type_of(s) for s in schema["allOf"])
    if "enum" in schema:
        return "one of: " + ", ".join(str(v) for v in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    kind = schema.get("type", "any")
    if kind == "array":
        return "list of " + type_of(schema.get("items", {}))
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "object of " + type_of(schema["additionalProperties"])
    limits = [f"{word} {schema[key]}" for key, word in (("maxLength", "at most"), ("minimum", "≥"), ("maximum", "≤"))
              if key in schema]
    fmt = f" ({schema['format']})" if "format" in schema else ""
    return f"{kind}{fmt}" + (f", {', '.join(limits)}" if limits else "")


def _content(block: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((media, type_of(spec.get("schema", {}))) for media, spec in block.get("content", {}).items())


def operations(spec: dict[str, Any]) -> Iterator[Operation]:
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            if method not in item:
                continue
            op = item[method]
            found = Operation(method.upper(), path, op.get("summary", ""), op.get("description", ""))
            for p in op.get("parameters", []):
                found.parameters.append(Field(p["name"], type_of(p.get("schema", {})), bool(p.get("required")),
                                              p.get("in", ""), p.get("description", "")))
            if "requestBody" in op:
                body = op["requestBody"]
                found.body = Body("", body.get("description", ""), _content(body))
            found.responses = [Body(code, r.get("description", ""), _content(r))
                               for code, r in sorted(op.get("responses", {}).items())]
            yield found


def schemas(spec: dict[str, Any]) -> list[Schema]:
    found = []
    for name, schema in sorted(spec.get("components", {}).get("schemas", {}).items()):
        required = set(schema.get("required", ()))
        fields = tuple(Field(prop, type_of(s), prop in required, description=s.get("description", ""))
                       for prop, s in schema.get("properties", {}).items())
        found.append(Schema(name, schema.get("description", ""), fields, "" if fields else type_of(schema)))
    return found


def reference_body(app: FastAPI) -> Markup:
    """The reference as HTML, rendered once per app: it is the app's OpenAPI document, fixed when
    the app is built and the same for every reader, and rendering its 150 operations and schemas
    took some 20 ms of every request (and most of the garbage that set off full collections)."""
    body = getattr(app.state, "api_reference_body", None)
    if body is None:
        spec = app.openapi()
        html = app.state.templates.get_template("api/reference_body.html").render(
            info=spec.get("info", {}), operations=list(operations(spec)), schemas=schemas(spec),
            openapi_url=app.openapi_url)
        body = Markup(html)  # noqa: S704 - rendered by the autoescaping environment: every value in it is escaped
        app.state.api_reference_body = body
    return body


@router.get("/api/docs")
def api_reference(request: Request, viewer: Viewer = Depends(current_viewer)) -> Response:
    return render(request, "api/reference.html", body=reference_body(request.app))
