"""An in-process service over a fresh ledger: agencies X (provider) and Y (requester), residents
A and B with records, an auditor, and helpers to call routes as each of them."""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from api.app import create_app
from api.demo import ensure_ca, issue_resident
from api.request_signing import sign_request
from api.residents import CredentialStore
from api.services import Services
from api.settings import ApiSettings
from kiroku.client import sign_login
from ledger.keys import SigningKey
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.ledger.fixtures import World, make_world

SUBJECT_A = "subj-AAAAAAAAAAAAAAAAAAAA"
SUBJECT_B = "subj-BBBBBBBBBBBBBBBBBBBB"


@dataclass
class ResidentCred:
    subject: str
    certificate: str
    key: rsa.RSAPrivateKey


@dataclass
class Env:
    client: TestClient
    world: World
    services: Services
    residents: dict[str, ResidentCred]
    auditor: SigningKey
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def x(self) -> str:
        return self.world.provider

    @property
    def y(self) -> str:
        return self.world.requester

    def settle(self) -> None:
        """What the background thread does: sign a checkpoint, bring the views up to date."""
        self.services.housekeeper.checkpoint_if_behind()
        self.services.housekeeper.project(force=True)

    def login(self, who: str) -> str:
        if who not in self._tokens:
            cred = self.residents[who]
            challenge = self.client.post("/v1/auth/challenge").json()
            signature = sign_login(cred.key, challenge["message"].encode())
            response = self.client.post("/v1/auth/session", json={
                "certificate": cred.certificate, "challenge": challenge["challenge"],
                "signature": base64.b64encode(signature).decode()})
            assert response.status_code == 200, response.text
            self._tokens[who] = response.json()["access_token"]
        return self._tokens[who]

    def headers(self, who: str, method: str, target: str, body: bytes = b"") -> dict[str, str]:
        """Authorization for ``who``: "A"/"B" (residents), "X"/"Y" (agencies), "auditor", "anon"."""
        if who in self.residents:
            return {"Authorization": f"Bearer {self.login(who)}"}
        if who in ("X", "Y"):
            code = self.x if who == "X" else self.y
            return {"Authorization": sign_request(self.world.keys[code], f"agency:{code}",
                                                  method, target, body)}
        if who == "auditor":
            return {"Authorization": sign_request(self.auditor, "auditor:test-auditor", method,
                                                  target, body)}
        return {}

    def get(self, who: str, target: str, **kwargs: Any) -> Any:
        return self.client.get(target, headers=self.headers(who, "GET", target), **kwargs)


def _build(url: str, tmp: Path) -> Iterator[Env]:
    world = make_world(url, tmp)
    ca_key, ca, ca_path = ensure_ca(tmp / "ca")
    auditor = SigningKey.generate()
    settings = ApiSettings(
        home=tmp, database_url=url, log_origin="test.kiroku/log", demo=False,
        session_secret="s" * 40, resident_ca=ca_path,  # type: ignore[arg-type]
        auditor_keys=f"test-auditor={base64.b64encode(auditor.public_bytes).decode()}",
        background=False, checkpoint_interval=0.2, projection_interval=0.2)
    app = create_app(settings, world.ledger)
    services: Services = app.state.services
    store = CredentialStore(world.ledger)
    residents = {}
    for who, subject in (("A", SUBJECT_A), ("B", SUBJECT_B)):
        cert, cert_path, key_path = issue_resident(ca_key, ca, tmp / "residents", who)
        store.register(cert, subject)
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        key = load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        residents[who] = ResidentCred(subject, cert_path.read_text(), key)
    with TestClient(app) as client:
        env = Env(client, world, services, residents, auditor)
        # Records: A has three visible and one non-disclosed; B has two.
        for subject, n in ((SUBJECT_A, 3), (SUBJECT_B, 2)):
            for _ in range(n):
                receipt = client.post("/v1/provisions", json=world.statement(subject=subject))
                assert receipt.status_code == 201, receipt.text
        hidden = client.post("/v1/provisions", json=world.statement(subject=SUBJECT_A,
                                                                       non_disclosure=True))
        assert hidden.status_code == 201, hidden.text
        env.settle()
        yield env
    world.ledger.close()


@pytest.fixture
def env() -> Iterator[Env]:
    with sqlite_database() as url:
        yield from _build(url, Path(tempfile.mkdtemp(prefix="kiroku-api-")))


@pytest.fixture
def pg_env() -> Iterator[Env]:
    if not postgres_available():
        pytest.skip(PG_SKIP_REASON)
    with postgres_database() as url:
        yield from _build(url, Path(tempfile.mkdtemp(prefix="kiroku-api-")))
