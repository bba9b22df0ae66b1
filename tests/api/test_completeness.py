"""GET /v1/me/completeness: only the resident's own proof, checked the way a resident would."""

from __future__ import annotations

import json

import pytest

from kiroku.client import verify_completeness
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
