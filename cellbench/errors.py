"""Domain errors. Each carries its HTTP status and, for bad input, the field it concerns.

One handler (app.py) renders them as an HTML page or as JSON {"error": ..., "field": ...}.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


class DomainError(Exception):
    status = 400

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def as_json(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field}


class InvalidInput(DomainError):
    status = 422


class NotFound(DomainError):
    status = 404


class NotAuthenticated(DomainError):
    status = 401


class Forbidden(DomainError):
    status = 403


class Conflict(DomainError):
    """Somebody else changed the same thing first: reload and try again."""

    status = 409


class RecordedRefusal(DomainError):
    """A refusal that must still leave a trace. The use case it interrupted is rolled back;
    `record(session)` then writes what the refusal itself requires (a failed-attempt count, a
    deviation, a dose sent to destruction) in a fresh transaction, run by Database.write()."""

    status = 422

    def __init__(self, message: str, field: str | None, record: Callable[[Any], None]):
        super().__init__(message, field)
        self.record = record


class AuthenticationFailed(RecordedRefusal):
    """A wrong password (at login or when signing): the attempt is counted and audited."""

    status = 401


# --- the request's body, before any field is read -------------------------------------------------

REPLACEMENT = "\ufffd"  # what a form parser puts where the bytes were not UTF-8


def undecodable_field(fields: Iterable[tuple[str, object]]) -> InvalidInput | None:
    """A posted form's first field whose bytes were not UTF-8. The form parser replaces such bytes
    silently; the value is refused instead, as the JSON API refuses an undecodable body."""
    for name, value in fields:
        if (isinstance(value, str) and REPLACEMENT in value) or REPLACEMENT in name:
            shown = name.replace(REPLACEMENT, "?")[:40]
            return InvalidInput(f"The field '{shown}' is not valid UTF-8 text.", field=shown)
    return None


# FastAPI's words (a 400) for a body it could not decode at all: bytes that are not UTF-8, a broken
# multipart form.
BODY_PARSE_FAILED = "There was an error parsing the body"


def body_error(first: Mapping[str, Any]) -> InvalidInput | None:
    """A request body that could not be read at all (not JSON): refused on the body as a whole, in
    plain words; the parser's byte offset is no field of the caller's."""
    if first.get("type") == "json_invalid":
        return InvalidInput("The request body is not valid JSON.", field="body")
    return None


def unreadable_body(status: int, detail: object) -> InvalidInput | None:
    """The same refusal when the framework could not even decode the body: 422 on "body", as for
    malformed JSON, not a bare 400 that names nothing."""
    if status == 400 and detail == BODY_PARSE_FAILED:
        return InvalidInput("The request body could not be read: it is not valid UTF-8 JSON or form data.",
                            field="body")
    return None
