"""Settings refuse unsafe defaults; the Python client signs, submits, logs in and verifies."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.settings import ApiSettings
from kiroku.client import (
    AgencyClient,
    ApiProblem,
    AuditorClient,
    ResidentClient,
    sign_login,
    verify_record,
)
from ledger.keys import SigningKey
from tests.api.conftest import SUBJECT_A, Env


def test_production_refuses_missing_or_weak_secrets(tmp_path) -> None:
    with pytest.raises(ValidationError, match="KIROKU_SESSION_SECRET"):
        ApiSettings(_env_file=None, demo=False)
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    key = base64.b64encode(SigningKey.generate().public_bytes).decode()
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        ApiSettings(demo=False, session_secret="short", resident_ca=ca,
                    auditor_keys=f"ppc={key}")
    with pytest.raises(ValidationError, match="auditor key"):
        ApiSettings(demo=False, session_secret="s" * 40, resident_ca=ca, auditor_keys="ppc=xx")
    ok = ApiSettings(demo=False, session_secret="s" * 40, resident_ca=ca,
                     auditor_keys=f"ppc={key}")
    assert next(iter(ok.auditors().values()))[0] == "ppc"
    assert ApiSettings(demo=True).demo


def test_settings_from_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("KIROKU_DEMO", "1")
    monkeypatch.setenv("KIROKU_HOME", str(tmp_path))
    monkeypatch.setenv("KIROKU_CHECKPOINT_INTERVAL", "0.5")
    settings = ApiSettings()
    assert settings.checkpoint_interval == 0.5
    assert settings.ledger_settings().database_url == f"sqlite:///{tmp_path}/kiroku.sqlite3"
    secret = settings.secret()
    assert len(secret) >= 32 and settings.secret() == secret
    assert (tmp_path / "keys" / "demo" / "session.secret").stat().st_mode & 0o777 == 0o600


def test_client_agency_resident_auditor(env: Env) -> None:
    env.services.housekeeper.start()
    try:
        agency = AgencyClient("http://testserver", env.x, env.world.keys[env.x], client=env.client)
        statement = agency.sign(env.world.payload(subject=SUBJECT_A))
        receipt = agency.submit(statement)
        full = agency.receipt(receipt["id"], wait=5)
        assert full["inclusion"]["leaf_index"] == receipt["index"]
        assert agency.submit_batch([agency.sign(env.world.payload())])["count"] == 1
        assert agency.my_report()["agency"]["code"] == env.x
        with pytest.raises(ApiProblem) as refused:
            agency.report(env.y)
        assert refused.value.status == 403 and refused.value.code == "forbidden"

        resident = ResidentClient("http://testserver", client=env.client)
        cred = env.residents["A"]
        resident.login(cred.certificate, cred.key)
        env.services.housekeeper.project(force=True)
        ids = [item["id"] for item in resident.all_provisions()]
        assert receipt["id"] in ids and len(ids) == 4
        detail = resident.provision(receipt["id"])
        assert verify_record(detail, env.world.ledger.vkey)["index"] == receipt["index"]

        auditor = AuditorClient("http://testserver", "test-auditor", env.auditor,
                                client=env.client)
        lines = list(auditor.entries(0, 3))
        assert [line["index"] for line in lines] == [0, 1, 2]
    finally:
        env.services.housekeeper.stop()


def test_verify_record_detects_tampering(env: Env) -> None:
    from verifier.errors import VerificationError

    item = env.get("A", "/v1/me/provisions").json()["items"][0]
    detail = env.get("A", f"/v1/me/provisions/{item['id']}").json()
    changed = dict(detail, payload=dict(detail["payload"], items=["something else"]))
    with pytest.raises(VerificationError, match="commitment"):
        verify_record(changed, env.world.ledger.vkey)
    other_vkey = "test.kiroku/log+00000000+" + base64.b64encode(b"\x01" + b"\x00" * 32).decode()
    with pytest.raises(VerificationError):
        verify_record(detail, other_vkey)


def test_a_signed_request_replayed_to_another_worker_is_refused(env: Env) -> None:
    """Two worker processes share the database: a nonce used on one is refused on the other."""
    from api.app import create_app

    target = f"/v1/agencies/{env.x}/report"
    headers = env.headers("X", "GET", target)
    assert env.client.get(target, headers=headers).status_code == 200
    other = create_app(env.services.settings, env.world.ledger)  # a second worker's app
    with TestClient(other) as second:
        replayed = second.get(target, headers=headers)
        assert replayed.status_code == 401
        assert "replay" in replayed.json()["detail"]
        # A login challenge, once used on one worker, is refused on the other as well.
        cred = env.residents["A"]
        challenge = env.client.post("/v1/auth/challenge").json()
        body = {"certificate": cred.certificate, "challenge": challenge["challenge"],
                "signature": base64.b64encode(
                    sign_login(cred.key, challenge["message"].encode())).decode()}
        assert env.client.post("/v1/auth/session", json=body).status_code == 200
        assert second.post("/v1/auth/session", json=body).status_code == 401


def test_demo_settings_without_a_database_url_serve_signed_requests(tmp_path: Path) -> None:
    """In demo mode the database URL is derived from KIROKU_HOME; every store must follow it."""
    from api.app import create_app
    from api.request_signing import sign_request
    from ledger.db import upgrade
    from tests.ledger.fixtures import make_world

    url = f"sqlite:///{tmp_path / 'kiroku.sqlite3'}"
    upgrade(url)
    world = make_world(url, tmp_path)
    settings = ApiSettings(home=tmp_path, demo=True, background=False)
    assert settings.database_url is None
    with TestClient(create_app(settings, world.ledger)) as client:
        target = f"/v1/agencies/{world.provider}/report"
        header = sign_request(world.keys[world.provider], f"agency:{world.provider}", "GET",
                              target)
        assert client.get(target, headers={"Authorization": header}).status_code == 200
    world.ledger.close()
