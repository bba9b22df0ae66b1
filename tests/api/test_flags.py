"""Flags over HTTP: agencies set and lift them (POST /v1/flags), residents stop seeing withheld
records and see them again when a flag is lifted or its disclose_after passes, auditors read
the history (GET /v1/log/provisions/{id}/flags and the agency report). SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.flags import KIND, flag_payload
from ledger.keys import SigningKey
from ledger.signing import sign_statement
from tests.api.conftest import SUBJECT_A, Env
from tests.ledger.fixtures import REGISTERED

BACKENDS = ["env", "pg_env"]


@pytest.fixture(params=BACKENDS)
def api(request: pytest.FixtureRequest) -> Env:
    env: Env = request.getfixturevalue(request.param)
    return env


def _flag(env: Env, agency: str, provision: str, *, set: bool = True,
          reason: str = "dv_support_measure", disclose_after: datetime | None = None,
          key: SigningKey | None = None, flag: str = "non_disclosure") -> Any:
    payload = flag_payload(provision, flag, set=set, reason=reason,
                           disclose_after=disclose_after)
    statement = sign_statement(payload, kind=KIND, agency=agency,
                               key=key or env.world.keys[agency])
    return env.client.post("/v1/flags", json=statement)


def _mine(env: Env) -> set[str]:
    env.settle()
    return {r["id"] for r in env.get("A", "/v1/me/provisions").json()["items"]}


def test_set_by_provider_lifted_by_requester(api: Env) -> None:
    env = api
    record = next(iter(_mine(env)))
    answer = _flag(env, env.x, record)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["provision"] == record and body["entry"]["kind"] == KIND
    assert record not in _mine(env)
    assert env.get("A", f"/v1/me/provisions/{record}").status_code == 404
    history = env.get("auditor", f"/v1/log/provisions/{record}/flags").json()
    assert history["withheld"] is True and history["in_force"] == {"non_disclosure": None}
    lifted = _flag(env, env.y, record, set=False, reason="grounds_ceased")
    assert lifted.status_code == 201, lifted.text
    assert record in _mine(env)
    changes = env.get("auditor", f"/v1/log/provisions/{record}/flags").json()["changes"]
    assert [(c["agency"], c["role"], c["set"]) for c in changes] == [
        (env.x, "provider", True), (env.y, "requester", False)]
    report = env.get("X", f"/v1/agencies/{env.x}/report").json()
    assert [(f["provision"], f["set"]) for f in report["flags"]][-2:] == [
        (record, True), (record, False)]
    assert report["withheld"] == 1  # the env's record appended with non_disclosure: true


def test_authority_and_refusals(api: Env) -> None:
    env = api
    ledger = env.world.ledger
    ledger.register_agency("PPC", name_ja="個人情報保護委員会", name_en="PPC", kind="authority",
                           roles=[], registered_at=REGISTERED)
    key = SigningKey.generate()
    ledger.add_agency_key("PPC", key.public_bytes, valid_from=REGISTERED)
    record = next(iter(_mine(env)))
    stranger = _flag(env, env.world.stranger, record)
    assert stranger.status_code == 403
    assert stranger.json()["type"] == "urn:kiroku:problem:flag-submitter-not-allowed"
    not_set = _flag(env, env.x, record, set=False, reason="grounds_ceased")
    assert (not_set.status_code, not_set.json()["code"]) == (409, "flag-not-set")
    unknown = _flag(env, env.x, "5f0c9e1e-2d7b-5c43-9a51-8d1f6f7d1b2a")
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown-provision")
    bad_reason = _flag(env, env.x, record, reason="because")
    assert (bad_reason.status_code, bad_reason.json()["code"]) == (422, "unknown-reason")
    assert record in _mine(env)
    by_authority = _flag(env, "PPC", record, key=key, flag="self_information_block",
                         reason="life_or_body")
    assert by_authority.status_code == 201, by_authority.text
    assert record not in _mine(env)
    assert env.get("auditor", f"/v1/log/provisions/{record}/flags").json()["changes"][-1][
        "role"] == "authority"
    # A flag statement is not a provision.
    statement = sign_statement(flag_payload(record, "non_disclosure", set=True,
                                            reason="court_order"),
                               kind=KIND, agency=env.x, key=env.world.keys[env.x])
    assert env.client.post("/v1/provisions", json=statement).status_code == 422


def test_delayed_disclosure_appears_without_any_further_action(api: Env) -> None:
    env = api
    later = next(iter(_mine(env)))
    soon = min(_mine(env) - {later})
    far = datetime.now(UTC) + timedelta(days=90)
    assert _flag(env, env.x, later, reason="criminal_investigation",
                 disclose_after=far).status_code == 201
    assert _flag(env, env.x, soon, reason="criminal_investigation",
                 disclose_after=datetime.now(UTC) + timedelta(seconds=1.5)).status_code == 201
    assert later not in _mine(env) and soon not in _mine(env)
    deadline = time.monotonic() + 6
    while soon not in _mine(env) and time.monotonic() < deadline:
        time.sleep(0.25)
    shown = _mine(env)
    assert soon in shown and later not in shown
    assert env.get("A", f"/v1/me/provisions/{soon}").status_code == 200
    history = env.get("auditor", f"/v1/log/provisions/{later}/flags").json()
    assert history["withheld"] is True
    assert env.get("auditor", f"/v1/log/provisions/{soon}/flags").json()["withheld"] is False


def test_flag_history_route_is_for_auditors_only(api: Env) -> None:
    env = api
    record = next(iter(_mine(env)))
    for who, status in (("A", 403), ("X", 403), ("anon", 401), ("auditor", 200)):
        assert env.get(who, f"/v1/log/provisions/{record}/flags").status_code == status
    missing = env.get("auditor", "/v1/log/provisions/5f0c9e1e-2d7b-5c43-9a51-8d1f6f7d1b2a/flags")
    assert missing.status_code == 404
    assert SUBJECT_A not in env.get("auditor", f"/v1/log/provisions/{record}/flags").text
