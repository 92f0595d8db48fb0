"""The OpenAPI document says what the handlers do, and every input is bounded (dispatch/kernel/inputs.py)."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dispatch.kernel.pagination import encode_cursor


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def _strings(schema: dict[str, Any], doc: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every string a client can send, with where it sits."""
    if "$ref" in schema:
        yield from _strings(doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]], doc, where)
        return
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key, [])
        if any(option.get("type") in {"number", "integer"} for option in options):
            continue  # a number that may come as a string (Decimal): parsed, never stored as text
        for option in options:
            yield from _strings(option, doc, where)
    if schema.get("type") == "string":
        yield where, schema
    for name, field in schema.get("properties", {}).items():
        yield from _strings(field, doc, f"{where}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _strings(schema["items"], doc, f"{where}[]")


@pytest.fixture
def doc(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def test_every_string_input_is_bounded(doc: dict[str, Any]) -> None:
    loose = []
    for path, method, operation in _operations(doc):
        # Headers are left out: HTTP itself refuses control characters in them.
        sources = [(f"{p['in']} {p['name']}", p["schema"]) for p in operation.get("parameters", [])
                   if p["in"] != "header"]
        for media in operation.get("requestBody", {}).get("content", {}).values():
            sources.append(("body", media["schema"]))
        for where, schema in sources:
            for field, string in _strings(schema, doc, where):
                # A pattern (no control characters, or a stricter one), an enum, or a format parsed into a value.
                if not ({"pattern", "enum", "format", "const", "contentMediaType"} & string.keys()):
                    loose.append(f"{method.upper()} {path}: {field}")
    assert not loose, "strings taken as they come (use dispatch.kernel.inputs):\n" + "\n".join(loose)


def test_every_error_is_documented_as_problem_json(doc: dict[str, Any]) -> None:
    for path, method, operation in _operations(doc):
        for status, response in operation["responses"].items():
            if status[0] in "45":
                assert list(response.get("content", {})) == ["application/problem+json"], (method, path, status)
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_a_grab_documents_duty_position_and_the_tap_limit(doc: dict[str, Any]) -> None:
    responses = doc["paths"]["/api/v1/tickets/{ticket_id}/grab"]["post"]["responses"]
    for code in ("already_taken", "not_on_duty", "location_unknown"):
        assert f"`{code}`" in responses["409"]["description"]
    assert "`too_many_grabs`" in responses["429"]["description"]
    assert responses["429"]["headers"]["Retry-After"]["required"] is True


def test_a_report_documents_the_200_of_a_merge(doc: dict[str, Any]) -> None:
    responses = doc["paths"]["/api/v1/tickets"]["post"]["responses"]
    merged, created = (responses[status]["content"]["application/json"]["schema"] for status in ("200", "201"))
    assert merged == created


def test_operations_behind_a_token_document_401(doc: dict[str, Any]) -> None:
    for path, method, operation in _operations(doc):
        if operation.get("security"):
            assert "401" in operation["responses"], (method, path)


def test_user_roles_listed_are_the_ones_accepted(doc: dict[str, Any], client: TestClient,
                                                 as_user: Callable[[str], dict[str, str]]) -> None:
    listed = doc["components"]["schemas"]["UserCreate"]["properties"]["role"]["enum"]
    assert set(listed) == {"admin", "dispatcher", "clerk", "payroll", "technician"}
    reply = client.post("/api/v1/users", headers=as_user("admin"),
                        json={"username": "api.client", "password": "secret-pw", "role": "api", "region_ids": [1]})
    assert reply.status_code == 422


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("post", "/api/v1/tickets", {"type_code": "broadband_fault", "description": "no\x00signal",
                                  "location": {"lat": 43.95, "lng": 116.07},
                                  "contact": {"name": "王", "phone": "13800000000"}}, "description"),
    ("post", "/api/v1/tickets", {"type_code": "broadband_fault", "description": "no signal",
                                  "location": {"lat": 43.95, "lng": 116.07},
                                  "contact": {"name": "王\x00", "phone": "13800000000"}}, "contact.name"),
    ("post", "/api/v1/tickets", {"type_code": "broadband_fault", "description": "no signal", "address": "a\nb",
                                  "location": {"lat": 43.95, "lng": 116.07},
                                  "contact": {"name": "王", "phone": "13800000000"}}, "address"),
    ("get", "/api/v1/geo/search?q=%00", None, "q"),
    ("get", "/api/v1/tickets?region_id=2147483648", None, "region_id"),
    ("get", "/api/v1/stats?from=9999-12-30&to=9999-12-31", None, "from"),
    ("post", "/api/v1/workload/periods", {"branch_id": 2, "month": "0000-01"}, "month"),
    ("post", "/api/v1/regions/1/surge", {"on": 1}, "on"),
    # Numbers in a body are numbers: lax parsing would take false for 0 and "5" for 5.
    ("put", "/api/v1/regions/1/escalation", {"steps": [{"title": "值机员", "delay_min": False}]}, "steps.0.delay_min"),
    ("put", "/api/v1/regions/1/escalation", {"steps": [{"title": "值机员", "delay_min": "5"}]}, "steps.0.delay_min"),
    ("post", "/api/v1/regions/1/surge", {"on": True, "response_factor": True}, "response_factor"),
    ("post", "/api/v1/workload/periods", {"branch_id": "2", "month": "2026-11"}, "branch_id"),
])
def test_bad_input_is_422_naming_the_field(client: TestClient, as_user: Callable[[str], dict[str, str]],
                                           method: str, path: str, body: dict[str, Any] | None, field: str) -> None:
    reply = client.request(method, path, json=body, headers=as_user("admin"))
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert field in {e["field"] for e in reply.json()["errors"]}


def test_a_description_keeps_its_line_breaks(client: TestClient, as_user: Callable[[str], dict[str, str]]) -> None:
    reply = client.post("/api/v1/tickets", headers=as_user("clerk.xl"), json={
        "type_code": "broadband_fault", "description": "no signal\n\tsince noon",
        "location": {"lat": 43.95, "lng": 116.07}, "contact": {"name": "王", "phone": "13800000000"}})
    assert reply.status_code in {200, 201}, reply.text
    assert reply.json()["description"] == "no signal\n\tsince noon"


@pytest.mark.parametrize("path", ["/api/v1/tickets/2147483648", "/api/v1/technicians/99999999999",
                                  "/api/v1/regions/2147483648/surge"])
def test_a_path_id_no_row_can_have_is_404(client: TestClient, as_user: Callable[[str], dict[str, str]],
                                          path: str) -> None:
    reply = client.get(path, headers=as_user("admin"))
    assert reply.status_code == 404
    assert reply.json()["code"] == "not_found"


def test_assigning_a_technician_id_past_the_column_is_422(client: TestClient,
                                                          as_user: Callable[[str], dict[str, str]]) -> None:
    ticket = client.post("/api/v1/tickets", headers=as_user("clerk.xl"), json={
        "type_code": "broadband_fault", "description": "no signal", "location": {"lat": 43.95, "lng": 116.07},
        "contact": {"name": "王", "phone": "13800000000"}}).json()
    reply = client.post(f"/api/v1/tickets/{ticket['id']}/assign", json={"technician_id": 2147483648},
                        headers=as_user("admin"))
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "technician_id"


def test_a_cursor_holding_an_id_past_the_column_is_422(client: TestClient,
                                                       as_user: Callable[[str], dict[str, str]]) -> None:
    reply = client.get("/api/v1/tickets", params={"cursor": encode_cursor(2**31)}, headers=as_user("admin"))
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "cursor"


def test_405_names_every_method_of_the_path(client: TestClient) -> None:
    reply = client.options("/api/v1/api-keys")
    assert reply.status_code == 405
    assert set(reply.headers["Allow"].split(", ")) == {"GET", "POST"}
