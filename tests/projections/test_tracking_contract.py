"""eventsourcing's own TrackingRecorder contract, against the views' compare-and-set recorder on
databases created by the Alembic migrations (SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import unittest
from typing import Any

from eventsourcing.tests.persistence import TrackingRecorderTestCase

from projections.store import ViewStore
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database


class _Contract(TrackingRecorderTestCase):
    database: Any = None

    def setUp(self) -> None:
        self._stack = contextlib.ExitStack()
        self.url = self._stack.enter_context(self.database())
        self._stores: list[ViewStore] = []

    def tearDown(self) -> None:
        for store in self._stores:
            store.close()
        self._stack.close()

    def create_recorder(self) -> Any:
        store = ViewStore(self.url)
        self._stores.append(store)
        return store.tracking["resident"]


class TestSQLiteTrackingContract(_Contract):
    database = staticmethod(sqlite_database)


@unittest.skipUnless(postgres_available(), PG_SKIP_REASON)
class TestPostgresTrackingContract(_Contract):
    database = staticmethod(postgres_database)


del _Contract
