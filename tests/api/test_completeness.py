"""GET /v1/me/completeness: only the resident's own proof, checked the way a resident would."""

from __future__ import annotations

import json

import pytest

from kiroku.client import verify_completeness
from ledger.flags import KIND, flag_payload
from ledger.signing import sign_statement
from tests.api.conftest import SUBJECT_A, SUBJECT_B, Env
from verifier.errors import VerificationError


def _details(env: Env, who: str) -> list[dict]:
    records = env.get(who, "/v1/me/provisions").json()["items"]
    return [env.get(who, f"/v1/me/provisions/{r['id']}").json() for r in records]


@pytest.mark.parametrize("fixture", ["env", "pg_env"])
def test_resident_proof_covers_exactly_the_records_shown(fixture: str,
                                                         request: pytest.FixtureRequest) -> None:
    env: Env = request.getfixturevalue(fixture)
    response = env.get("A", "/v1/me/completeness")
    assert response.status_code == 200, response.text
    proof = response.json()
    result = verify_completeness(proof, env.world.ledger.vkey, _details(env, "A"))
    assert len(result.records) == 3  # A's non-disclosed fourth record is not listed
    text = json.dumps(proof)
    assert SUBJECT_A not in text and SUBJECT_B not in text


def test_a_proof_is_refused_against_another_residents_records(env: Env) -> None:
    proof = env.get("A", "/v1/me/completeness").json()
    with pytest.raises(VerificationError, match="another subject"):
        verify_completeness(proof, env.world.ledger.vkey, _details(env, "B"))


def test_records_appended_after_the_last_index_are_not_required(env: Env) -> None:
    proof = env.get("B", "/v1/me/completeness").json()
    posted = env.client.post("/v1/provisions", json=env.world.statement(subject=SUBJECT_B))
    assert posted.status_code == 201
    env.services.housekeeper.project(force=True)
    result = verify_completeness(proof, env.world.ledger.vkey, _details(env, "B"))
    assert len(result.records) == 2


@pytest.mark.parametrize("fixture", ["env", "pg_env"])
def test_a_record_flagged_later_leaves_the_proof_and_a_lift_brings_it_back(
        fixture: str, request: pytest.FixtureRequest) -> None:
    env: Env = request.getfixturevalue(fixture)
    shown = env.get("A", "/v1/me/provisions").json()["items"]
    record = shown[0]["id"]
    for set_, reason, expected in ((True, "dv_support_measure", len(shown) - 1),
                                   (False, "grounds_ceased", len(shown))):
        payload = flag_payload(record, "non_disclosure", set=set_, reason=reason)
        statement = sign_statement(payload, kind=KIND, agency=env.world.provider,
                                   key=env.world.keys[env.world.provider])
        assert env.client.post("/v1/flags", json=statement).status_code == 201
        env.settle()
        env.world.ledger.checkpoint()
        proof = env.get("A", "/v1/me/completeness").json()
        details = _details(env, "A")
        assert len(details) == expected
        result = verify_completeness(proof, env.world.ledger.vkey, details)
        assert len(result.records) == expected
