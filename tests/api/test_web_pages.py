"""The web pages' security over plain HTTP: every page route × every kind of caller (a resident
sees only their own records, the console is the auditor's, the agency page each agency's own),
log-in for each role, cookie flags, CSRF, the Content-Security-Policy, and sessions that end
when the credential does. (The pages in a browser: tests/web/test_pages.py.)
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.web import ROUTERS
from api.web.login import console_message
from api.web.sessions import CSRF_COOKIE, SESSION_COOKIE
from kiroku.client import sign_login
from ledger.keys import SigningKey
from ledger.proxies import new_proxy_identity
from tests.api.conftest import Env

CALLERS = ("A", "B", "P", "X", "Y", "auditor", "anon")  # P: a proxy (代理人) of A


def _browser(env: Env, https: bool = False) -> TestClient:
    client = TestClient(env.client.app, base_url="https://testserver" if https
                        else "http://testserver", follow_redirects=False)
    assert client.get("/login").status_code == 200  # sets this browser's CSRF cookie
    return client


def _csrf(client: TestClient) -> str:
    return str(client.cookies[CSRF_COOKIE])


def _resident_body(env: Env, client: TestClient, who: str) -> dict[str, str]:
    cred = env.residents[who]
    got = client.post("/v1/auth/challenge").json()
    return {"certificate": cred.certificate, "challenge": got["challenge"],
            "signature": base64.b64encode(sign_login(cred.key, got["message"].encode())).decode()}


def _console_body(env: Env, client: TestClient, principal: str, key: SigningKey
                  ) -> dict[str, str]:
    challenge = client.post("/v1/auth/challenge").json()["challenge"]
    message = console_message("test.kiroku/log", principal, key.key_id, challenge)
    return {"principal": principal, "key_id": key.key_id, "challenge": challenge,
            "signature": base64.b64encode(key.sign(message)).decode()}


def _proxy_of_a(env: Env) -> str:
    """Register P (a certificate of its own, no records) as A's proxy, once; P's handle."""
    if "P" not in env.residents:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        from api.demo import ensure_ca, issue_resident
        from api.residents import fingerprint
        from tests.api.conftest import ResidentCred

        folder = env.services.settings.resident_ca_path().parent
        ca_key, ca, _ = ensure_ca(folder)
        cert, cert_path, key_path = issue_resident(ca_key, ca, folder / "proxies", "P")
        holder = new_proxy_identity()
        env.services.credentials.register(cert, holder)
        registration, _ = env.world.ledger.register_proxy(env.residents["A"].subject, holder,
                                                          "legal_representative")
        key = load_pem_private_key(key_path.read_bytes(), password=None)
        env.residents["P"] = ResidentCred(holder, cert_path.read_text(), key)  # type: ignore[arg-type]
        env.records["P-handle"] = [{"id": registration.id, "fp": fingerprint(cert)}]
    return str(env.records["P-handle"][0]["id"])


def login(env: Env, who: str, https: bool = False) -> TestClient:
    """A browser logged in as ``who`` through the pages' own log-in routes."""
    if who == "P":
        _proxy_of_a(env)
    client = _browser(env, https)
    if who == "anon":
        return client
    if who in env.residents:
        response = client.post("/login/resident", json=_resident_body(env, client, who),
                               headers={"X-CSRF-Token": _csrf(client)})
    else:
        principal, key = (("auditor:test-auditor", env.auditor) if who == "auditor" else
                          (f"agency:{env.x if who == 'X' else env.y}",
                           env.world.keys[env.x if who == "X" else env.y]))
        response = client.post("/login/console", json=_console_body(env, client, principal, key),
                               headers={"X-CSRF-Token": _csrf(client)})
    assert response.status_code == 200, response.text
    return client


def _a_record(env: Env) -> str:
    return str(env.get("A", "/v1/me/provisions").json()["items"][0]["id"])


def _x_entry(env: Env) -> str:
    receipt = env.client.post("/v1/provisions", json=env.world.statement()).json()
    env.settle()
    return str(receipt["index"])


PAGE = {"A": 200, "B": 200, "P": 200, "X": 403, "Y": 403, "auditor": 403, "anon": 303}
AUDIT = {"A": 403, "B": 403, "P": 403, "X": 403, "Y": 403, "auditor": 200, "anon": 303}
AGENCY = {"A": 403, "B": 403, "P": 403, "X": 200, "Y": 200, "auditor": 403, "anon": 303}
# A principal's pages through P's handle: P only; A and B get 404 like any unknown handle.
PROXY = {**PAGE, "A": 404, "B": 404}
EVERYONE: Callable[[int], dict[str, int]] = lambda status: dict.fromkeys(CALLERS, status)

# (method, route, target builder, expected status per caller); POSTs are checked separately.
MATRIX: list[tuple[str, str, Callable[[Env], str], dict[str, int]]] = [
    ("GET", "/", lambda e: "/", EVERYONE(303)),
    ("GET", "/login", lambda e: "/login", EVERYONE(200)),
    ("GET", "/lang/{lang}", lambda e: "/lang/en?next=/me", EVERYONE(303)),
    ("GET", "/me", lambda e: "/me", {**PAGE, "P": 303}),  # a proxy identity goes to /proxy
    ("GET", "/me/records/{record_id}", lambda e: f"/me/records/{_a_record(e)}",
     {**PAGE, "B": 404, "P": 404}),
    ("GET", "/me/verification", lambda e: f"/me/verification?id={_a_record(e)}", PAGE),
    ("GET", "/me/proxies", lambda e: "/me/proxies", PAGE),
    ("GET", "/proxy", lambda e: "/proxy", PAGE),
    ("GET", "/proxy/{handle}", lambda e: f"/proxy/{_proxy_of_a(e)}", PROXY),
    ("GET", "/proxy/{handle}/records/{record_id}",
     lambda e: f"/proxy/{_proxy_of_a(e)}/records/{_a_record(e)}", PROXY),
    ("GET", "/proxy/{handle}/verification",
     lambda e: f"/proxy/{_proxy_of_a(e)}/verification?id={_a_record(e)}", PROXY),
    ("GET", "/audit", lambda e: "/audit", AUDIT),
    ("GET", "/audit/agencies/{code}", lambda e: f"/audit/agencies/{e.x}", AUDIT),
    ("GET", "/audit/agencies/{code}/csv/{part}", lambda e: f"/audit/agencies/{e.x}/csv/counts",
     AUDIT),
    ("GET", "/audit/entry", lambda e: "/audit/entry?index=1", {**AUDIT, "auditor": 303}),
    ("GET", "/audit/entries/{index}", lambda e: "/audit/entries/1", AUDIT),
    ("GET", "/audit/entries/{index}/verification", lambda e: "/audit/entries/1/verification",
     AUDIT),
    ("GET", "/agency", lambda e: "/agency", AGENCY),
    ("GET", "/agency/csv/{part}", lambda e: "/agency/csv/counts", AGENCY),
    ("GET", "/agency/verification", lambda e: "/agency/verification", AGENCY),
    ("GET", "/agency/receipts/{index}", lambda e: f"/agency/receipts/{_x_entry(e)}",
     {**AGENCY, "Y": 404}),
    # Notices and alert subscriptions: a proxy identity has neither (its /me/notices goes to
    # /proxy as /me does; the API answers 403 to both), a principal's notices only through P.
    ("GET", "/me/notices", lambda e: "/me/notices", {**PAGE, "P": 303}),
    ("GET", "/proxy/{handle}/notices", lambda e: f"/proxy/{_proxy_of_a(e)}/notices", PROXY),
    ("GET", "/me/subscriptions", lambda e: "/me/subscriptions", {**PAGE, "P": 403}),
    # E-applications: a resident's own (another's, or a notice not addressed to them, answers
    # 404 like a missing one); a proxy identity has none. POST: tests/api/test_web_applications.
    ("GET", "/me/applications", lambda e: "/me/applications", {**PAGE, "P": 404}),
    ("GET", "/me/applications/new",
     lambda e: f"/me/applications/new?notice={_address_notice_of_a(e)}",
     {**PAGE, "B": 404, "P": 404}),
    ("GET", "/me/applications/{application_id}",
     lambda e: f"/me/applications/{_application_of_a(e)}", {**PAGE, "B": 404, "P": 404}),
]
POSTS = {"/login/resident", "/login/console", "/login/demo", "/logout", "/me/proxies",
         "/me/proxies/{registration_id}/cancel",
         # checked by caller in tests/api/test_web_notices.py
         "/me/notices/{notice_id}/read", "/proxy/{handle}/notices/{notice_id}/read",
         "/me/subscriptions", "/me/subscriptions/{subscription_id}/confirm",
         "/me/subscriptions/{subscription_id}/delete",
         # checked by caller in tests/api/test_web_applications.py
         "/me/applications"}


def _address_notice_of_a(env: Env) -> str:
    from tests.api.test_applications import add_partners, address_notice

    if "address" not in env.records:
        add_partners(env)
        env.records["address"] = [{"id": address_notice(env)}]
    return str(env.records["address"][0]["id"])


def _application_of_a(env: Env) -> str:
    from tests.api.test_applications import apply, signed

    if "application" not in env.records:
        response = apply(env, signed(env, _address_notice_of_a(env)))
        assert response.status_code == 201, response.text
        env.records["application"] = [response.json()]
    return str(env.records["application"][0]["id"])


def test_matrix_covers_every_page_route(env: Env) -> None:
    pages = {(method, route.path) for router in ROUTERS for route in router.routes
             if isinstance(route, APIRoute) for method in route.methods} | {("GET", "/")}
    gets = {(m, p) for m, p, *_ in MATRIX}
    assert pages == gets | {("POST", p) for p in POSTS}


@pytest.mark.parametrize("method,path,target,expected", MATRIX,
                         ids=[f"{m} {p}" for m, p, *_ in MATRIX])
def test_page_by_caller(env: Env, method: str, path: str, target: Callable[[Env], str],
                        expected: dict[str, int]) -> None:
    for caller in CALLERS:
        browser = login(env, caller)
        response = browser.request(method, target(env))
        assert response.status_code == expected[caller], (caller, response.text[:300])
        if response.status_code == 303 and path.startswith(("/me", "/audit/", "/agency")) \
                and caller == "anon":
            assert response.headers["location"].startswith("/login?next=")


def test_a_resident_never_sees_another_residents_record(env: Env) -> None:
    record = _a_record(env)
    b = login(env, "B")
    assert b.get(f"/me/records/{record}").status_code == 404
    assert b.get(f"/me/verification?id={record}").json()["records"] == []
    page = b.get("/me").text
    assert record not in page and env.residents["A"].subject not in page


def test_the_list_never_shows_non_disclosed_records(env: Env) -> None:
    bundle = login(env, "A").get("/me/verification").json()
    assert len(bundle["records"]) == 3  # A has three visible records and one non-disclosed
    assert all(not r["payload"]["non_disclosure"] for r in bundle["records"])


def test_session_cookie_flags_and_security_headers(env: Env) -> None:
    client = _browser(env)
    response = client.post("/login/resident", json=_resident_body(env, client, "A"),
                           headers={"X-CSRF-Token": _csrf(client)})
    cookie = response.headers["set-cookie"]
    assert f"{SESSION_COOKIE}=" in cookie and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    page = client.get("/me")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text  # no inline script: only src= and JSON data blocks
    secure = _browser(env, https=True)
    response = secure.post("/login/resident", json=_resident_body(env, secure, "A"),
                           headers={"X-CSRF-Token": _csrf(secure)})
    assert "Secure" in response.headers["set-cookie"]


def test_posts_without_the_csrf_token_change_nothing(env: Env) -> None:
    client = login(env, "A")
    assert client.post("/logout", data={"csrf": "forged-token-value-123456"}).status_code == 403
    assert client.get("/me").status_code == 200  # still logged in
    fresh = _browser(env)
    body = _resident_body(env, fresh, "A")
    refused = fresh.post("/login/resident", json=body)  # no X-CSRF-Token header
    assert refused.status_code == 403 and SESSION_COOKIE not in refused.headers.get(
        "set-cookie", "")
    other_site = fresh.post("/login/resident", json=_resident_body(env, fresh, "A"),
                            headers={"X-CSRF-Token": _csrf(fresh),
                                     "Origin": "https://evil.example"})
    assert other_site.status_code == 403
    assert client.post("/logout", data={"csrf": _csrf(client)}).status_code == 303
    assert client.get("/me").status_code == 303


def test_console_login_refuses_a_bad_signature_or_unknown_key(env: Env) -> None:
    client = _browser(env)
    body = _console_body(env, client, "auditor:test-auditor", env.auditor)
    body["signature"] = base64.b64encode(b"\0" * 64).decode()
    response = client.post("/login/console", json=body, headers={"X-CSRF-Token": _csrf(client)})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    stranger = SigningKey.generate()
    body = _console_body(env, client, "auditor:test-auditor", stranger)
    assert client.post("/login/console", json=body,
                       headers={"X-CSRF-Token": _csrf(client)}).status_code == 401
    # A key of agency X cannot log in as agency Y.
    body = _console_body(env, client, f"agency:{env.y}", env.world.keys[env.x])
    assert client.post("/login/console", json=body,
                       headers={"X-CSRF-Token": _csrf(client)}).status_code == 401
    # A challenge is good for one log-in only.
    body = _console_body(env, client, "auditor:test-auditor", env.auditor)
    assert client.post("/login/console", json=body,
                       headers={"X-CSRF-Token": _csrf(client)}).status_code == 200
    assert client.post("/login/console", json=body,
                       headers={"X-CSRF-Token": _csrf(client)}).status_code == 401


def test_one_click_demo_login_exists_only_in_demo_mode(env: Env) -> None:
    client = _browser(env)
    response = client.post("/login/demo", data={"csrf": _csrf(client), "who": "auditor"})
    assert response.status_code == 403
    assert "data-demo" not in client.get("/login").text


def test_revoking_the_credential_ends_the_page_session(env: Env) -> None:
    x = login(env, "X")
    assert x.get("/agency").status_code == 200
    env.world.ledger.revoke_agency_key(env.x, env.world.keys[env.x].key_id)
    time.sleep(1.1)  # pages re-read registrations at most once a second
    assert x.get("/agency").status_code == 303


def test_the_language_switch_only_goes_back_to_this_site(env: Env) -> None:
    client = _browser(env)
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = client.get("/lang/en", params={"next": target})
        assert response.headers["location"] == "/"
    response = client.get("/lang/en", params={"next": "/me?since=2026-01-01"})
    assert response.headers["location"] == "/me?since=2026-01-01"
    assert 'lang="en"' in client.get("/login").text


def test_entry_page_checks_registrar_entries_signed_before_an_operator_rotation(env: Env
                                                                                ) -> None:
    from datetime import timedelta

    ledger = env.world.ledger
    ledger.rotate_operator_key(SigningKey.generate(), window=timedelta(0))
    ledger.register_agency("PENSION", name_ja="日本年金機構", name_en="Japan Pension Service",
                           kind="pension", roles=[env.world.basis.requester])
    env.settle()
    auditor = login(env, "auditor")
    # Entry 0 (the catalog) was signed by the first operator key, the last by the new one.
    for index in (0, ledger.tree_size() - 1):
        page = auditor.get(f"/audit/entries/{index}").text
        assert 'data-state="ok"' in page and 'data-state="bad"' not in page, index


def test_a_proxy_reads_its_principals_records_until_cancelled(env: Env) -> None:
    handle = _proxy_of_a(env)
    p = login(env, "P")
    assert p.get("/me").headers["location"] == "/proxy"
    assert f"/proxy/{handle}" in p.get("/proxy").text
    page = p.get(f"/proxy/{handle}")
    assert page.status_code == 200 and "法定代理人" in page.text
    bundle = p.get(f"/proxy/{handle}/verification").json()
    assert len(bundle["records"]) == 3  # A's visible records, never the non-disclosed one
    assert env.residents["A"].subject not in page.text
    a = login(env, "A")
    listed = a.get("/me/proxies").text
    assert f'data-registration="{handle}"' in listed
    assert a.post(f"/me/proxies/{handle}/cancel", data={"csrf": "wrong-token-000000000000"}
                  ).status_code == 403
    assert a.post(f"/me/proxies/{handle}/cancel", data={"csrf": _csrf(a)}).status_code == 303
    assert p.get(f"/proxy/{handle}").status_code == 404
    assert f"/proxy/{handle}" not in p.get("/proxy").text


def test_a_resident_who_is_also_a_proxy_sees_whom_they_act_for_on_their_own_list(
        env: Env) -> None:
    a, b = login(env, "A"), login(env, "B")
    own = b.get("/me").text
    assert 'id="acts-for"' not in own
    done = a.post("/me/proxies", data={"csrf": _csrf(a), "relationship": "adult_guardian"},
                  files={"certificate": ("b.pem", env.residents["B"].certificate.encode(),
                                         "application/x-pem")})
    assert done.status_code == 303, done.text
    page = b.get("/me").text
    assert 'id="acts-for"' in page and "1 人の代理人" in page
    assert page.count('class="record"') == own.count('class="record"')  # still B's own records
    handle = re.search(r'data-registration="([^"]+)"', a.get("/me/proxies").text)
    assert handle is not None
    assert a.post(f"/me/proxies/{handle.group(1)}/cancel",
                  data={"csrf": _csrf(a)}).status_code == 303
    assert 'id="acts-for"' not in b.get("/me").text


def test_a_resident_registers_a_proxy_from_the_page(env: Env) -> None:
    from api.demo import ensure_ca, issue_resident

    folder = env.services.settings.resident_ca_path().parent
    ca_key, ca, _ = ensure_ca(folder)
    _, cert_path, _ = issue_resident(ca_key, ca, folder / "proxies", "Q")
    b = login(env, "B")
    done = b.post("/me/proxies", data={"csrf": _csrf(b), "relationship": "adult_guardian"},
                  files={"certificate": ("q.pem", cert_path.read_bytes(), "application/x-pem")})
    assert done.status_code == 303, done.text
    assert "成年後見人" in b.get("/me/proxies").text
    refused = b.post("/me/proxies", data={"csrf": _csrf(b), "relationship": "adult_guardian"},
                     files={"certificate": ("x.pem", b"not a certificate", "text/plain")})
    assert refused.status_code == 422 and 'id="proxy-error"' in refused.text


def test_a_flag_set_later_hides_the_record_from_its_pages_and_shows_auditors_its_history(
        env: Env) -> None:
    from ledger.flags import KIND, flag_payload
    from ledger.signing import sign_statement

    record = _a_record(env)
    index = int(env.get("A", f"/v1/me/provisions/{record}").json()["record"]["index"])
    a = login(env, "A")
    assert a.get(f"/me/records/{record}").status_code == 200
    # The provider (X) withholds the record afterwards (不開示, e.g. a DV support measure).
    flag = sign_statement(flag_payload(record, "non_disclosure", set=True,
                                       reason="dv_support_measure"),
                          kind=KIND, agency=env.x, key=env.world.keys[env.x])
    assert env.client.post("/v1/flags", json=flag).status_code == 201
    env.settle()
    assert a.get(f"/me/records/{record}").status_code == 404
    assert record not in a.get("/me").text
    assert all(r["id"] != record for r in a.get("/me/verification").json()["records"])
    p = login(env, "P")
    assert record not in p.get(f"/proxy/{_proxy_of_a(env)}").text
    page = login(env, "auditor").get(f"/audit/entries/{index}").text
    assert 'id="flag-history"' in page and "dv_support_measure" in page
    assert "住民に非表示" in page
