"""A resident who emigrates (国外転出): the card's certificate is revoked, the operator re-issues
a credential for the same pseudonym, and the resident keeps reading every record, including a
pension provision recorded after leaving (docs/residents.md). API and web pages; SQLite and
PostgreSQL; the operator's command with its exit codes."""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.demo import ensure_ca, issue_resident
from api.residents import fingerprint
from api.schema import resident_reissue
from api.web.sessions import CSRF_COOKIE
from kiroku.cli import main
from kiroku.client import sign_login
from ledger.catalog import load_catalog
from tests.api.conftest import SUBJECT_A, Env, _build
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.ledger.fixtures import REGISTERED

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres",
                 marks=pytest.mark.skipif(not postgres_available(), reason=PG_SKIP_REASON)),
]
PENSION = "73-2"  # 厚生労働大臣 asks a mayor, for the national pension (国民年金法)


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    database = sqlite_database if request.param == "sqlite" else postgres_database
    with database() as url:
        yield from _build(url, Path(tempfile.mkdtemp(prefix="kiroku-abroad-")))


def _credential(env: Env, name: str) -> tuple[x509.Certificate, str, rsa.RSAPrivateKey]:
    """A certificate of the same resident CA, as the operator issues after the card is gone."""
    ca_key, ca, _ = ensure_ca(env.services.settings.resident_ca.parent)  # type: ignore[union-attr]
    cert, path, key_path = issue_resident(ca_key, ca, Path(tempfile.mkdtemp()), name)
    key = load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return cert, path.read_text(), key


def _body(client: TestClient, certificate: str, key: rsa.RSAPrivateKey) -> dict[str, str]:
    got = client.post("/v1/auth/challenge").json()
    return {"certificate": certificate, "challenge": got["challenge"],
            "signature": base64.b64encode(sign_login(key, got["message"].encode())).decode()}


def _api_login(env: Env, certificate: str, key: rsa.RSAPrivateKey) -> Any:
    return env.client.post("/v1/auth/session", json=_body(env.client, certificate, key))


def _web_login(env: Env, certificate: str, key: rsa.RSAPrivateKey) -> tuple[TestClient, Any]:
    browser = TestClient(env.client.app, follow_redirects=False)
    assert browser.get("/login").status_code == 200  # the CSRF cookie
    response = browser.post("/login/resident", json=_body(browser, certificate, key),
                            headers={"X-CSRF-Token": str(browser.cookies[CSRF_COOKIE])})
    return browser, response


def _records(env: Env, token: str) -> list[str]:
    response = env.client.get("/v1/me/provisions?limit=100",
                              headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def _pension_statement(env: Env) -> dict[str, Any]:
    """The mayor's answer to the pension office about the emigrated resident."""
    basis = load_catalog().bases[PENSION]
    if "MHLW" not in env.world.keys:
        env.world.ledger.register_agency("MHLW", name_ja="厚生労働省", name_en="MHLW",
                                         kind="ministry", roles=[basis.requester],
                                         registered_at=REGISTERED)
        from ledger.keys import SigningKey

        key = SigningKey.generate()
        env.world.ledger.add_agency_key("MHLW", key.public_bytes, valid_from=REGISTERED)
        env.world.keys["MHLW"] = key
    return env.world.statement(agency=env.x, subject=SUBJECT_A, requester="MHLW",
                               basis=basis.id, affair=basis.affair_id, items=[basis.items[0]])


def test_an_emigrated_resident_keeps_every_record_through_the_reissued_credential(
        env: Env) -> None:
    card = env.residents["A"]
    old_sha = fingerprint(x509.load_pem_x509_certificate(card.certificate.encode()))
    before = _records(env, env.login("A"))
    assert len(before) == 3  # A's visible records (one more is withheld: 不開示)
    old_session = env.headers("A", "GET", "/v1/me/provisions")

    # 国外転出: the card's certificate is revoked and a new credential is issued.
    new_cert, new_pem, new_key = _credential(env, "abroad")
    new_sha = env.services.credentials.reissue(old_sha, new_cert, "emigrated")
    assert new_sha == fingerprint(new_cert)

    # The card no longer logs in (API and pages), and its open session has ended.
    refused = _api_login(env, card.certificate, card.key)
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert SUBJECT_A not in refused.text and old_sha not in refused.text
    _, page_refused = _web_login(env, card.certificate, card.key)
    assert page_refused.status_code == 401 and SUBJECT_A not in page_refused.text
    assert env.client.get("/v1/me/provisions", headers=old_session).status_code == 401

    # The new credential sees the same records...
    session = _api_login(env, new_pem, new_key)
    assert session.status_code == 200, session.text
    token = session.json()["access_token"]
    assert _records(env, token) == before

    # ...and a pension provision recorded after emigration appears, in the API and the pages.
    receipt = env.client.post("/v1/provisions", json=_pension_statement(env))
    assert receipt.status_code == 201, receipt.text
    env.settle()
    after = _records(env, token)
    assert receipt.json()["id"] in after and set(before) < set(after)
    detail = env.client.get(f"/v1/me/provisions/{receipt.json()['id']}",
                            headers={"Authorization": f"Bearer {token}"})
    assert detail.status_code == 200 and detail.json()["payload"]["basis"] == PENSION
    browser, landed = _web_login(env, new_pem, new_key)
    assert landed.status_code == 200, landed.text
    page = browser.get("/me")
    assert page.status_code == 200 and receipt.json()["id"] in page.text
    assert all(record in page.text for record in before)
    # B's records stay B's.
    assert not set(after) & set(_records(env, env.login("B")))

    # The reason is in the operator's table, not in the log.
    with env.world.ledger.log.transaction(commit=False) as db:
        row = db.execute(select(resident_reissue)).one()
    assert (row.old_cert_sha256, row.new_cert_sha256, row.reason) == (old_sha, new_sha,
                                                                       "emigrated")
    assert not any("emigrated" in json.dumps(line) for line in env.world.ledger.export())


def test_reissue_refuses_what_would_hand_records_to_someone_else(env: Env) -> None:
    from ledger.errors import ConfigurationError

    a = fingerprint(x509.load_pem_x509_certificate(env.residents["A"].certificate.encode()))
    b_cert = x509.load_pem_x509_certificate(env.residents["B"].certificate.encode())
    with pytest.raises(ConfigurationError, match="another resident"):
        env.services.credentials.reissue(a, b_cert, "emigrated")
    with pytest.raises(ConfigurationError, match="not registered"):
        env.services.credentials.reissue("0" * 64, b_cert, "emigrated")
    new_cert, _, _ = _credential(env, "again")
    with pytest.raises(ConfigurationError, match="reason"):
        env.services.credentials.reissue(a, new_cert, "moved to Paris")
    # Nothing changed: A still logs in with the card.
    assert _api_login(env, env.residents["A"].certificate, env.residents["A"].key
                      ).status_code == 200
    env.services.credentials.reissue(a, new_cert, "emigrated")
    other, _, _ = _credential(env, "third")
    with pytest.raises(ConfigurationError, match="already re-issued"):
        env.services.credentials.reissue(a, other, "emigrated")


def test_the_operator_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIROKU_HOME", str(tmp_path / "var"))
    monkeypatch.delenv("KIROKU_DATABASE_URL", raising=False)
    ca_key, ca, ca_path = ensure_ca(tmp_path / "ca")
    monkeypatch.setenv("KIROKU_RESIDENT_CA", str(ca_path))
    card, card_path, _ = issue_resident(ca_key, ca, tmp_path / "residents", "card")
    _, new_path, _ = issue_resident(ca_key, ca, tmp_path / "residents", "abroad")

    def kiroku(*args: str) -> Any:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    assert kiroku("init").exit_code == 0
    assert kiroku("resident", "register", str(card_path), "--subject", SUBJECT_A).exit_code == 0
    assert kiroku("resident", "reissue", "--help").exit_code == 0
    done = kiroku("resident", "reissue", "--old", fingerprint(card), "--new", str(new_path),
                  "--reason", "emigrated")
    assert done.exit_code == 0, done.output
    assert SUBJECT_A not in done.output and "revoked certificate" in done.output
    for text in (card.subject.rfc4514_string(), format(card.serial_number, "x")):
        assert text not in done.output
    again = kiroku("resident", "reissue", "--old", str(card_path), "--new", str(new_path))
    assert again.exit_code == 2 and "already re-issued" in again.output
    bad = kiroku("resident", "reissue", "--old", str(card_path), "--new", str(new_path),
                 "--reason", "paris")
    assert bad.exit_code == 2
