"""Proxies over HTTP: a resident names one (POST /v1/me/proxies) with the proxy's certificate;
the proxy logs in with it and reads the principal's records minus everything withheld, through
an opaque handle; cancelling ends that at once; a stranger cannot cancel; a reissued card of the
principal changes nothing. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from api.demo import ensure_ca, issue_resident
from api.residents import CredentialStore, fingerprint
from ledger.flags import KIND, flag_payload
from ledger.signing import sign_statement
from tests.api.conftest import SUBJECT_A, SUBJECT_B, Env, ResidentCred


@pytest.fixture(params=["env", "pg_env"])
def api(request: pytest.FixtureRequest) -> Env:
    env: Env = request.getfixturevalue(request.param)
    return env


def person(env: Env, label: str, subject: str = "") -> ResidentCred:
    """A certificate from the resident CA; logs in as ``label`` once registered."""
    folder = Path(env.services.settings.resident_ca_path()).parent
    ca_key, ca, _ = ensure_ca(folder)
    _cert, cert_path, key_path = issue_resident(ca_key, ca, folder / "people", label)
    key = load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    cred = ResidentCred(subject, cert_path.read_text(), key)
    env.residents[label] = cred
    return cred


def name_proxy(env: Env, principal: str, proxy: ResidentCred,
               relationship: str = "legal_representative") -> dict:
    answer = env.client.post("/v1/me/proxies", headers=env.headers(principal, "POST", ""),
                             json={"certificate": proxy.certificate,
                                   "relationship": relationship})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def _handles(env: Env, who: str) -> list[str]:
    answer = env.get(who, "/v1/proxy/principals")
    assert answer.status_code == 200, answer.text
    return [p["handle"] for p in answer.json()["principals"]]


def _records(env: Env, who: str, handle: str) -> set[str]:
    answer = env.get(who, f"/v1/proxy/principals/{handle}/provisions")
    assert answer.status_code == 200, answer.text
    return {r["id"] for r in answer.json()["items"]}


def test_a_proxy_reads_the_principals_view_minus_flags(api: Env) -> None:
    env = api
    proxy = person(env, "P")
    registration = name_proxy(env, "A", proxy)
    assert [p["id"] for p in env.get("A", "/v1/me/proxies").json()["proxies"]] == [
        registration["id"]]
    handles = _handles(env, "P")
    assert handles == [registration["id"]]
    assert SUBJECT_A not in env.get("P", "/v1/proxy/principals").text
    a_records = {r["id"] for r in env.get("A", "/v1/me/provisions").json()["items"]}
    assert _records(env, "P", handles[0]) == a_records and len(a_records) == 3
    # A flag hides the record from the proxy too; B's records are never reachable.
    flagged = min(a_records)
    statement = sign_statement(flag_payload(flagged, "self_information_block", set=True,
                                            reason="dv_support_measure"),
                               kind=KIND, agency=env.x, key=env.world.keys[env.x])
    assert env.client.post("/v1/flags", json=statement).status_code == 201
    env.settle()
    assert _records(env, "P", handles[0]) == a_records - {flagged}
    detail = env.get("P", f"/v1/proxy/principals/{handles[0]}/provisions/{flagged}")
    assert detail.status_code == 404
    shown = min(a_records - {flagged})
    detail = env.get("P", f"/v1/proxy/principals/{handles[0]}/provisions/{shown}")
    assert detail.status_code == 200 and detail.json()["record"]["id"] == shown
    b_record = env.get("B", "/v1/me/provisions").json()["items"][0]["id"]
    assert env.get("P", f"/v1/proxy/principals/{handles[0]}/provisions/{b_record}"
                   ).status_code == 404
    # The proxy's credential is not a resident's: it has no /v1/me records.
    assert env.get("P", "/v1/me/provisions").status_code == 403
    # Another resident cannot use A's handle, and cannot cancel A's registration.
    assert env.get("B", f"/v1/proxy/principals/{handles[0]}/provisions").status_code == 404
    stranger = env.client.delete(f"/v1/me/proxies/{registration['id']}",
                                 headers=env.headers("B", "DELETE", ""))
    assert stranger.status_code == 404
    assert _handles(env, "P") == handles
    cancelled = env.client.delete(f"/v1/me/proxies/{registration['id']}",
                                  headers=env.headers("A", "DELETE", ""))
    assert cancelled.status_code == 200 and cancelled.json()["cancelled_by"] == "principal"
    assert _handles(env, "P") == []
    assert env.get("P", f"/v1/proxy/principals/{handles[0]}/provisions").status_code == 404
    assert env.get("A", "/v1/me/proxies").json()["proxies"] == []


def test_a_resident_can_be_a_proxy_with_their_own_card(api: Env) -> None:
    env = api
    cred = env.residents["B"]
    registration = name_proxy(env, "A", cred, "adult_guardian")
    handles = _handles(env, "B")
    assert handles == [registration["id"]]
    assert len(_records(env, "B", handles[0])) == 3
    # B's own records stay B's own.
    assert len(env.get("B", "/v1/me/provisions").json()["items"]) == 2
    refused = env.client.post("/v1/me/proxies", headers=env.headers("A", "POST", ""),
                              json={"certificate": env.residents["A"].certificate,
                                    "relationship": "appointed"})
    assert (refused.status_code, refused.json()["code"]) == (422, "invalid-proxy")
    again = env.client.post("/v1/me/proxies", headers=env.headers("A", "POST", ""),
                            json={"certificate": cred.certificate, "relationship": "appointed"})
    assert (again.status_code, again.json()["code"]) == (409, "proxy-already-registered")
    unknown = env.client.post("/v1/me/proxies", headers=env.headers("A", "POST", ""),
                              json={"certificate": cred.certificate, "relationship": "friend"})
    assert unknown.status_code == 422
    assert SUBJECT_B not in env.get("A", "/v1/me/proxies").text


def test_a_reissued_card_of_the_principal_does_not_cancel_and_an_authority_can(api: Env) -> None:
    env = api
    proxy = person(env, "P")
    registration = name_proxy(env, "A", proxy)
    store = CredentialStore(env.world.ledger)
    old = env.residents["A"]
    from cryptography import x509

    store.revoke(fingerprint(x509.load_pem_x509_certificate(old.certificate.encode())))
    new = person(env, "A2", SUBJECT_A)
    store.register(x509.load_pem_x509_certificate(new.certificate.encode()), SUBJECT_A)
    assert _handles(env, "P") == [registration["id"]]
    assert [p["id"] for p in env.get("A2", "/v1/me/proxies").json()["proxies"]] == [
        registration["id"]]
    env.world.ledger.cancel_proxy(registration["id"], by="authority", reason="court_order")
    assert _handles(env, "P") == []
    # The registrar entries name the registration only; who is who stays in the operator's table.
    lines = [json.loads(line) for line in env.get("auditor", "/v1/log/entries").text.splitlines()]
    proxy_lines = [line for line in lines if (line["payload"] or {}).get("proxy")]
    assert len(proxy_lines) == 2
    assert not any(SUBJECT_A in json.dumps(line) for line in proxy_lines)
