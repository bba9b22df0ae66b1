"""The kiroku service (``create_app``) with real witnesses configured, for the witnessing tests.

A fresh ledger (tests.ledger.fixtures: agencies, keys, statements) on SQLite or PostgreSQL, two
``kiroku witness serve`` processes on 127.0.0.1 that trust its operator key, and the app built
with ``KIROKU_WITNESSES`` naming them and ``KIROKU_WITNESS_QUORUM``. Resident A is registered
with a test CA so the resident routes can be called with a real session.
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from fastapi import FastAPI

from api.app import create_app
from api.demo import ensure_ca, issue_resident
from api.residents import CredentialStore
from api.services import Services
from api.settings import ApiSettings
from api.witnessing import Witnessing
from kiroku.client import sign_login
from ledger.application import Receipt
from ledger.keys import SigningKey
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.ledger.fixtures import World, make_world
from tests.witness.servers import WitnessProcess

SUBJECT = "subj-WWWWWWWWWWWWWWWWWWWW"
AUDITOR = base64.b64encode(SigningKey.generate().public_bytes).decode()  # required, unused here

#: Log-side tests run on both databases; the PostgreSQL one skips (reason naming PostgreSQL)
#: when no server is reachable, which CI turns into a failure.
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def database(kind: str, *, migrate: bool = True) -> Iterator[str]:
    """A fresh database URL of ``kind`` ("sqlite" or "postgres"), dropped afterwards."""
    if kind == "postgres":
        if not postgres_available():
            pytest.skip(PG_SKIP_REASON)
        with postgres_database(migrate) as url:
            yield url
    else:
        with sqlite_database(migrate) as url:
            yield url


@dataclass
class Resident:
    subject: str
    certificate: str
    key: rsa.RSAPrivateKey
    token: str | None = None


@dataclass
class WitnessedLog:
    """A ledger, its witnesses, and how to build the service over them."""

    world: World
    witnesses: list[WitnessProcess]
    home: Path
    resident_ca: Path
    resident: Resident

    @property
    def ledger(self) -> Any:
        return self.world.ledger

    def settings(self, *, quorum: int | None, background: bool,
                 timeout: float = 5) -> ApiSettings:
        return ApiSettings(
            home=self.home, database_url=self.ledger.settings.database_url,
            log_origin=self.ledger.origin, demo=False, session_secret="s" * 40,  # type: ignore[arg-type]
            resident_ca=self.resident_ca, auditor_keys=f"test-auditor={AUDITOR}",
            background=background, checkpoint_interval=0.2, projection_interval=0.2,
            witnesses=",".join(w.endpoint for w in self.witnesses), witness_quorum=quorum,
            witness_timeout=timeout)

    def app(self, *, quorum: int | None = None, background: bool = False,
            timeout: float = 5) -> FastAPI:
        """The service over this log; ``background`` runs the housekeeper and witness threads."""
        settings = self.settings(quorum=quorum, background=background, timeout=timeout)
        return create_app(settings, self.ledger)

    def append(self, n: int = 1) -> list[Receipt]:
        """Append ``n`` of resident A's records directly."""
        return [self.ledger.append(self.world.statement(subject=SUBJECT)) for _ in range(n)]


def services_of(app: FastAPI) -> Services:
    services: Services = app.state.services
    return services


def witnessing_of(app: FastAPI) -> Witnessing:
    witnessing = services_of(app).housekeeper.witnessing
    assert witnessing is not None, "the app has no witnesses configured"
    return witnessing


def cosign(app: FastAPI, *which: int) -> list[bool]:
    """What one round of the housekeeper's witness threads does, for the witnesses ``which``
    (positions in KIROKU_WITNESSES): send the latest checkpoint, store the cosignatures."""
    witnessing = witnessing_of(app)
    with httpx.Client(timeout=10) as http:
        return [witnessing.submit(witnessing.witnesses[i], http) for i in which]


def login(client: Any, resident: Resident) -> dict[str, str]:
    """A Bearer session for ``resident`` (challenge signed with the certificate's key)."""
    if resident.token is None:
        challenge = client.post("/v1/auth/challenge").json()
        signature = sign_login(resident.key, challenge["message"].encode())
        response = client.post("/v1/auth/session", json={
            "certificate": resident.certificate, "challenge": challenge["challenge"],
            "signature": base64.b64encode(signature).decode()})
        assert response.status_code == 200, response.text
        resident.token = response.json()["access_token"]
    return {"Authorization": f"Bearer {resident.token}"}


@contextmanager
def witnessed_log(kind: str, tmp_path: Path, *, count: int = 2) -> Iterator[WitnessedLog]:
    """A fresh ledger on ``kind`` with ``count`` running witnesses trusting its key."""
    home = Path(tempfile.mkdtemp(prefix="kiroku-witnessed-", dir=tmp_path))
    with ExitStack() as stack:
        url = stack.enter_context(database(kind))
        world = make_world(url, home / "log")
        stack.callback(world.ledger.close)
        ca_key, ca, ca_path = ensure_ca(home / "ca")
        cert, cert_path, key_path = issue_resident(ca_key, ca, home / "residents", "A")
        CredentialStore(world.ledger).register(cert, SUBJECT)
        key = load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        witnesses = [WitnessProcess(home / f"w{i}", f"witness.test/w{i}",
                                    {world.ledger.origin: world.ledger.vkey})
                     for i in range(1, count + 1)]
        for witness in witnesses:
            stack.callback(witness.stop)
            witness.start()
        yield WitnessedLog(world, witnesses, home, ca_path,
                           Resident(SUBJECT, cert_path.read_text(), key))
