"""Residents log in with a certificate and read only their own records."""

from __future__ import annotations

import base64
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import rsa

from api.demo import ensure_ca, issue_resident
from kiroku.client import sign_login
from tests.api.conftest import SUBJECT_A, Env


def _login(env: Env, certificate: str, key, *, message: str | None = None,
           challenge: str | None = None):
    got = env.client.post("/v1/auth/challenge").json()
    signature = sign_login(key, (message or got["message"]).encode())
    return env.client.post("/v1/auth/session", json={
        "certificate": certificate, "challenge": challenge or got["challenge"],
        "signature": base64.b64encode(signature).decode()})


def test_login_issues_short_lived_session(env: Env) -> None:
    cred = env.residents["A"]
    response = _login(env, cred.certificate, cred.key)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert SUBJECT_A not in body["access_token"] and SUBJECT_A not in response.text


def test_login_refusals(env: Env, tmp_path) -> None:
    cred = env.residents["A"]
    other = env.residents["B"]
    # Someone else's key
    assert _login(env, cred.certificate, other.key).status_code == 401
    # A signature over another message
    assert _login(env, cred.certificate, cred.key, message="hello").status_code == 401
    # A forged challenge
    assert _login(env, cred.certificate, cred.key, challenge="e30.AAAA").status_code == 401
    # A certificate from an untrusted CA
    ca_key, ca, _ = ensure_ca(tmp_path / "rogue")
    _cert, path, key_path = issue_resident(ca_key, ca, tmp_path / "rogue", "mallory")
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert _login(env, path.read_text(), key).status_code == 401
    # Garbage certificate
    response = _login(env, "not a cert", cred.key)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


def test_challenge_is_single_use(env: Env) -> None:
    cred = env.residents["A"]
    got = env.client.post("/v1/auth/challenge").json()
    body = {"certificate": cred.certificate, "challenge": got["challenge"],
            "signature": base64.b64encode(sign_login(cred.key, got["message"].encode())).decode()}
    assert env.client.post("/v1/auth/session", json=body).status_code == 200
    assert env.client.post("/v1/auth/session", json=body).status_code == 401


def test_revoked_certificate_ends_sessions(env: Env) -> None:
    from cryptography import x509

    from api.residents import fingerprint

    headers = env.headers("A", "GET", "/v1/me/provisions")
    cert = x509.load_pem_x509_certificate(env.residents["A"].certificate.encode())
    env.services.credentials.revoke(fingerprint(cert))
    assert env.client.get("/v1/me/provisions", headers=headers).status_code == 401


def test_tampered_session_refused(env: Env) -> None:
    token = env.login("A")
    head, _, mac = token.partition(".")
    forged = head + "." + ("A" if mac[0] != "A" else "B") + mac[1:]
    response = env.client.get("/v1/me/provisions", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_list_only_own_visible_records_with_labels(env: Env) -> None:
    page = env.get("A", "/v1/me/provisions").json()
    assert len(page["items"]) == 3  # the non-disclosed fourth record never appears
    item = page["items"][0]
    assert item["requester"]["name_ja"] and item["requester"]["name_en"]
    assert item["affair"]["ja"] and item["affair"]["en"]
    assert all(i["ja"] and i["en"] for i in item["items"])
    b_page = env.get("B", "/v1/me/provisions").json()
    assert len(b_page["items"]) == 2
    assert not {i["id"] for i in page["items"]} & {i["id"] for i in b_page["items"]}


def test_page_says_how_far_the_view_has_read_the_log(env: Env) -> None:
    last = env.world.ledger.tree_size() - 1
    page = env.get("A", "/v1/me/provisions").json()
    assert page["as_of"] == last
    # A new provision about A is in the log, not yet in the view: the page says so by as_of.
    receipt = env.client.post("/v1/provisions", json=env.world.statement(subject=SUBJECT_A))
    assert receipt.status_code == 201
    page = env.get("A", "/v1/me/provisions").json()
    assert page["as_of"] == last and receipt.json()["id"] not in {i["id"] for i in page["items"]}
    env.settle()
    page = env.get("A", "/v1/me/provisions").json()
    assert page["as_of"] == receipt.json()["index"]
    assert receipt.json()["id"] in {i["id"] for i in page["items"]}


def test_filters_and_cursor(env: Env) -> None:
    first = env.get("A", "/v1/me/provisions?limit=2").json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = env.get("A", f"/v1/me/provisions?limit=2&cursor={first['next_cursor']}").json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert env.get("A", f"/v1/me/provisions?agency={env.x}").json()["items"]
    assert env.get("A", "/v1/me/provisions?agency=NOPE").json()["items"] == []
    affair = first["items"][0]["affair"]["id"]
    assert len(env.get("A", f"/v1/me/provisions?affair={affair}").json()["items"]) == 3
    future = datetime.now().year + 1
    assert env.get("A", f"/v1/me/provisions?since={future}-01-01T00:00:00Z").json()["items"] == []
    assert env.get("A", "/v1/me/provisions?cursor=garbage").status_code == 400
    assert env.get("A", "/v1/me/provisions?since=yesterday").status_code == 400
    assert env.get("A", "/v1/me/provisions?limit=0").status_code == 400


def test_another_residents_record_is_not_found(env: Env) -> None:
    a_item = env.get("A", "/v1/me/provisions").json()["items"][0]
    assert env.get("A", f"/v1/me/provisions/{a_item['id']}").status_code == 200
    response = env.get("B", f"/v1/me/provisions/{a_item['id']}")
    assert response.status_code == 404
    assert SUBJECT_A not in response.text


def test_detail_has_payload_proof_and_checkpoint(env: Env) -> None:
    item = env.get("A", "/v1/me/provisions").json()["items"][0]
    detail = env.get("A", f"/v1/me/provisions/{item['id']}").json()
    assert detail["payload"]["subject"] == SUBJECT_A
    assert detail["inclusion"]["leaf_index"] == item["index"]
    assert detail["checkpoint"].startswith("test.kiroku/log\n")
    assert detail["vkey"] == env.world.ledger.vkey
