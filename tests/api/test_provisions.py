"""Agencies append statements: receipts, idempotency, every refusal as its own problem type."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from kiroku.client import verify_record
from ledger.keys import SigningKey
from ledger.signing import sign_statement
from tests.api.conftest import Env
from verifier.checkpoint import open_checkpoint
from verifier.merkle import verify_inclusion
from verifier.note import NoteVerifier
from verifier.proofs import InclusionProof

PROBLEM = "application/problem+json"


def _problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["type"] == f"urn:kiroku:problem:{code}"
    assert body["status"] == status and body["code"] == code and body["detail"]
    return body


def test_append_returns_receipt_and_same_receipt_again(env: Env) -> None:
    statement = env.world.statement()
    first = env.client.post("/v1/provisions", json=statement)
    assert first.status_code == 201
    receipt = first.json()
    assert receipt["entry"]["index"] == receipt["index"]
    assert receipt["entry"]["agency"] == statement["statement"]["agency"]
    assert "subject" not in json.dumps(receipt["entry"])  # the leaf carries no payload
    again = env.client.post("/v1/provisions", json=statement)
    assert again.status_code == 201
    assert {k: again.json()[k] for k in ("id", "index", "leaf_hash", "leaf")} == {
        k: receipt[k] for k in ("id", "index", "leaf_hash", "leaf")}
    assert env.world.ledger.tree_size() == receipt["index"] + 1


def test_wait_returns_proof_against_signed_checkpoint(env: Env) -> None:
    env.services.housekeeper.start()
    try:
        receipt = env.client.post("/v1/provisions?wait=true", json=env.world.statement()).json()
    finally:
        env.services.housekeeper.stop()
    checkpoint = open_checkpoint(receipt["checkpoint"],
                                 NoteVerifier.from_vkey(env.world.ledger.vkey))
    proof = InclusionProof.from_json(json.dumps(receipt["inclusion"]))
    assert proof.leaf_index == receipt["index"] and proof.tree_size == checkpoint.size
    verify_inclusion(proof.leaf_hash, proof.leaf_index, checkpoint.size, proof.proof,
                     checkpoint.root)


def test_receipt_url_pending_then_available_to_submitter_only(env: Env) -> None:
    receipt = env.client.post("/v1/provisions", json=env.world.statement()).json()
    url = receipt["receipt_url"]
    pending = env.get("X", url)
    _problem(pending, 404, "proof-pending")
    assert pending.headers["retry-after"]
    env.settle()
    ready = env.get("X", url)
    assert ready.status_code == 200 and ready.json()["inclusion"]["leaf_index"] == receipt["index"]
    assert env.get("auditor", url).status_code == 200
    _problem(env.get("Y", url), 404, "not-found")  # another agency: as if it did not exist
    _problem(env.get("anon", url), 401, "unauthenticated")


def test_conflicting_statement_under_used_request_id(env: Env) -> None:
    first = env.world.statement()
    env.client.post("/v1/provisions", json=first)
    payload = dict(first["payload"], operator="someone-else")
    other = sign_statement(payload, kind="provision", agency=env.x, key=env.world.keys[env.x])
    _problem(env.client.post("/v1/provisions", json=other), 409, "duplicate-conflict")


def test_bad_signature(env: Env) -> None:
    statement = env.world.statement()
    forged = env.world.statement()
    statement["signature"] = forged["signature"]
    _problem(env.client.post("/v1/provisions", json=statement), 422, "bad-signature")


def test_revoked_key(env: Env) -> None:
    key = env.world.keys[env.x]
    env.world.ledger.revoke_agency_key(env.x, key.key_id,
                                       revoked_at=datetime.now(UTC) - timedelta(days=3))
    _problem(env.client.post("/v1/provisions", json=env.world.statement()), 422, "key-revoked")


def test_unknown_key(env: Env) -> None:
    statement = env.world.statement(key=SigningKey.generate())
    _problem(env.client.post("/v1/provisions", json=statement), 422, "unknown-key")


def test_not_allowed_by_legal_basis(env: Env) -> None:
    statement = env.world.statement(items=["no-such-item"])
    body = _problem(env.client.post("/v1/provisions", json=statement), 403, "items-not-allowed")
    assert "no-such-item" not in body.get("instance", "")


def test_submitter_not_party(env: Env) -> None:
    statement = env.world.statement(agency=env.world.stranger)
    _problem(env.client.post("/v1/provisions", json=statement), 403, "submitter-not-party")


def test_malformed_json_and_shapes(env: Env) -> None:
    _problem(env.client.post("/v1/provisions", content=b"{not json"), 400, "malformed-json")
    _problem(env.client.post("/v1/provisions", content=b""), 400, "malformed-json")
    _problem(env.client.post("/v1/provisions", json=[1]), 400, "malformed-json")
    _problem(env.client.post("/v1/provisions", json={"x": 1}), 422, "malformed-statement")
    _problem(env.client.post("/v1/provisions", json=5), 422, "malformed-statement")
    _problem(env.client.post("/v1/provisions/batch", json={"x": 1}), 400, "malformed-json")


def test_body_too_large(env: Env) -> None:
    big = b'{"pad": "' + b"x" * (70 * 1024) + b'"}'
    _problem(env.client.post("/v1/provisions", content=big), 413, "body-too-large")

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(80):
            yield b"x" * 1024

    _problem(env.client.post("/v1/provisions", content=chunks()), 413, "body-too-large")


def test_batch_all_or_nothing(env: Env) -> None:
    size = env.world.ledger.tree_size()
    good = [env.world.statement() for _ in range(3)]
    bad = env.world.statement()
    bad["signature"] = good[0]["signature"]
    body = _problem(env.client.post("/v1/provisions/batch", json=[*good, bad]), 422,
                    "batch-rejected")
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(3, "bad-signature")]
    assert env.world.ledger.tree_size() == size
    accepted = env.client.post("/v1/provisions/batch", json=good)
    assert accepted.status_code == 201
    result = accepted.json()
    assert result["count"] == 3 and [r["index"] for r in result["receipts"]] == [
        size, size + 1, size + 2]
    assert result["tree_size"] == size + 3 and result["checkpoint"].splitlines()[1] == str(size + 3)
    # Per-entry proofs against the batch's checkpoint are public.
    proof = env.client.get(f"/v1/log/proof/inclusion?index={size + 1}&size={size + 3}").json()
    assert proof["leaf_hash"] == result["receipts"][1]["leaf_hash"]


def test_batch_too_large(env: Env) -> None:
    _problem(env.client.post("/v1/provisions/batch", json=[{}] * 10_001), 413, "batch-too-large")


def test_record_detail_verifies_offline(env: Env) -> None:
    target = "/v1/me/provisions"
    item = env.get("A", target).json()["items"][0]
    detail = env.get("A", f"{target}/{item['id']}").json()
    entry = verify_record(detail, env.world.ledger.vkey)
    assert entry["index"] == item["index"]
