"""The eventsourcing library's own recorder contract tests, against kiroku's LogRecorder on
databases created by Alembic migrations (SQLite and PostgreSQL).

Beyond the library's assertions, each test ends by checking that the log the recorder built
alongside the events is whole: one entry per event, an unbroken hash chain, and a root equal to
a fresh recomputation from the leaves.
"""

from __future__ import annotations

import contextlib
import unittest
from typing import Any

from eventsourcing.tests.persistence import ApplicationRecorderTestCase
from eventsourcing.utils import Environment

from ledger.storage import KirokuFactory, LogRecorder
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.ledger.logcheck import assert_log_whole


class _Contract(ApplicationRecorderTestCase[LogRecorder]):
    database: Any = None

    def setUp(self) -> None:
        self._stack = contextlib.ExitStack()
        self.url = self._stack.enter_context(self.database())
        self._recorders: list[LogRecorder] = []

    def tearDown(self) -> None:
        for recorder in self._recorders:
            assert_log_whole(recorder)
            if recorder.datastore.engine is not None:
                recorder.datastore.engine.dispose()
        self._stack.close()

    def create_recorder(self) -> LogRecorder:
        env = Environment(
            "Ledger", {"SQLALCHEMY_URL": self.url, "CREATE_TABLE": "no"}
        )
        recorder = KirokuFactory(env).application_recorder()
        assert isinstance(recorder, LogRecorder)
        self._recorders.append(recorder)
        return recorder

    def test_performance(self) -> None:  # the library's timing printout, not a behaviour
        self.skipTest("throughput is measured in bench/, not in tests")


class TestSQLiteContract(_Contract):
    database = staticmethod(sqlite_database)


@unittest.skipUnless(postgres_available(), PG_SKIP_REASON)
class TestPostgresContract(_Contract):
    database = staticmethod(postgres_database)


del _Contract
