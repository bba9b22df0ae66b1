"""Every route × every kind of caller: residents A and B, agencies X and Y, an auditor, anyone.

A new route without a row here fails ``test_matrix_covers_every_route``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from uuid import UUID

import pytest
from sqlalchemy import select

from kiroku.client import sign_login
from ledger.flags import KIND, flag_payload
from ledger.notices import KIND as NOTICE_KIND
from ledger.proxies import new_proxy_identity
from ledger.signing import sign_statement
from tests.api.conftest import SUBJECT_A, Env
from tests.api.test_proxies import name_proxy, person

CALLERS = ("A", "B", "X", "Y", "auditor", "anon", "P")  # P: a proxy of A (not a resident)
PUBLIC = dict.fromkeys(CALLERS, 200)


def _a_record(env: Env) -> str:
    return env.get("A", "/v1/me/provisions").json()["items"][0]["id"]


def _x_receipt(env: Env) -> str:
    receipt = env.client.post("/v1/provisions", json=env.world.statement()).json()
    env.settle()
    return receipt["receipt_url"]


def _statement(env: Env) -> dict:
    return env.world.statement()


def _proxy(env: Env) -> str:
    """Make P a proxy of A (once per service): P's handle for A."""
    if "P" not in env.records:
        cred = person(env, "P")
        registration = name_proxy(env, "A", cred)
        env.records["P"] = [registration]
    return str(env.records["P"][0]["id"])


def _flag_statement(env: Env) -> dict:
    record = env.world.ledger.append(env.world.statement(subject=SUBJECT_A))
    return sign_statement(flag_payload(record.id, "non_disclosure", set=True,
                                       reason="dv_support_measure"),
                          kind=KIND, agency=env.x, key=env.world.keys[env.x])


def _notice_statement(env: Env) -> dict:
    from tests.api.test_notices import notice_payload

    env.world.counter += 1
    return sign_statement(notice_payload(f"m-{env.world.counter}", {
        "type": "group", "criteria": {"district": "131121-03"}}),
        kind=NOTICE_KIND, agency=env.x, key=env.world.keys[env.x])


def _a_notice(env: Env) -> str:
    """An individual notice of X to A (once per service): its id."""
    from tests.api.test_notices import issue, notice_payload

    if "notice" not in env.records:
        code = env.world.code(env.x, SUBJECT_A)
        found = issue(env, notice_payload("for-a", {"type": "individual", "code": code}))
        env.settle()
        env.records["notice"] = [found.json()]
    return str(env.records["notice"][0]["id"])


def _a_address_notice(env: Env) -> str:
    """Partners, and an individual notice of Y to A inviting the address change (once)."""
    from tests.api.test_applications import add_partners, address_notice

    if "address" not in env.records:
        add_partners(env)
        env.records["address"] = [{"id": address_notice(env)}]
    return str(env.records["address"][0]["id"])


def _a_application(env: Env) -> str:
    """A new application of A, signed by A's card: its id."""
    from tests.api.test_applications import apply, signed

    response = apply(env, signed(env, _a_address_notice(env)))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _a_signed_application(env: Env) -> dict:
    from tests.api.test_applications import signed

    return signed(env, _a_address_notice(env))


def _received_statement(env: Env) -> dict:
    from ledger.applications import RECEIVED

    return sign_statement({"application": _a_application(env)}, kind=RECEIVED, agency=env.y,
                          key=env.world.keys[env.y])


def _a_registration(env: Env) -> str:
    registration, _ = env.world.ledger.register_proxy(SUBJECT_A, new_proxy_identity(),
                                                      "appointed")
    return f"/v1/me/proxies/{registration.id}"


def _a_email_subscription(env: Env) -> str:
    """A new e-mail subscription of A (its code kept for the body): the confirm route."""
    from projections import alerts
    from projections.store import ViewStore

    store = ViewStore(str(env.world.ledger.settings.database_url))
    try:
        with store.write() as session:
            created, _ = alerts.create(session, SUBJECT_A, alerts.EMAIL, "a@example.jp")
            token = session.execute(select(alerts.subscription.c.confirm_token).where(
                alerts.subscription.c.id == UUID(created.id))).scalar_one()
    finally:
        store.close()
    env.records["confirm"] = [token]
    return f"/v1/me/subscriptions/{created.id}/confirm"


def _slug(env: Env) -> str:
    from ledger.shards import slug_of

    return slug_of(env.world.ledger.origin)


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
    ("GET", "/livez", lambda e: "/livez", None, PUBLIC),
    ("GET", "/readyz", lambda e: "/readyz", None, PUBLIC),
    # Flags (docs/api.md "Flags"): statements authenticate themselves; history for auditors.
    ("POST", "/v1/flags", lambda e: "/v1/flags", _flag_statement, dict.fromkeys(CALLERS, 201)),
    ("GET", "/v1/log/provisions/{provision_id}/flags",
     lambda e: f"/v1/log/provisions/{_a_record(e)}/flags", None,
     {**dict.fromkeys(CALLERS, 403), "auditor": 200, "anon": 401}),
    # Proxies (docs/api.md "Proxies"): residents manage theirs; P reads A's records only.
    ("POST", "/v1/me/proxies", lambda e: "/v1/me/proxies",
     lambda e: {"certificate": person(e, "Q").certificate, "relationship": "appointed"},
     {"A": 201, "B": 201, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 403}),
    ("GET", "/v1/me/proxies", lambda e: "/v1/me/proxies", None,
     {"A": 200, "B": 200, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 403}),
    ("DELETE", "/v1/me/proxies/{registration_id}", _a_registration, None,
     {"A": 200, "B": 404, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 403}),
    ("GET", "/v1/proxy/principals", lambda e: "/v1/proxy/principals", None,
     {"A": 200, "B": 200, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 200}),
    ("GET", "/v1/proxy/principals/{handle}/provisions",
     lambda e: f"/v1/proxy/principals/{_proxy(e)}/provisions", None,
     {"A": 404, "B": 404, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 200}),
    ("GET", "/v1/proxy/principals/{handle}/provisions/{provision_id}",
     lambda e: f"/v1/proxy/principals/{_proxy(e)}/provisions/{_a_record(e)}", None,
     {"A": 404, "B": 404, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 200}),
    ("GET", "/metrics", lambda e: "/metrics", None, PUBLIC),
    # Sharded logs (docs/shards.md): every shard's log, public as /v1/log; entries for auditors.
    ("GET", "/v1/shards", lambda e: "/v1/shards", None, PUBLIC),
    ("GET", "/v1/shards/{slug}/log", lambda e: f"/v1/shards/{_slug(e)}/log", None, PUBLIC),
    ("GET", "/v1/shards/{slug}/log/checkpoint",
     lambda e: f"/v1/shards/{_slug(e)}/log/checkpoint", None, PUBLIC),
    ("GET", "/v1/shards/{slug}/log/checkpoints",
     lambda e: f"/v1/shards/{_slug(e)}/log/checkpoints", None, PUBLIC),
    ("GET", "/v1/shards/{slug}/log/proof/inclusion",
     lambda e: f"/v1/shards/{_slug(e)}/log/proof/inclusion?index=0", None, PUBLIC),
    ("GET", "/v1/shards/{slug}/log/proof/consistency",
     lambda e: f"/v1/shards/{_slug(e)}/log/proof/consistency?old=1", None, PUBLIC),
    ("GET", "/v1/shards/{slug}/log/entries",
     lambda e: f"/v1/shards/{_slug(e)}/log/entries?start=0&end=2", None,
     {"A": 403, "B": 403, "X": 403, "Y": 403, "auditor": 200, "anon": 401, "P": 403}),
    # Notices (docs/notices.md): statements authenticate themselves; an agency keeps its own
    # residents' attributes and reads its own counts; residents and A's proxy read A's notices.
    ("POST", "/v1/notices", lambda e: "/v1/notices", _notice_statement,
     dict.fromkeys(CALLERS, 201)),
    ("GET", "/v1/agencies/{code}/notices", lambda e: f"/v1/agencies/{e.x}/notices", None,
     {"A": 403, "B": 403, "X": 200, "Y": 403, "auditor": 200, "anon": 401, "P": 403}),
    ("PUT", "/v1/agencies/{code}/residents/{link_code}/attributes",
     lambda e: f"/v1/agencies/{e.x}/residents/{e.world.code(e.x, SUBJECT_A)}/attributes",
     lambda e: {"district": "131121-03"},
     {"A": 403, "B": 403, "X": 200, "Y": 403, "auditor": 403, "anon": 401, "P": 403}),
    ("GET", "/v1/me/notices", lambda e: "/v1/me/notices", None,
     {"A": 200, "B": 200, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 403}),
    ("GET", "/v1/me/notices/{notice_id}", lambda e: f"/v1/me/notices/{_a_notice(e)}", None,
     {"A": 200, "B": 404, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 403}),
    ("POST", "/v1/me/notices/{notice_id}/read",
     lambda e: f"/v1/me/notices/{_a_notice(e)}/read", None,
     {"A": 200, "B": 404, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 403}),
    ("GET", "/v1/proxy/principals/{handle}/notices",
     lambda e: f"/v1/proxy/principals/{_proxy(e)}/notices", None,
     {"A": 404, "B": 404, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 200}),
    ("POST", "/v1/proxy/principals/{handle}/notices/{notice_id}/read",
     lambda e: f"/v1/proxy/principals/{_proxy(e)}/notices/{_a_notice(e)}/read", None,
     {"A": 404, "B": 404, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 200}),
    # Alert subscriptions (docs/alerts.md): a resident's own, never another's (404 like missing).
    ("POST", "/v1/me/subscriptions", lambda e: "/v1/me/subscriptions",
     lambda e: {"channel": "webhook", "target": "https://hooks.example.jp/kiroku"},
     {"A": 201, "B": 201, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 403}),
    ("GET", "/v1/me/subscriptions", lambda e: "/v1/me/subscriptions", None,
     {"A": 200, "B": 200, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 403}),
    ("POST", "/v1/me/subscriptions/{subscription_id}/confirm", _a_email_subscription,
     lambda e: {"token": e.records["confirm"][0]},
     {"A": 200, "B": 404, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 403}),
    ("DELETE", "/v1/me/subscriptions/{subscription_id}",
     lambda e: _a_email_subscription(e).removesuffix("/confirm"), None,
     {"A": 200, "B": 404, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 403}),
    # E-applications (docs/applications.md): a resident applies signing with their own card
    # (B sending A's signed application is refused), reads only their own threads; the
    # receiving agency (Y) reads its inbox; only the partner itself reads its forwards.
    ("GET", "/v1/forms/{form_id}", lambda e: "/v1/forms/address-change", None, PUBLIC),
    ("GET", "/v1/partners", lambda e: "/v1/partners", None, PUBLIC),
    ("POST", "/v1/me/applications", lambda e: "/v1/me/applications",
     _a_signed_application,
     {"A": 201, "B": 403, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 403}),
    ("GET", "/v1/me/applications", lambda e: "/v1/me/applications", None,
     {"A": 200, "B": 200, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 403}),
    ("GET", "/v1/me/applications/{application_id}",
     lambda e: f"/v1/me/applications/{_a_application(e)}", None,
     {"A": 200, "B": 404, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 403}),
    ("POST", "/v1/applications/steps", lambda e: "/v1/applications/steps",
     _received_statement, dict.fromkeys(CALLERS, 201)),
    ("GET", "/v1/agencies/{code}/applications", lambda e: f"/v1/agencies/{e.y}/applications",
     None, {"A": 403, "B": 403, "X": 403, "Y": 200, "auditor": 200, "anon": 401, "P": 403}),
    ("GET", "/v1/partners/{code}/forwards",
     lambda e: (_a_address_notice(e), "/v1/partners/TOKYOGAS/forwards")[1], None,
     {"A": 403, "B": 403, "X": 403, "Y": 403, "auditor": 403, "anon": 401, "P": 403}),
]


def _expected(path: str, expected: dict[str, int], caller: str) -> int:
    """Rows written before proxies existed: P answers as resident B does, except that a
    proxy's credential has no records of its own under /v1/me/ (403)."""
    if caller in expected:
        return expected[caller]
    return 403 if path.startswith("/v1/me/") else expected["B"]


def test_matrix_covers_every_route(env: Env) -> None:
    paths = env.client.get("/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert routes == {(method, path) for method, path, *_ in MATRIX}


@pytest.mark.parametrize("method,path,target,body,expected", MATRIX,
                         ids=[f"{m} {p}" for m, p, *_ in MATRIX])
def test_route_by_caller(env: Env, method: str, path: str, target: Target,
                         body: Callable[[Env], object] | None, expected: dict[str, int]) -> None:
    _proxy(env)
    for caller in CALLERS:
        url = target(env)
        payload = body(env) if body else None
        import json

        raw = json.dumps(payload).encode() if payload is not None else b""
        headers = env.headers(caller, method, url, raw)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        response = env.client.request(method, url, content=raw or None, headers=headers)
        assert response.status_code == _expected(path, expected, caller), (caller, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")


def test_a_proxy_sees_the_principals_allowed_records_only_and_nothing_after_cancellation(
        env: Env) -> None:
    handle = _proxy(env)
    a_records = {r["id"] for r in env.get("A", "/v1/me/provisions").json()["items"]}
    b_records = {r["id"] for r in env.get("B", "/v1/me/provisions").json()["items"]}
    page = env.get("P", f"/v1/proxy/principals/{handle}/provisions").json()
    assert {r["id"] for r in page["items"]} == a_records  # A's non-disclosed record excluded
    for record in b_records:
        assert env.get("P", f"/v1/proxy/principals/{handle}/provisions/{record}"
                       ).status_code == 404
    # The non-disclosed record of A, which auditors see, is not reachable by the proxy.
    entries = [line for line in env.get("auditor", "/v1/log/entries").text.splitlines()
               if '"non_disclosure":true' in line]
    assert entries
    hidden = json.loads(entries[0])
    leaf = json.loads(base64.b64decode(hidden["leaf"]))
    from ledger.domain import provision_id

    hidden_id = provision_id(leaf["agency"], hidden["payload"]["request_id"])
    assert env.get("P", f"/v1/proxy/principals/{handle}/provisions/{hidden_id}"
                   ).status_code == 404
    assert env.get("A", f"/v1/me/provisions/{hidden_id}").status_code == 404
    assert env.get("auditor", f"/v1/log/provisions/{hidden_id}/flags").json()["withheld"]
    cancelled = env.client.delete(f"/v1/me/proxies/{handle}",
                                  headers=env.headers("A", "DELETE", ""))
    assert cancelled.status_code == 200
    assert env.get("P", "/v1/proxy/principals").json()["principals"] == []
    for record in a_records:
        assert env.get("P", f"/v1/proxy/principals/{handle}/provisions/{record}"
                       ).status_code == 404
