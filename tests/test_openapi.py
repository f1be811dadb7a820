"""The OpenAPI document says what the API does: its errors, in their one shape, and its files by
media type; and the API refuses what the document does not allow (a parameter given twice), and
names the methods a path takes when it answers 405."""
from __future__ import annotations

from sqlalchemy import select

from cellbench import users
from cellbench.models import AuditEvent

from .conftest import Client

ERROR_CODES = ("400", "401", "403", "404", "409", "422")


def api_client(app, db, username: str) -> Client:
    with db.write() as s:
        token = users.create_token(s, users.cli_actor(), users.by_username(s, username), "openapi test")
    return Client(app, headers={"Authorization": f"Bearer {token}"})


def operations(document):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_every_api_operation_documents_its_errors_in_the_error_shape(app):
    document = app.openapi()
    assert document["components"]["schemas"]["Error"]["required"] == ["error", "field"]
    assert "HTTPValidationError" not in document["components"]["schemas"]  # FastAPI's shape is never sent
    for path, method, operation in operations(document):
        assert path.startswith("/api/v1/")
        for code in ERROR_CODES:
            body = operation["responses"][code]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/Error"}, (method, path, code)
        assert operation["security"] == [{"bearer": []}]


def test_files_are_declared_by_their_media_type_not_as_json(app):
    document = app.openapi()
    certificate = document["paths"]["/api/v1/destructions/{number}/certificate.pdf"]["get"]
    assert list(certificate["responses"]["200"]["content"]) == ["application/pdf"]
    for path, _method, operation in operations(document):
        for suffix, media in ((".pdf", "application/pdf"), (".csv", "text/csv"), (".xml", "application/xml")):
            if path.endswith(suffix):
                assert list(operation["responses"]["200"]["content"]) == [media], path
    labels = document["paths"]["/api/v1/label-runs/{number}/output"]["get"]["responses"]["200"]["content"]
    assert set(labels) == {"application/pdf", "text/plain"}


def test_a_query_parameter_given_twice_is_refused_by_name_and_nothing_is_read(app, db, people):
    anna = api_client(app, db, "anna")
    with db.read() as s:
        before = s.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq.desc())).first()
    response = anna.get("/api/v1/audit?since=%26%1A&since=%2B0.0")
    assert response.status_code == 422
    assert response.json() == {"error": "Give the query parameter 'since' once.", "field": "since"}
    with db.read() as s:
        assert s.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq.desc())).first() == before
    assert anna.get("/api/v1/audit?since=2026-01-01T00:00:00%2B00:00&limit=5").status_code == 200


def test_a_405_names_the_methods_the_path_takes(app, db, people):
    anna = api_client(app, db, "anna")
    response = anna.delete("/api/v1/audit")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json()["error"] == "That action is not available here."
    # A path of two routes (list and create): both methods, not only the first route's.
    assert anna.put("/api/v1/shipments").headers["allow"] == "GET, POST"


def test_the_document_is_served_as_fastapi_would_serialise_it_and_only_to_someone_signed_in(app, db, people, as_):
    """Its bytes are made once per app, not per request: the same bytes FastAPI's own route sent,
    every time, with the same media type; before signing in, nothing."""
    from fastapi.responses import JSONResponse

    expected = JSONResponse(app.openapi()).body
    client = as_("anna")
    first, second = client.get("/api/v1/openapi.json"), client.get("/api/v1/openapi.json")
    assert first.status_code == second.status_code == 200
    assert first.content == second.content == expected
    assert first.headers["content-type"] == "application/json"
    assert api_client(app, db, "sara").get("/api/v1/openapi.json").content == expected
    assert Client(app).get("/api/v1/openapi.json", follow_redirects=False).status_code in (303, 401)
