"""Public log routes, auditor-only entries, signed-request checks, health and metrics."""

from __future__ import annotations

import json

from api.request_signing import sign_request
from ledger.keys import SigningKey
from tests.api.conftest import Env


def test_checkpoint_is_c2sp_text(env: Env) -> None:
    response = env.client.get("/v1/log/checkpoint")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == env.world.ledger.latest_checkpoint().note


def test_checkpoint_history_and_info(env: Env) -> None:
    history = env.client.get("/v1/log/checkpoints?limit=5").json()["checkpoints"]
    assert history and history[0]["tree_size"] == env.world.ledger.tree_size()
    info = env.client.get("/v1/log").json()
    assert info["vkey"] == env.world.ledger.vkey and info["origin"] == "test.kiroku/log"


def test_proofs_match_the_ledger(env: Env) -> None:
    ledger = env.world.ledger
    size = ledger.tree_size()
    assert env.client.get(f"/v1/log/proof/inclusion?index=2&size={size}").json() == \
        ledger.prove_inclusion(2, size)
    assert env.client.get(f"/v1/log/proof/consistency?old=3&new={size}").json() == \
        ledger.prove_consistency(3, size)
    for bad in ("index=-1", f"index={size}", f"index=0&size={size + 1}", "index=x"):
        response = env.client.get(f"/v1/log/proof/inclusion?{bad}")
        assert response.status_code == 400, bad
        assert response.headers["content-type"].startswith("application/problem+json")
    assert env.client.get("/v1/log/proof/consistency?old=5&new=2").status_code == 400


def test_entries_stream_the_export_format_for_auditors(env: Env) -> None:
    ledger = env.world.ledger
    response = env.get("auditor", "/v1/log/entries?start=1&end=4")
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines == list(ledger.export(1, 4))
    everything = env.get("auditor", "/v1/log/entries")
    assert len(everything.text.splitlines()) == ledger.tree_size()
    assert env.get("auditor", "/v1/log/entries?start=5&end=2").status_code == 400


def test_signed_request_replay_skew_and_wrong_key(env: Env) -> None:
    target = "/v1/log/entries?start=0&end=1"
    header = env.headers("auditor", "GET", target)
    assert env.client.get(target, headers=header).status_code == 200
    assert env.client.get(target, headers=header).status_code == 401  # replayed
    old = sign_request(env.auditor, "auditor:test-auditor", "GET", target, now=1_000_000)
    assert env.client.get(target, headers={"Authorization": old}).status_code == 401
    stranger = sign_request(SigningKey.generate(), "auditor:test-auditor", "GET", target)
    assert env.client.get(target, headers={"Authorization": stranger}).status_code == 401
    other_target = sign_request(env.auditor, "auditor:test-auditor", "GET", "/v1/log/entries")
    assert env.client.get(target, headers={"Authorization": other_target}).status_code == 401
    assert env.client.get(target, headers={"Authorization": "Kiroku-Signature x"}
                          ).status_code == 401
    assert env.client.get(target, headers={"Authorization": "Basic Zm9vOmJhcg=="}
                          ).status_code == 401


def test_agency_report_own_or_auditor(env: Env) -> None:
    own = env.get("X", f"/v1/agencies/{env.x}/report")
    assert own.status_code == 200 and own.json()["agency"]["code"] == env.x
    assert env.get("auditor", f"/v1/agencies/{env.y}/report").status_code == 200
    assert env.get("Y", f"/v1/agencies/{env.x}/report").status_code == 403
    assert env.get("auditor", "/v1/agencies/NOPE/report").status_code == 404


def test_healthz_and_metrics(env: Env) -> None:
    health = env.client.get("/healthz").json()
    assert health["status"] == "ok" and health["checkpoint_size"] == health["tree_size"]
    env.client.post("/v1/provisions", json={"statement": 1})
    metrics = env.client.get("/metrics").text
    for name in ("kiroku_appends_total", "kiroku_rejections_total", "kiroku_tree_size",
                 "kiroku_http_request_duration_seconds_bucket", "kiroku_projection_lag_entries"):
        assert name in metrics
    assert 'reason="malformed-statement"' in metrics


def test_healthz_fails_when_stored_data_no_longer_matches(env: Env) -> None:
    from sqlalchemy import update

    from ledger.schema import log_entry

    with env.world.ledger.log.transaction(commit=True) as session:
        session.execute(update(log_entry).where(log_entry.c.idx == 0)
                        .values(leaf_hash=b"\x00" * 32))
        from ledger.schema import merkle_node

        session.execute(merkle_node.delete())
    response = env.client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"


def test_framework_errors_are_problems(env: Env) -> None:
    for response, status in ((env.client.get("/nope"), 404), (env.client.put("/v1/log"), 405),
                             (env.client.get("/v1/me/provisions/not-a-uuid",
                                             headers=env.headers("A", "GET", "x")), 400)):
        assert response.status_code == status
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"].startswith("urn:kiroku:problem:")
