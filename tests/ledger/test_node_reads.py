"""Merkle nodes read back from the database: on SQLite as one aggregated row, elsewhere a row per
node; both give every stored node byte for byte, and a node that is not stored is an error."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from ledger.storage import LogRecorder
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.ledger.fixtures import World, make_world


@pytest.fixture(params=["sqlite", pytest.param(
    "postgres", marks=pytest.mark.skipif(not postgres_available(), reason=PG_SKIP_REASON))])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    database = sqlite_database if request.param == "sqlite" else postgres_database
    with database() as url:
        made = make_world(url)
        made.ledger.append_batch([made.statement(request_id=f"n-{i}") for i in range(300)])
        try:
            yield made
        finally:
            made.ledger.close()


def _stored(world: World) -> dict[tuple[int, int], bytes]:
    with world.ledger.log.transaction(commit=False) as session:
        connection = session.connection()
        leaves = connection.exec_driver_sql("SELECT idx, leaf_hash FROM kiroku_log_entry").all()
        inner = connection.exec_driver_sql("SELECT level, idx, hash FROM kiroku_merkle_node").all()
    return {**{(0, int(i)): bytes(h) for i, h in leaves},
            **{(int(lv), int(i)): bytes(h) for lv, i, h in inner}}


def test_every_stored_node_reads_back_exactly(world: World) -> None:
    stored = _stored(world)
    keys = list(stored)
    rng = random.Random(5)
    for size in (1, 2, 35, 200, 250, len(keys)):  # several statements, and the chunked path
        sample = rng.sample(keys, min(size, len(keys)))
        assert world.ledger.log.read_nodes(sample) == {key: stored[key] for key in sample}
    assert world.ledger.log.read_nodes([]) == {}


def test_a_node_not_stored_is_an_error(world: World) -> None:
    stored = _stored(world)
    absent = (0, world.ledger.tree_size() + 5)
    with pytest.raises(LookupError, match="missing"):
        world.ledger.log.read_nodes([next(iter(stored)), absent])
    with world.ledger.log.transaction(commit=False) as session, pytest.raises(LookupError):
        LogRecorder._read_nodes(session, [(3, 10**9)])
