"""The API keeps the contract its OpenAPI document states, for any input (schemathesis).

Every operation is called, authenticated, with generated valid and invalid inputs (a fixed seed and
a bounded number of examples, so the run is quick and reproducible), and every response is checked:
no server error, a status code the document declares for that operation, the declared content
type, and a body valid against the declared schema.
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from regenheart.web import create_app

from .conftest import FAST_HASHER, PASSWORD, TODAY, build_study, no_scorer, two_site_protocol

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def contract_app(tmp_path_factory):
    protocol = two_site_protocol()
    path = tmp_path_factory.mktemp("contract") / "study.db"
    build_study(path, protocol)
    return create_app(path, protocol, scorer=no_scorer, today=lambda: TODAY, hasher=FAST_HASHER)


@pytest.fixture(scope="module")
def login(contract_app):
    client = TestClient(contract_app)

    def fresh(username: str = "dm1") -> dict[str, str]:
        # a fresh token per case: a generated call may log out or change the password
        response = client.post("/api/auth/token", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    return fresh


def _run_operation(operation, login) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=8, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        if case.path == "/api/auth/password" and isinstance(case.body, dict):
            case.body = case.body | {"old_password": "not the password"}  # never really change it
        case.call_and_validate(headers=login(), checks=CHECKS)

    run()


def test_api_contract_every_operation(contract_app, login):
    schema = schemathesis.openapi.from_asgi("/openapi.json", contract_app)
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        try:
            _run_operation(operation, login)
        except BaseException as exc:  # noqa: BLE001 - schemathesis raises exception groups; collect them all
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert operations > 30
    assert not failures, f"{len(failures)} operation(s) break the contract:\n" + "\n\n".join(failures)


# ------------------------------------------------------------------------------------- hostile input, by hand
def _error_shape(response) -> dict:
    body = response.json()
    assert set(body) <= {"error", "detail", "violations"} and isinstance(body["detail"], str)
    return body


FORM = "/api/subjects/01-001/forms/SCR/vital_signs"


def test_lone_surrogate_in_reason_is_a_422_naming_the_field(client, auth):
    raw = '{"data": {"sbp_mmhg": 121}, "reason": "typo \\ud800 fixed"}'
    response = client.put(FORM, content=raw, headers=auth("coordinator") | {"Content-Type": "application/json"})
    assert response.status_code == 422
    body = _error_shape(response)
    assert body["violations"][0]["field"] == "reason" and body["violations"][0]["rule"] == "unicode"


def test_nul_characters_in_body_path_and_query_are_refused(client, auth):
    headers = auth("coordinator")
    response = client.put(FORM, json={"data": {"sbp_mmhg": 121}, "reason": "a\x00b"}, headers=headers)
    assert response.status_code == 422 and _error_shape(response)["violations"][0]["field"] == "reason"
    response = client.put(FORM, json={"data": {"term\x00": "x"}}, headers=headers)
    assert response.status_code == 422
    response = client.get("/api/subjects/01-001%00/forms/SCR/vital_signs", headers=headers)
    assert response.status_code == 422 and _error_shape(response)["violations"][0]["field"] == "(path)"
    response = client.get("/api/queries?status=open%00", headers=headers)
    assert response.status_code == 422 and _error_shape(response)["violations"][0]["field"] == "status"


def test_overlong_and_oversized_input(client, auth):
    from regenheart.web.contract import MAX_BODY_BYTES, MAX_TEXT_LENGTH

    headers = auth("coordinator")
    response = client.put(FORM, json={"data": {"sbp_mmhg": 121}, "reason": "x" * (MAX_TEXT_LENGTH + 1)},
                          headers=headers)
    assert response.status_code == 422 and _error_shape(response)["violations"][0]["rule"] == "max_length"
    response = client.put(FORM, content=b'{"data": {}, "reason": "' + b"y" * MAX_BODY_BYTES + b'"}',
                          headers=headers | {"Content-Type": "application/json"})
    assert response.status_code == 413 and _error_shape(response)["error"] == "payload_too_large"


def test_unparseable_body_gets_the_declared_422(client, auth):
    response = client.put(FORM, content=b'{"data": {', headers=auth("coordinator") | {"Content-Type":
                                                                                       "application/json"})
    assert response.status_code == 422 and _error_shape(response)["error"] == "validation_failed"


def test_every_api_operation_declares_the_error_body(client):
    document = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, item in document["paths"].items():
        if not path.startswith("/api") or path == "/api/health":
            continue
        for method, operation in item.items():
            for status in ("400", "401", "403", "404", "409", "413", "422"):
                content = operation["responses"][status]["content"]["application/json"]["schema"]
                assert content == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)
