"""Notices over HTTP: the right residents and no others, validity, unread first and read marks,
agencies' counts, a proxy reading for its principal, and nothing of a resident in the export."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ledger.encoding import format_time
from ledger.notices import KIND
from ledger.signing import sign_statement
from tests.api.conftest import SUBJECT_A, SUBJECT_B, Env
from tests.api.test_proxies import name_proxy, person


def notice_payload(notice_id: str, target: dict[str, Any], *, start: timedelta = timedelta(0),
                   days: int = 30) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    return {"notice_id": notice_id, "category": "vaccination",
            "title": {"ja": f"お知らせ {notice_id}", "en": f"Notice {notice_id}"},
            "body": {"ja": "本文"}, "valid_from": format_time(now - timedelta(days=1) + start),
            "valid_until": format_time(now + timedelta(days=days) + start), "target": target}


def issue(env: Env, payload: dict[str, Any], agency: str | None = None) -> Any:
    agency = agency or env.x
    statement = sign_statement(payload, kind=KIND, agency=agency, key=env.world.keys[agency])
    return env.client.post("/v1/notices", json=statement)


def put_attributes(env: Env, who: str, code: str, agency: str, body: dict[str, Any]) -> Any:
    target = f"/v1/agencies/{agency}/residents/{code}/attributes"
    raw = json.dumps(body).encode()
    return env.client.put(target, content=raw, headers={
        **env.headers(who, "PUT", target, raw), "Content-Type": "application/json"})


def birth(years: int) -> str:
    today = date.today()
    return today.replace(year=today.year - years, day=min(today.day, 28)).isoformat()


def titles(env: Env, who: str) -> list[str]:
    return [n["notice_id"] for n in env.get(who, "/v1/me/notices").json()["items"]]


def _scenario(env: Env) -> dict[str, str]:
    x = env.x
    a_code, b_code = env.world.code(x, SUBJECT_A), env.world.code(x, SUBJECT_B)
    assert put_attributes(env, "X", a_code, x, {"birth_date": birth(3), "district": "131121-03",
                                                "household_type": "with_children"}
                          ).status_code == 200
    assert put_attributes(env, "X", b_code, x, {"birth_date": birth(40),
                                                "district": "131121-03"}).status_code == 200
    ids = {}
    for name, target, start in (
            ("individual-a", {"type": "individual", "code": a_code}, timedelta(0)),
            ("group-young", {"type": "group", "criteria": {"age_band": "0-5",
                                                           "district": "131121-03"}},
             timedelta(0)),
            ("group-district", {"type": "group", "criteria": {"district": "131121-03"}},
             timedelta(0)),
            ("group-other-district", {"type": "group", "criteria": {"district": "131121-04"}},
             timedelta(0)),
            ("future", {"type": "group", "criteria": {"district": "131121-03"}},
             timedelta(days=5)),
            ("expired", {"type": "individual", "code": a_code}, timedelta(days=-40))):
        response = issue(env, notice_payload(name, target, start=start))
        assert response.status_code == 201, response.text
        ids[name] = response.json()["id"]
    env.settle()
    return ids


def _residents_and_counts(env: Env) -> None:
    ids = _scenario(env)
    # Newest first among the unread: exactly what applies to each, within validity.
    assert titles(env, "A") == ["group-district", "group-young", "individual-a"]
    assert titles(env, "B") == ["group-district"]
    assert env.get("B", f"/v1/me/notices/{ids['individual-a']}").status_code == 404
    assert env.get("A", f"/v1/me/notices/{ids['expired']}").status_code == 404
    assert env.get("A", f"/v1/me/notices/{ids['future']}").status_code == 404
    # Read marks: the read one goes last; marking twice keeps the first time.
    target = f"/v1/me/notices/{ids['group-young']}/read"
    first = env.client.post(target, headers=env.headers("A", "POST", target))
    assert first.status_code == 200 and first.json()["read_at"] is not None
    again = env.client.post(target, headers=env.headers("A", "POST", target))
    assert again.json()["read_at"] == first.json()["read_at"]
    listed = env.get("A", "/v1/me/notices").json()
    assert [n["notice_id"] for n in listed["items"]] == ["group-district", "individual-a",
                                                         "group-young"]
    assert listed["unread"] == 2
    other = f"/v1/me/notices/{ids['individual-a']}/read"
    assert env.client.post(other, headers=env.headers("B", "POST", other)).status_code == 404
    # The agency: counts per notice, never who.
    own = env.get("X", f"/v1/agencies/{env.x}/notices")
    assert own.status_code == 200
    delivery = {n["notice_id"]: n["delivery"] for n in own.json()["notices"]}
    assert delivery["group-young"] == {"applies_to": 1, "read": 1}
    assert delivery["group-district"] == {"applies_to": 2, "read": 0}
    assert delivery["group-other-district"] == {"applies_to": 0, "read": 0}
    assert delivery["individual-a"] == {"applies_to": 1, "read": 0}
    assert SUBJECT_A not in own.text and env.world.code(env.x, SUBJECT_A) not in own.text
    assert env.get("Y", f"/v1/agencies/{env.x}/notices").status_code == 403
    assert env.get("auditor", f"/v1/agencies/{env.x}/notices").json() == own.json()
    # A resident's attributes change: the group follows, the log does not change.
    put_attributes(env, "X", env.world.code(env.x, SUBJECT_B), env.x,
                   {"birth_date": birth(40), "district": "131121-04"})
    assert titles(env, "B") == ["group-other-district"]
    # The notice entries of the export (leaf, payload, salt) name no resident and hold no
    # attribute value (this fixture's provisions are version 1, which name the pseudonym).
    lines = [line for line in env.get("auditor", "/v1/log/entries").text.splitlines()
             if json.loads(base64.b64decode(json.loads(line)["leaf"]))["kind"] == KIND]
    assert len(lines) == 6
    for secret in (SUBJECT_A, SUBJECT_B, birth(3), birth(40), "with_children"):
        assert not any(secret in line for line in lines)


def test_notices_reach_exactly_the_right_residents(env: Env) -> None:
    _residents_and_counts(env)


def test_notices_on_postgresql(pg_env: Env) -> None:
    _residents_and_counts(pg_env)


def test_refusals_change_nothing(env: Env) -> None:
    size = env.get("anon", "/v1/log").json()
    y_code = env.world.code(env.y, SUBJECT_A)
    cases = [
        (notice_payload("n1", {"type": "individual", "code": y_code}),
         422, "link-code-of-another-agency"),
        (notice_payload("n2", {"type": "individual", "code": "A" * 26}), 422,
         "unknown-link-code"),
        (notice_payload("n3", {"type": "individual", "code": SUBJECT_A}), 422,
         "malformed-statement"),
        ({**notice_payload("n4", {"type": "group", "criteria": {"district": "131121-03"}}),
          "category": "lottery"}, 422, "invalid-notice"),
        (notice_payload("n5", {"type": "group", "criteria": {"age_band": "9-3"}}), 422,
         "invalid-notice"),
        ({**notice_payload("n6", {"type": "group", "criteria": {"district": "131121-03"}}),
          "valid_until": "2020-01-01T00:00:00Z"}, 422, "invalid-notice"),
    ]
    for payload, status, code in cases:
        response = issue(env, payload)
        assert response.status_code == status, response.text
        assert response.json()["type"] == f"urn:kiroku:problem:{code}"
        assert response.headers["content-type"].startswith("application/problem+json")
    # Attributes: another agency's code, an unknown code, a bad value, another agency's route.
    assert put_attributes(env, "X", y_code, env.x, {"district": "131121-03"}).json()["type"] \
        == "urn:kiroku:problem:link-code-of-another-agency"
    assert put_attributes(env, "X", "A" * 26, env.x, {}).json()["type"] \
        == "urn:kiroku:problem:unknown-link-code"
    x_code = env.world.code(env.x, SUBJECT_A)
    assert put_attributes(env, "X", x_code, env.x, {"birth_date": "03/04/2022"}
                          ).status_code == 400
    assert put_attributes(env, "Y", x_code, env.x, {}).status_code == 403
    assert put_attributes(env, "auditor", x_code, env.x, {}).status_code == 403
    # A notice id used again for another statement; the same statement again is a replay.
    payload = notice_payload("dup", {"type": "group", "criteria": {"district": "131121-03"}})
    statement = sign_statement(payload, kind=KIND, agency=env.x, key=env.world.keys[env.x])
    first = env.client.post("/v1/notices", json=statement)
    assert env.client.post("/v1/notices", json=statement).json()["index"] == first.json()["index"]
    conflict = issue(env, {**payload, "body": {"ja": "別の本文"}})
    assert conflict.status_code == 409
    assert env.get("anon", "/v1/log").json()["tree_size"] == size["tree_size"] + 1


def test_a_proxy_reads_and_marks_the_principals_notices(env: Env) -> None:
    a_code = env.world.code(env.x, SUBJECT_A)
    ident = issue(env, notice_payload("for-a", {"type": "individual", "code": a_code})
                  ).json()["id"]
    env.settle()
    handle = name_proxy(env, "A", person(env, "P"))["id"]
    page = env.get("P", f"/v1/proxy/principals/{handle}/notices").json()
    assert [n["id"] for n in page["items"]] == [ident]
    target = f"/v1/proxy/principals/{handle}/notices/{ident}/read"
    assert env.client.post(target, headers=env.headers("P", "POST", target)).status_code == 200
    assert env.get("A", "/v1/me/notices").json()["unread"] == 0  # the mark is the principal's
    assert env.get("P", "/v1/me/notices").status_code == 403  # no notices of their own
    assert env.get("B", f"/v1/proxy/principals/{handle}/notices").status_code == 404


def test_read_marks_survive_a_rebuild_and_digests_match(env: Env) -> None:
    from projections.runner import runner_for

    ids = _scenario(env)
    target = f"/v1/me/notices/{ids['individual-a']}/read"
    env.client.post(target, headers=env.headers("A", "POST", target))
    result = runner_for(env.world.ledger).rebuild()
    assert result.identical, result.mismatched()
    assert env.get("A", f"/v1/me/notices/{ids['individual-a']}").json()["read_at"] is not None
