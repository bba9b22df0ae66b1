"""Every route × every kind of caller: residents A and B, agencies X and Y, an auditor, anyone.

A new route without a row here fails ``test_matrix_covers_every_route``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from kiroku.client import sign_login
from tests.api.conftest import Env

CALLERS = ("A", "B", "X", "Y", "auditor", "anon")
PUBLIC = dict.fromkeys(CALLERS, 200)


def _a_record(env: Env) -> str:
    return env.get("A", "/v1/me/provisions").json()["items"][0]["id"]


def _x_receipt(env: Env) -> str:
    receipt = env.client.post("/v1/provisions", json=env.world.statement()).json()
    env.settle()
    return receipt["receipt_url"]


def _statement(env: Env) -> dict:
    return env.world.statement()


def _login_body(env: Env) -> dict:
    cred = env.residents["A"]
    got = env.client.post("/v1/auth/challenge").json()
    return {"certificate": cred.certificate, "challenge": got["challenge"],
            "signature": base64.b64encode(sign_login(cred.key, got["message"].encode())).decode()}


# (method, route template, how to build the target, JSON body factory, expected status per caller)
Target = Callable[[Env], str]
MATRIX: list[tuple[str, str, Target, Callable[[Env], object] | None, dict[str, int]]] = [
    ("POST", "/v1/provisions", lambda e: "/v1/provisions", _statement, dict.fromkeys(CALLERS, 201)),
    ("POST", "/v1/provisions/batch", lambda e: "/v1/provisions/batch",
     lambda e: [_statement(e)], dict.fromkeys(CALLERS, 201)),
    ("GET", "/v1/provisions/{provision_id}/receipt", _x_receipt, None,
     {"A": 403, "B": 403, "X": 200, "Y": 404, "auditor": 200, "anon": 401}),
    ("GET", "/v1/agencies/{code}/report", lambda e: f"/v1/agencies/{e.x}/report", None,
     {"A": 403, "B": 403, "X": 200, "Y": 403, "auditor": 200, "anon": 401}),
    ("POST", "/v1/auth/challenge", lambda e: "/v1/auth/challenge", None, PUBLIC),
    ("POST", "/v1/auth/session", lambda e: "/v1/auth/session", _login_body, PUBLIC),
    ("GET", "/v1/me/provisions", lambda e: "/v1/me/provisions", None,
     {"A": 200, "B": 200, "X": 403, "Y": 403, "auditor": 403, "anon": 401}),
    ("GET", "/v1/me/provisions/{provision_id}", lambda e: f"/v1/me/provisions/{_a_record(e)}",
     None, {"A": 200, "B": 404, "X": 403, "Y": 403, "auditor": 403, "anon": 401}),
    ("GET", "/v1/me/provisions/{provision_id}/proof",
     lambda e: f"/v1/me/provisions/{_a_record(e)}/proof",
     None, {"A": 200, "B": 404, "X": 403, "Y": 403, "auditor": 403, "anon": 401}),
    ("GET", "/v1/me/completeness", lambda e: "/v1/me/completeness", None,
     {"A": 200, "B": 200, "X": 403, "Y": 403, "auditor": 403, "anon": 401}),
    ("GET", "/v1/log", lambda e: "/v1/log", None, PUBLIC),
    ("GET", "/v1/log/checkpoint", lambda e: "/v1/log/checkpoint", None, PUBLIC),
    # Public, but this service has no witnesses configured: 404 for everyone.
    ("GET", "/v1/log/checkpoint/witnessed", lambda e: "/v1/log/checkpoint/witnessed", None,
     dict.fromkeys(CALLERS, 404)),
    ("GET", "/v1/log/checkpoints", lambda e: "/v1/log/checkpoints", None, PUBLIC),
    ("GET", "/v1/log/proof/inclusion", lambda e: "/v1/log/proof/inclusion?index=0", None, PUBLIC),
    ("GET", "/v1/log/proof/consistency", lambda e: "/v1/log/proof/consistency?old=1", None,
     PUBLIC),
    ("GET", "/v1/log/entries", lambda e: "/v1/log/entries?start=0&end=2", None,
     {"A": 403, "B": 403, "X": 403, "Y": 403, "auditor": 200, "anon": 401}),
    # C2SP tlog-tiles: hashes and leaf bytes only (no payloads), public like checkpoints.
    ("GET", "/checkpoint", lambda e: "/checkpoint", None, PUBLIC),
    ("GET", "/tile/{level}/{index}", lambda e: "/tile/0/000.p/1", None, PUBLIC),
    ("GET", "/tile/entries/{index}", lambda e: "/tile/entries/000.p/1", None, PUBLIC),
    ("GET", "/healthz", lambda e: "/healthz", None, PUBLIC),
    ("GET", "/metrics", lambda e: "/metrics", None, PUBLIC),
]


def test_matrix_covers_every_route(env: Env) -> None:
    paths = env.client.get("/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert routes == {(method, path) for method, path, *_ in MATRIX}


@pytest.mark.parametrize("method,path,target,body,expected", MATRIX,
                         ids=[f"{m} {p}" for m, p, *_ in MATRIX])
def test_route_by_caller(env: Env, method: str, path: str, target: Target,
                         body: Callable[[Env], object] | None, expected: dict[str, int]) -> None:
    for caller in CALLERS:
        url = target(env)
        payload = body(env) if body else None
        import json

        raw = json.dumps(payload).encode() if payload is not None else b""
        headers = env.headers(caller, method, url, raw)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        response = env.client.request(method, url, content=raw or None, headers=headers)
        assert response.status_code == expected[caller], (caller, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")
