"""Session-wide rules: in CI the PostgreSQL, browser and Go interop tests must run.

Each ``KIROKU_REQUIRE_*`` variable set to 1 turns a skip whose reason names that component into
a failure, so a machine without it cannot pass quietly.
"""

from __future__ import annotations

import os

import pytest

from tests.dbutil import PG_SKIP_REASON, postgres_available

# variable → a word every skip reason for want of that component contains
REQUIRED = {
    "KIROKU_REQUIRE_POSTGRES": "PostgreSQL",
    "KIROKU_REQUIRE_BROWSER": "Chromium",
    "KIROKU_REQUIRE_GO": "Go toolchain",
}


def _required() -> list[str]:
    return [word for var, word in REQUIRED.items() if os.environ.get(var) == "1"]


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("KIROKU_REQUIRE_POSTGRES") == "1" and not postgres_available():
        pytest.exit(f"{PG_SKIP_REASON}, and KIROKU_REQUIRE_POSTGRES=1 forbids skipping", 1)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and any(word in str(report.longrepr) for word in _required()):
        report.outcome = "failed"
