"""Fixtures: a migrated database (SQLite, and PostgreSQL when reachable) holding a small world."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.ledger.fixtures import World, make_world


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "postgres":
        if not postgres_available():
            pytest.skip(PG_SKIP_REASON)
        with postgres_database() as db:
            yield db
    else:
        with sqlite_database() as db:
            yield db


@pytest.fixture
def world(url: str) -> Iterator[World]:
    world = make_world(url)
    yield world
    from projections.runner import _runners

    runner = _runners.pop(world.ledger, None)
    if runner is not None:
        runner.close()
    world.ledger.close()
