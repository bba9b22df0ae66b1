"""Where the views live: the ledger's own database, through a datastore of their own.

Durability and concurrency: every batch of view rows is written in ONE transaction together with
the projection's tracking record (its last processed notification id). The tracking record is
advanced by compare-and-set under a row lock (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite
write transactions start with ``BEGIN IMMEDIATE``), so when two runners race for the same batch,
exactly one commits and the other's transaction rolls back with ``IntegrityError``: no row is ever
counted twice, and a runner killed mid-batch leaves nothing behind (its transaction never
committed). Readers never block the ledger's writers (WAL on SQLite, MVCC on PostgreSQL).

The views use their own engine rather than the ledger's so that a view write never takes the
ledger's write lock (``LOCK TABLE … EXCLUSIVE`` on PostgreSQL).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing_sqlalchemy.datastore import SQLAlchemyDatastore
from eventsourcing_sqlalchemy.recorders import SQLAlchemyTrackingRecorder
from sqlalchemy import Connection, Engine, Select, insert, inspect, select, update
from sqlalchemy.orm import Session

from ledger.storage import KirokuDatastore, writing
from projections.errors import ViewsMissing
from projections.schema import AUDIT_TRACKING, RESIDENT_TRACKING, resident_record


class ViewDatastore(KirokuDatastore):
    """The ledger's datastore (write transactions take SQLite's lock at BEGIN, so a transaction
    that reads its position and then writes cannot hit SQLITE_BUSY_SNAPSHOT when the ledger
    appended in between), with the trade-offs of derived data."""

    SQLITE_PRAGMAS = (
        "PRAGMA journal_mode=WAL",
        # Views are derived data: in WAL mode NORMAL keeps every transaction atomic (rows and
        # tracking together) and may only lose the last commits at a power cut, which the
        # runner re-applies.
        "PRAGMA synchronous=NORMAL",
        "PRAGMA cache_size=-65536",  # 64 MiB: index inserts on large views
    )


class ViewTrackingRecorder(SQLAlchemyTrackingRecorder):
    """The library's tracking recorder with a compare-and-set ``_insert_tracking``.

    The library's version checks the position in a separate transaction; this one reads it with a
    row lock inside the caller's transaction, so the check and the view rows commit together.
    Passes eventsourcing's ``TrackingRecorderTestCase``.
    """

    def _insert_tracking(self, session: Session, tracking: Tracking) -> None:
        table = self.tracking_table
        name = tracking.application_name
        row = session.execute(
            select(table.c.notification_id)
            .where(table.c.application_name == name)
            .with_for_update()
        ).first()
        if row is None:
            # A racing first insert fails on the primary key: IntegrityError at commit.
            session.execute(
                insert(table).values(application_name=name,
                                     notification_id=tracking.notification_id)
            )
            return
        if row.notification_id is not None and row.notification_id >= tracking.notification_id:
            raise IntegrityError(
                f"{self.tracking_table_name}: {name} is already at {row.notification_id}, "
                f"not before {tracking.notification_id}"
            )
        session.execute(
            update(table)
            .where(table.c.application_name == name)
            .values(notification_id=tracking.notification_id)
        )

    def insert_tracking(self, tracking: Tracking) -> None:
        with write_transaction(self.datastore) as session:
            self._insert_tracking(session, tracking)

    def reset(self, session: Session) -> None:
        """Forget every position (the views are being rebuilt from index 0)."""
        session.execute(self.tracking_table.delete())


@contextlib.contextmanager
def write_transaction(datastore: SQLAlchemyDatastore) -> Iterator[Session]:
    with writing(), datastore.transaction(commit=True) as session:
        yield session


class ViewStore:
    """The views' datastore and one tracking recorder per projection."""

    def __init__(self, url: str) -> None:
        self.datastore = ViewDatastore(url=url)
        with warnings.catch_warnings():
            # The library names every tracking record class alike; the tables differ.
            warnings.filterwarnings("ignore", "This declarative base already contains")
            self.tracking = {
                name: ViewTrackingRecorder(self.datastore, tracking_table_name=table)
                for name, table in (("resident", RESIDENT_TRACKING), ("audit", AUDIT_TRACKING),
                                    ("notices", "kiroku_notice_tracking"))
            }
        self._checked = False
        self._applied: dict[str, Select[Any]] = {}

    @property
    def dialect(self) -> str:
        assert self.datastore.engine is not None
        return str(self.datastore.engine.dialect.name)

    def check_schema(self) -> None:
        """Raise ViewsMissing when migration 0002 has not been applied to this database."""
        if self._checked:
            return
        assert self.datastore.engine is not None
        if not inspect(self.datastore.engine).has_table(resident_record.name):
            raise ViewsMissing(
                "this database has no projection tables; run 'kiroku db upgrade' first"
            )
        self._checked = True

    def applied_index(self, session: Session | Connection, name: str) -> int | None:
        """The last log index projection ``name`` has applied, in ``session``'s snapshot."""
        index = session.execute(self._applied_statement(name)).scalar()
        return None if index is None else int(index)

    def _applied_statement(self, name: str) -> Select[Any]:
        # Built once per store: every resident page reads it (projections.resident says why).
        if name in self._applied:
            return self._applied[name]
        from ledger.application import Ledger
        from ledger.schema import log_entry

        table = self.tracking[name].tracking_table
        position = (select(table.c.notification_id)
                    .where(table.c.application_name == Ledger.name).scalar_subquery())
        # Notification ids grow with the log index, so the newest applied entry is one index seek.
        statement = self._applied[name] = (
            select(log_entry.c.idx).where(log_entry.c.notification_id <= position)
            .order_by(log_entry.c.notification_id.desc()).limit(1))
        return statement

    def read(self) -> Any:
        """A read-only transaction (a context manager yielding a Session)."""
        return self.datastore.transaction(commit=False)

    def write(self) -> contextlib.AbstractContextManager[Session]:
        return write_transaction(self.datastore)

    def close(self) -> None:
        if isinstance(self.datastore.engine, Engine):
            self.datastore.engine.dispose()
