"""Session-wide rules: in CI (KIROKU_REQUIRE_POSTGRES=1) the PostgreSQL tests must run."""

from __future__ import annotations

import os

import pytest

from tests.dbutil import PG_SKIP_REASON, postgres_available


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("KIROKU_REQUIRE_POSTGRES") == "1" and not postgres_available():
        pytest.exit(f"{PG_SKIP_REASON}, and KIROKU_REQUIRE_POSTGRES=1 forbids skipping", 1)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if (os.environ.get("KIROKU_REQUIRE_POSTGRES") == "1" and report.skipped
            and "PostgreSQL" in str(report.longrepr)):
        report.outcome = "failed"
