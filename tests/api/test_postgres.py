"""The service's storage paths on PostgreSQL: appends, receipts, login mapping, views, entries."""

from __future__ import annotations

import pytest

from kiroku.client import verify_record
from tests.api.conftest import Env

pytestmark = pytest.mark.postgres


def test_flow_on_postgres(pg_env: Env) -> None:
    env = pg_env
    statement = env.world.statement()
    receipt = env.client.post("/v1/provisions", json=statement).json()
    assert env.client.post("/v1/provisions", json=statement).json()["index"] == receipt["index"]
    batch = env.client.post("/v1/provisions/batch", json=[env.world.statement() for _ in range(5)])
    assert batch.status_code == 201 and batch.json()["count"] == 5
    env.settle()
    assert env.get("X", receipt["receipt_url"]).json()["inclusion"]["leaf_index"] == receipt["index"]
    page = env.get("A", "/v1/me/provisions").json()
    assert len(page["items"]) == 3
    detail = env.get("A", f"/v1/me/provisions/{page['items'][0]['id']}").json()
    verify_record(detail, env.world.ledger.vkey)
    assert env.get("B", f"/v1/me/provisions/{page['items'][0]['id']}").status_code == 404
    entries = env.get("auditor", "/v1/log/entries").text.splitlines()
    assert len(entries) == env.world.ledger.tree_size()
    assert env.client.get("/healthz").json()["status"] == "ok"
