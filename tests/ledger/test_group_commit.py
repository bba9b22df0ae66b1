"""Concurrent single appends are committed together, yet each is accepted or refused alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from ledger import errors
from ledger.group_commit import GroupCommit
from tests.dbutil import sqlite_database
from tests.ledger.fixtures import make_world


def test_waiting_callers_share_one_run_and_get_their_own_results() -> None:
    calls: list[list[int]] = []

    def run(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        time.sleep(0.02)  # a commit in progress: others queue up meanwhile
        return [item * 10 for item in items]

    group: GroupCommit[int] = GroupCommit(run)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(group.submit, range(64)))
    assert results == [i * 10 for i in range(64)]
    assert sorted(i for call in calls for i in call) == list(range(64))
    assert len(calls) < 64 and max(len(c) for c in calls) > 1


def test_a_failed_run_fails_only_its_own_group() -> None:
    first = threading.Event()

    def run(items: Sequence[str]) -> list[str]:
        if "boom" in items:
            first.set()
            raise RuntimeError("database went away")
        return list(items)

    group: GroupCommit[str] = GroupCommit(run)
    with pytest.raises(RuntimeError):
        group.submit("boom")
    assert group.submit("fine") == "fine"


def test_concurrent_appends_to_the_ledger() -> None:
    with sqlite_database() as url:
        world = make_world(url)
        good = [world.statement() for _ in range(60)]
        bad = world.statement(items=["戸籍関係情報"])
        before = world.ledger.tree_size()

        def submit(submission: dict) -> object:
            try:
                return world.ledger.append(submission)
            except errors.StatementRejected as exc:
                return exc

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(submit, [*good[:30], bad, *good[30:]]))
        refused = [r for r in results if isinstance(r, errors.StatementRejected)]
        assert len(refused) == 1 and isinstance(refused[0], errors.ItemsNotAllowed)
        indexes = sorted(r.index for r in results if not isinstance(r, Exception))
        assert indexes == list(range(before, before + 60))
        assert world.ledger.tree_size() == before + 60
        # Re-submitting concurrently gives the original receipts and appends nothing.
        with ThreadPoolExecutor(12) as pool:
            again = list(pool.map(submit, good))
        assert [r.index for r in again] == [r.index for r in results if r not in refused]
        assert world.ledger.tree_size() == before + 60
        world.ledger.close()
