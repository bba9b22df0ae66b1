"""Property-based requests from the OpenAPI document (schemathesis), in-process over ASGI.

Every operation gets generated valid and invalid inputs; no answer may be a server error, and
answers must match the documented statuses, content types and schemas. Resident routes run with
a real session; signed-request routes see unsigned calls (their 401 path) — their authorised
paths are covered by test_authorization.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import Env, _build
from tests.dbutil import sqlite_database

CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance)


@pytest.fixture(scope="module")
def api_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with sqlite_database() as url:
        yield from _build(url, tmp_path_factory.mktemp("schemathesis"))


def test_no_server_errors(api_env: Env) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api_env.client.app)
    token = api_env.login("A")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 16
    seen: list[tuple[str, str, int]] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            if case.path.startswith("/v1/me/"):
                case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            response = case.call()
            seen.append((case.method, case.path, response.status_code))
            case.validate_response(response, checks=CHECKS)

        run()
    # Every operation was exercised, and some answers were accepted ones, not only refusals.
    assert {(m, p) for m, p, _ in seen} == {(o.method.upper(), o.path) for o in operations}
    assert any(status < 300 for *_, status in seen)
    assert all(status < 500 for *_, status in seen)


def _has_example(node: object, schemas: dict[str, object], depth: int = 0) -> bool:
    if depth > 16:
        return False
    if isinstance(node, dict):
        if "example" in node or "examples" in node:
            return True
        if "$ref" in node:
            return _has_example(schemas.get(node["$ref"].split("/")[-1], {}), schemas, depth + 1)
        return any(_has_example(value, schemas, depth + 1) for value in node.values())
    if isinstance(node, list):
        return any(_has_example(value, schemas, depth + 1) for value in node)
    return False


def test_every_operation_documents_an_example(api_env: Env) -> None:
    document = api_env.client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    missing = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            success = {code: r for code, r in operation["responses"].items() if code < "300"}
            if not _has_example(success, schemas):
                missing.append(f"{method.upper()} {path}: success response")
            if "requestBody" in operation and not _has_example(operation["requestBody"], schemas):
                missing.append(f"{method.upper()} {path}: request body")
    assert not missing
