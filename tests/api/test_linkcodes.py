"""Link codes over HTTP, on SQLite and PostgreSQL: version-2 statements are appended, each wrong
code gets its own problem type (and the problem names no resident and no other agency's code),
a resident sees their version-1 and version-2 records in one list and on the pages, and what
an agency reads (receipts, its report, its page) shows its own code only."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.encoding import format_time
from projections.anomalies import resident_ref
from tests.api.conftest import SUBJECT_A, SUBJECT_B, Env, _build
from tests.api.test_web_pages import login
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database

SUBJECT_C = "subj-CCCCCCCCCCCCCCCCCCCC"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres",
                 marks=pytest.mark.skipif(not postgres_available(), reason=PG_SKIP_REASON)),
]


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    """The API world (A has 3 visible version-1 records, B 2), from here on signing version 2."""
    database = sqlite_database if request.param == "sqlite" else postgres_database
    with database() as url:
        for built in _build(url, Path(tempfile.mkdtemp(prefix="kiroku-api-lc-"))):
            built.world.version = 2
            yield built


def _codes(env: Env, subject: str) -> dict[str, str]:
    return {agency: env.world.code(agency, subject) for agency in (env.x, env.y)}


def _problem(response: Any, code: str) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:kiroku:problem:{code}"
    return body


def test_version_2_statements_are_appended_and_wrong_codes_refused(env: Env) -> None:
    codes = _codes(env, SUBJECT_A)
    ok = env.client.post("/v1/provisions", json=env.world.statement(subject=SUBJECT_A))
    assert ok.status_code == 201, ok.text
    assert ok.json()["entry"]["v"] == 2
    # The receipt holds the leaf only: neither the resident nor any code.
    assert SUBJECT_A not in ok.text and not any(c in ok.text for c in codes.values())

    size = env.world.ledger.tree_size()
    swapped = env.world.statement(subject=SUBJECT_A, requester_code=codes[env.x])
    body = _problem(env.client.post("/v1/provisions", json=swapped),
                    "link-code-of-another-agency")
    text = str(body)
    assert SUBJECT_A not in text and codes[env.x] not in text and env.x not in text
    _problem(env.client.post("/v1/provisions", json=env.world.statement(
        subject=SUBJECT_A, provider_code=env.world.code(env.x, SUBJECT_B))),
        "link-codes-of-different-residents")
    _problem(env.client.post("/v1/provisions", json=env.world.statement(
        subject=SUBJECT_A, provider_code="A" * 26)), "unknown-link-code")
    batch = env.client.post("/v1/provisions/batch",
                            json=[env.world.statement(subject=SUBJECT_A), swapped])
    body = _problem(batch, "batch-rejected")
    assert [e["type"] for e in body["errors"]] == ["urn:kiroku:problem:link-code-of-another-agency"]
    assert env.world.ledger.tree_size() == size  # nothing refused was appended


def test_a_resident_sees_version_1_and_2_records_together(env: Env) -> None:
    receipt = env.client.post("/v1/provisions", json=env.world.statement(subject=SUBJECT_A))
    assert receipt.status_code == 201, receipt.text
    new_id = receipt.json()["id"]
    env.settle()

    listed = env.get("A", "/v1/me/provisions").json()["items"]
    assert len(listed) == 4 and new_id in {r["id"] for r in listed}  # 3 version 1, 1 version 2
    detail = env.get("A", f"/v1/me/provisions/{new_id}")
    assert detail.status_code == 200, detail.text
    assert detail.json()["payload"]["requester_code"] == env.world.code(env.y, SUBJECT_A)
    assert env.get("B", f"/v1/me/provisions/{new_id}").status_code == 404
    proof = env.get("A", f"/v1/me/provisions/{new_id}/proof")
    assert proof.status_code == 200, proof.text

    page = login(env, "A").get("/me")
    assert page.status_code == 200 and "4" in page.text
    record = login(env, "A").get(f"/me/records/{new_id}")
    assert record.status_code == 200, record.text
    assert login(env, "B").get(f"/me/records/{new_id}").status_code == 404


def test_an_agency_reads_only_its_own_code(env: Env) -> None:
    # A resident with version-2 records only (version-1 ones name the pseudonym the agency sent).
    start = datetime(2026, 3, 4, 1, 0, tzinfo=UTC)  # a Wednesday, 10:00 JST
    burst = [env.world.statement(subject=SUBJECT_C,
                                 requested_at=format_time(start + timedelta(minutes=i)),
                                 provided_at=format_time(start + timedelta(minutes=i, seconds=9)))
             for i in range(5)]
    assert env.client.post("/v1/provisions/batch", json=burst).status_code == 201
    env.settle()
    codes = _codes(env, SUBJECT_C)

    # The requester Y's report flags the burst under Y's own code.
    report = env.get("Y", f"/v1/agencies/{env.y}/report")
    assert report.status_code == 200, report.text
    assert [b["resident"] for b in report.json()["anomalies"]["bursts"]] == [
        resident_ref(codes[env.y])]
    page = login(env, "Y").get("/agency")
    assert page.status_code == 200
    for seen in (report.text, page.text, login(env, "Y").get("/agency/csv/anomalies").text):
        assert SUBJECT_C not in seen and codes[env.x] not in seen
    # The provider X's report and page name neither the resident nor Y's code.
    for seen in (env.get("X", f"/v1/agencies/{env.x}/report").text,
                 login(env, "X").get("/agency").text):
        assert SUBJECT_C not in seen and codes[env.y] not in seen
