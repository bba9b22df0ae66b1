"""The CI part of the crash-kill suite (issue 13, item 1): bench/crash_kill.py's harness with 5
kills on SQLite and 5 on PostgreSQL (one of them the database backend serving the server, which
makes PostgreSQL reset every connection and recover). Nothing acknowledged may be lost, no
batch may be partial, ``kiroku log fsck`` and ``kiroku verify`` must pass after every restart,
every checkpoint must be consistent with the earlier ones, and no answer may be a 500.
``python bench/crash_kill.py --kills 50`` is the long run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.dbutil import PG_ADMIN_URL, PG_SKIP_REASON, postgres_available

ROOT = Path(__file__).resolve().parents[2]


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crash_kill", ROOT / "bench" / "crash_kill.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["crash_kill"] = module
    spec.loader.exec_module(module)
    return module


def _check(tally: Any) -> None:
    print(tally.summary())
    assert tally.kills >= 5
    assert tally.receipts > 0, "no append was acknowledged: the kills hit nothing"
    assert tally.lost == 0, tally.notes
    assert tally.partial_batches == 0, tally.notes
    assert tally.server_errors == 0
    assert tally.fsck_failures == 0 and tally.verify_failures == 0, tally.notes
    assert tally.proofs_checked > 0 and tally.proof_failures == 0, tally.notes
    assert tally.checkpoints_checked > 0 and tally.inconsistent == 0, tally.notes
    assert tally.ok


def test_crash_kill_sqlite() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the harness kills process groups and reads /proc (Linux)")
    _check(_harness().run(5, "sqlite", clients=3, workers=1, per_round=200, proofs=10, seed=3))


def test_crash_kill_postgres() -> None:
    if not postgres_available():
        pytest.skip(PG_SKIP_REASON)
    _check(_harness().run(5, "postgres", backend_kills=1, clients=3, workers=1, per_round=200,
                          proofs=10, seed=4, pg_admin=PG_ADMIN_URL))
