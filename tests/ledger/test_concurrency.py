"""Several writer processes at once leave one total order and one unbroken chain whose root
equals a fresh recomputation from the leaves (SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from ledger.application import Ledger
from ledger.config import Settings
from ledger.keys import SigningKey
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.ledger.fixtures import make_world
from tests.ledger.logcheck import assert_log_whole

BATCHES, BATCH_SIZE, SINGLES = 12, 25, 15


def _writer(settings: Settings, operator_pem: bytes, agency_pem: bytes, tag: str,
            start: multiprocessing.synchronize.Event, requester: str, provider: str,
            basis: str) -> None:
    from ledger.catalog import load_catalog
    from tests.ledger.fixtures import World

    ledger = Ledger(settings, SigningKey.from_pem(operator_pem))
    world = World(ledger, load_catalog().bases[basis], requester=requester, provider=provider)
    world.keys[provider] = SigningKey.from_pem(agency_pem)
    start.wait(30)
    for round_no in range(BATCHES):
        ledger.append_batch(
            [world.statement(request_id=f"{tag}-{round_no}-{i}") for i in range(BATCH_SIZE)])
        if round_no < SINGLES:
            ledger.append(world.statement(request_id=f"{tag}-single-{round_no}"))
    ledger.close()


def _run(database: Callable[[], AbstractContextManager[str]]) -> None:
    with database() as url:
        world = make_world(url)
        ledger = world.ledger
        before = ledger.tree_size()
        context = multiprocessing.get_context("spawn")
        start = context.Event()
        basis = world.basis.id
        workers = [
            context.Process(target=_writer, args=(
                ledger.settings, ledger.operator_key.to_pem(), world.keys[world.provider].to_pem(),
                tag, start, world.requester, world.provider, basis))
            for tag in ("a", "b")
        ]
        for worker in workers:
            worker.start()
        start.set()
        for worker in workers:
            worker.join(120)
            assert worker.exitcode == 0
        expected = before + 2 * (BATCHES * BATCH_SIZE + min(SINGLES, BATCHES))
        assert ledger.tree_size() == expected
        assert_log_whole(ledger.log)
        ledger.checkpoint()
        ledger.close()


def test_two_writer_processes_on_sqlite() -> None:
    _run(sqlite_database)


@pytest.mark.skipif(not postgres_available(), reason=PG_SKIP_REASON)
def test_two_writer_processes_on_postgres() -> None:
    _run(postgres_database)
