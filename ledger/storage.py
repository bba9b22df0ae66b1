"""Persistence: the eventsourcing-sqlalchemy application recorder, extended into a Merkle log.

``LogRecorder.insert_events`` writes, in ONE database transaction and under one lock:
the event rows (eventsourcing's table, unchanged shape), then for each event its log index, its
hash-chain link, its RFC 9162 leaf, and every perfect subtree root the new leaves complete.
Appending reads only the O(log n) hashes on the tree's right edge; roots and proofs read
O(log n) stored nodes (ledger.merkle). Nothing is held in memory between calls.

Durability: a call returns only after the commit; SQLite runs in WAL mode with
``synchronous=FULL`` (fsync at every commit); PostgreSQL uses its defaults (fsync on).
Concurrency: writers serialise on the event table's lock (``BEGIN IMMEDIATE`` on SQLite,
``LOCK TABLE … IN EXCLUSIVE MODE`` on PostgreSQL), so several processes produce one total order
and one unbroken chain; readers never block writers.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import os
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    IntegrityError,
    Notification,
    PersistenceError,
    StoredEvent,
)
from eventsourcing_sqlalchemy.datastore import SQLAlchemyDatastore
from eventsourcing_sqlalchemy.factory import SQLAlchemyFactory
from eventsourcing_sqlalchemy.recorders import SQLAlchemyApplicationRecorder
from sqlalchemy import bindparam, event, func, select
from sqlalchemy.orm import Session

from ledger.encoding import b64encode, canonical_json_validated, format_time, now_utc
from ledger.merkle import NodeKey, append_nodes, frontier_keys, leaf_hash
from ledger.schema import log_entry

ZERO_HASH = b"\x00" * 32
# Set while a write transaction starts, so that SQLite takes its write lock at BEGIN
# (BEGIN IMMEDIATE) and the log head read afterwards cannot go stale.
_writing: contextvars.ContextVar[bool] = contextvars.ContextVar("kiroku_writing", default=False)


class KirokuDatastore(SQLAlchemyDatastore):
    """The library's datastore with SQLite set up for several writer processes.

    Subclasses (the projections' view store) change ``SQLITE_PRAGMAS`` for their own durability
    and cache trade-offs; the locking is the same.
    """

    #: Run on every new SQLite connection. WAL with synchronous=FULL fsyncs at every commit; a
    #: fixed 32 MiB page cache keeps a large log's hot index pages in memory, bounded.
    SQLITE_PRAGMAS: tuple[str, ...] = (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=FULL",
        "PRAGMA cache_size=-32768",
        "PRAGMA foreign_keys=ON",
    )

    def __init__(self, *, url: str | None = None, **kwargs: Any) -> None:
        lock_timeout = os.environ.get("KIROKU_DB_LOCK_TIMEOUT")  # seconds (docs/api.md "Failures")
        if url and url.startswith("sqlite") and "memory" not in url:
            connect_args = dict(kwargs.pop("connect_args", {}) or {})
            connect_args.setdefault("timeout", float(lock_timeout or 60))
            kwargs["connect_args"] = connect_args
        elif url and url.startswith("postgresql") and lock_timeout:
            connect_args = dict(kwargs.pop("connect_args", {}) or {})
            connect_args.setdefault("options", f"-c lock_timeout={int(float(lock_timeout) * 1000)}")
            kwargs["connect_args"] = connect_args
        super().__init__(url=url, **kwargs)
        if self.engine is not None and not self.is_sqlite_filedb:
            event.listen(self.engine, "handle_error", _drop_read_only)
        if self.is_sqlite_filedb and self.engine is not None:
            # Journal mode and BEGIN are set on every connection here instead of by the library,
            # which would otherwise try to change the journal mode inside a transaction.
            self._tried_init_sqlite_wal_mode = True
            self.is_sqlite_wal_mode = True
            event.listen(self.engine, "connect", self._sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)

    def _sqlite_connect(self, dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # BEGIN is emitted by _sqlite_begin
        cursor = dbapi_connection.cursor()
        for pragma in self.SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()


def _drop_read_only(context: Any) -> None:
    """A PostgreSQL connection that found its database read-only (a demoted primary, or
    ``default_transaction_read_only``) is dropped with the pool like a broken one, so that writes
    resume on fresh connections once the database takes them again."""
    if getattr(context.original_exception, "sqlstate", None) == "25006":
        context.is_disconnect = True


def _sqlite_begin(connection: Any) -> None:
    # Straight to the driver: through exec_driver_sql a BEGIN cost as much as a page's query.
    connection.connection.driver_connection.execute(
        "BEGIN IMMEDIATE" if _writing.get() else "BEGIN")


@contextlib.contextmanager
def writing() -> Iterator[None]:
    """Mark the transactions started inside as writes: on SQLite they take the lock at BEGIN
    (BEGIN IMMEDIATE), so what they read first cannot go stale before they write."""
    token = _writing.set(True)
    try:
        yield
    finally:
        _writing.reset(token)


def _driver_cursor(session: Session) -> Any:
    """A cursor of the DB-API driver's own connection, in the session's transaction."""
    driver = session.connection().connection.driver_connection
    if driver is None:
        raise PersistenceError("the session's connection is closed")
    return driver.cursor()


def _driver_sql(session: Session, sql: str, params: Sequence[Any]) -> Any:
    """Run ``sql`` (with ``{}`` placeholders) straight through the DB-API driver."""
    connection = session.connection()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    return connection.exec_driver_sql(sql.format(*([mark] * len(params))), tuple(params))


@dataclass(frozen=True)
class AppendedEntry:
    """What the recorder assigned to one event: its log position and exact leaf."""

    index: int
    notification_id: int
    leaf: bytes
    leaf_hash: bytes


class LogRecorder(SQLAlchemyApplicationRecorder):
    """Application recorder whose every event is also a chained, Merkle-logged log entry."""

    def insert_events(  # type: ignore[override]
        self,
        stored_events: Sequence[StoredEvent],
        *,
        session: Session | None = None,
        log_entries: Sequence[dict[str, Any]] | None = None,
        appended: list[AppendedEntry] | None = None,
        precommit: Callable[[int], None] | None = None,
        **kwargs: Any,
    ) -> Sequence[int] | None:
        """Insert events and their log entries atomically.

        ``log_entries[i]`` is the statement part of event i's leaf (docs/log-format.md); events
        given without one (the library's contract tests) get a generic leaf committing to the
        stored event. ``precommit(last_notification_id)`` runs after the lock is held and before anything
        is written: the place for checks that must see every entry committed before this one.
        ``appended`` receives an AppendedEntry per event.
        """
        if not stored_events:
            return []
        if session is not None:
            return self._insert_log(session, stored_events, log_entries, appended, precommit)
        with writing(), self.transaction(commit=True) as own:
            return self._insert_log(own, stored_events, log_entries, appended, precommit)

    def _insert_log(
        self,
        session: Session,
        stored_events: Sequence[StoredEvent],
        log_entries: Sequence[dict[str, Any]] | None,
        appended: list[AppendedEntry] | None,
        precommit: Callable[[int], None] | None,
    ) -> list[int]:
        self._lock_table(session)
        size, last_notification_id, prev, frontier = self._read_head(session)
        if precommit is not None:
            precommit(last_notification_id)
        sqlite = session.get_bind().dialect.name == "sqlite"
        notification_ids = (self._insert_events_sqlite(session, stored_events) if sqlite
                            else self._insert_events_returning(session, stored_events))
        logged_at = format_time(now_utc())
        entry_rows: list[dict[str, Any]] = []
        hashes: list[bytes] = []
        for offset, (stored, notification_id) in enumerate(zip(stored_events, notification_ids)):
            index = size + offset
            body = log_entries[offset] if log_entries is not None else _generic_entry(stored)
            # Leaf fields are strings and small integers with fixed ASCII keys (validated
            # statements, or the generic entry): plain sorted json.dumps is their exact JCS.
            leaf = canonical_json_validated(
                {"logged_at": logged_at, **body, "index": index, "prev": b64encode(prev)}
            )
            digest = leaf_hash(leaf)
            entry_rows.append(
                {"idx": index, "notification_id": notification_id, "leaf": leaf, "leaf_hash": digest}
            )
            hashes.append(digest)
            prev = digest
        nodes = append_nodes(size, frontier, hashes)
        if sqlite:
            cursor = session.connection().connection.cursor()
            cursor.executemany(
                "INSERT INTO kiroku_log_entry (idx, notification_id, leaf, leaf_hash) "
                "VALUES (?, ?, ?, ?)",
                [(r["idx"], r["notification_id"], r["leaf"], r["leaf_hash"]) for r in entry_rows])
            if nodes:
                cursor.executemany(
                    "INSERT INTO kiroku_merkle_node (level, idx, hash) VALUES (?, ?, ?)", nodes)
        else:
            # COPY, straight through psycopg: executemany through SQLAlchemy cost ~90 µs a row.
            cursor = _driver_cursor(session)
            with cursor.copy("COPY kiroku_log_entry (idx, notification_id, leaf, leaf_hash) "
                             "FROM STDIN") as copy:
                for r in entry_rows:
                    copy.write_row((r["idx"], r["notification_id"], r["leaf"], r["leaf_hash"]))
            if nodes:
                with cursor.copy("COPY kiroku_merkle_node (level, idx, hash) FROM STDIN") as copy:
                    for node in nodes:
                        copy.write_row(node)
        self._notify_channel(session)
        if appended is not None:
            appended.extend(
                AppendedEntry(r["idx"], r["notification_id"], r["leaf"], r["leaf_hash"])
                for r in entry_rows
            )
        return notification_ids

    def _insert_events_returning(self, session: Session, stored_events: Sequence[StoredEvent]
                                 ) -> list[int]:
        """The library's rows on PostgreSQL, through psycopg's pipelined executemany with
        RETURNING (one result per row, in order): SQLAlchemy's multi-row INSERT … RETURNING
        cost twice as much, most of it rendering and splitting one large statement."""
        import psycopg

        cursor = _driver_cursor(session)
        try:
            cursor.executemany(
                f"INSERT INTO {self.events_table_name} "
                "(originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s) "
                "RETURNING id",
                [(e.originator_id, e.originator_version, e.topic, e.state)
                 for e in stored_events], returning=True)
        except psycopg.errors.UniqueViolation as exc:  # as the library's own path raises
            raise IntegrityError(exc) from exc
        ids = []
        while True:
            row = cursor.fetchone()
            if row is None:
                raise PersistenceError("an INSERT … RETURNING gave no id")
            ids.append(int(row[0]))
            if not cursor.nextset():
                break
        if len(ids) != len(stored_events):
            raise PersistenceError(f"expected {len(stored_events)} new event ids, got {len(ids)}")
        return ids

    def _insert_events_sqlite(self, session: Session, stored_events: Sequence[StoredEvent]
                              ) -> list[int]:
        """The library's rows, written with one executemany through the driver.

        Under the write lock a rowid table hands out max(id)+1, max(id)+2, … so the notification
        ids are known without RETURNING; the count is checked before the transaction goes on.
        """
        table = self.events_table_name
        cursor = session.connection().connection.cursor()
        before = cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0]
        try:
            cursor.executemany(
                f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
                "VALUES (?, ?, ?, ?)",
                [(_uuid_bytes(e.originator_id), e.originator_version, e.topic, e.state)
                 for e in stored_events])
        except sqlite3.IntegrityError as exc:  # the library's error, as its own path raises
            raise IntegrityError(exc) from exc
        after = cursor.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0]
        if after - before != len(stored_events):
            raise PersistenceError(f"expected {len(stored_events)} new event ids, got "
                                   f"{before + 1}..{after}")
        return list(range(before + 1, after + 1))

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[Session]:
        """A transaction holding the log's write lock (for checkpoints and other log-wide writes)."""
        with writing(), self.transaction(commit=True) as session:
            self._lock_table(session)
            yield session

    # Reading the tree --------------------------------------------------------------------------
    def _read_head(self, session: Session) -> tuple[int, int, bytes, dict[int, bytes]]:
        """(size, last entry's notification id, last leaf hash, right-edge subtree roots)."""
        last = _driver_sql(session, "SELECT idx, notification_id, leaf_hash FROM kiroku_log_entry "
                                    "ORDER BY idx DESC LIMIT 1", ()).first()
        if last is None:
            return 0, 0, ZERO_HASH, {}
        size, prev = int(last[0]) + 1, bytes(last[2])
        keys = [key for key in frontier_keys(size) if key[0] > 0]
        nodes = self._read_nodes(session, keys) if keys else {}
        frontier = {level: nodes[(level, idx)] for level, idx in keys}
        if size & 1:
            frontier[0] = prev  # an odd-sized tree's last leaf is its own frontier subtree
        return size, int(last[1]), prev, frontier

    @staticmethod
    def _read_nodes(session: Session, keys: Collection[NodeKey]) -> dict[NodeKey, bytes]:
        found: dict[NodeKey, bytes] = {}
        leaves = [idx for level, idx in keys if level == 0]
        inner = [(level, idx) for level, idx in keys if level > 0]
        if len(leaves) <= _LEAF_CHUNK and len(inner) <= _NODE_CHUNK and (
                session.get_bind().dialect.name == "sqlite"):
            found = _read_nodes_aggregated(session, leaves, inner)
            leaves, inner = [], []  # nothing left for the row-per-node queries below
        # Hot path (every append and proof): plain SQL through the driver, no statement
        # compilation. One equality term per node: SQLite scans the whole table for a row-value
        # IN list, but answers OR-ed (level = ? AND idx = ?) terms from the primary key.
        for start in range(0, len(leaves), _LEAF_CHUNK):
            chunk = leaves[start:start + _LEAF_CHUNK]
            rows = _driver_sql(session, "SELECT idx, leaf_hash FROM kiroku_log_entry WHERE idx IN ("
                               + ",".join(["{}"] * len(chunk)) + ")", chunk)
            found.update({(0, int(i)): bytes(h) for i, h in rows})
        for start in range(0, len(inner), _NODE_CHUNK):
            pairs = inner[start:start + _NODE_CHUNK]
            rows = _driver_sql(session, "SELECT level, idx, hash FROM kiroku_merkle_node WHERE "
                               + " OR ".join(["(level = {} AND idx = {})"] * len(pairs)),
                               [value for key in pairs for value in key])
            found.update({(int(lv), int(i)): bytes(h) for lv, i, h in rows})
        missing = set(keys) - found.keys()
        if missing:
            raise LookupError(f"Merkle nodes missing from storage: {sorted(missing)[:5]}")
        return found

    @staticmethod
    def size_in(session: Session) -> int:
        """The tree size as ``session`` sees it."""
        top = _driver_sql(session, "SELECT MAX(idx) FROM kiroku_log_entry", ()).scalar()
        return 0 if top is None else int(top) + 1

    @staticmethod
    def reader(session: Session) -> _SessionNodes:
        """A NodeReader inside ``session`` (several reads, one transaction)."""
        return _SessionNodes(session)

    def read_nodes(self, keys: Collection[NodeKey]) -> dict[NodeKey, bytes]:
        with self.transaction(commit=False) as session:
            return self._read_nodes(session, keys)

    def notifications_after(
        self, position: int, topics: Sequence[str], top: int | None = None
    ) -> tuple[int, list[Notification]]:
        """(highest notification id, notifications with ``topics`` after ``position`` up to it).

        ``top`` is the highest id when the caller knows it (under the write lock).
        """
        table = self.events_record_cls.__table__
        with self.transaction(commit=False) as session:
            if top is None:
                top = session.execute(select(func.max(table.c.id))).scalar() or 0
            if top <= position:
                return int(top), []
            rows = session.execute(
                self._select_topics_between,
                {"position": position, "top": top, "topics": list(topics)},
            ).all()
        return int(top), [
            Notification(id=int(r.id), originator_id=r.originator_id,
                         originator_version=r.originator_version, topic=r.topic,
                         state=bytes(r.state))
            for r in rows
        ]

    @functools.cached_property
    def _select_topics_between(self) -> Any:
        table = self.events_record_cls.__table__
        return (
            select(table.c.id, table.c.originator_id, table.c.originator_version, table.c.topic,
                   table.c.state)
            .where(table.c.id > bindparam("position"), table.c.id <= bindparam("top"),
                   table.c.topic.in_(bindparam("topics", expanding=True)))
            .order_by(table.c.id)
        )

    def tree_size(self) -> int:
        with self.transaction(commit=False) as session:
            top = session.execute(select(func.max(log_entry.c.idx))).scalar()
        return 0 if top is None else int(top) + 1


_LEAF_CHUNK, _NODE_CHUNK = 500, 200  # leaf hashes / Merkle nodes named in one node query


def _read_nodes_aggregated(session: Session, leaves: list[int], inner: list[NodeKey]
                           ) -> dict[NodeKey, bytes]:
    """SQLite: the nodes as one aggregated row, ``level.idx:HEX`` joined by commas.

    Python's sqlite3 releases the interpreter lock around every step of a statement, once per
    row: two threads reading a proof's ~35 rows each handed the lock back and forth ~70 times
    and, measured, answered fewer proofs together than one thread alone. One row, one step.
    """
    parts: list[str] = []
    params: list[int] = []
    if leaves:
        parts.append("SELECT '0.' || idx AS k, leaf_hash AS h FROM kiroku_log_entry WHERE idx IN ("
                     + ",".join("?" * len(leaves)) + ")")
        params.extend(leaves)
    if inner:
        parts.append("SELECT level || '.' || idx AS k, hash AS h FROM kiroku_merkle_node WHERE "
                     + " OR ".join(["(level = ? AND idx = ?)"] * len(inner)))
        params.extend(value for key in inner for value in key)
    if not parts:
        return {}
    text = session.connection().exec_driver_sql(
        "SELECT group_concat(k || ':' || hex(h)) FROM (" + " UNION ALL ".join(parts) + ")",
        tuple(params)).scalar()
    found: dict[NodeKey, bytes] = {}
    for item in text.split(",") if text else ():
        key, _, digest = item.partition(":")
        level, _, idx = key.partition(".")
        found[(int(level), int(idx))] = bytes.fromhex(digest)
    return found


@dataclass(frozen=True)
class _SessionNodes:
    session: Session

    def read_nodes(self, keys: Collection[NodeKey]) -> dict[NodeKey, bytes]:
        return LogRecorder._read_nodes(self.session, keys)


def _uuid_bytes(value: UUID | str) -> bytes:
    """How sqlalchemy_utils' UUIDType (binary) stores an originator id in SQLite."""
    return (value if isinstance(value, UUID) else UUID(str(value))).bytes


def _generic_entry(stored: StoredEvent) -> dict[str, Any]:
    """Leaf body for an event that is not a kiroku statement: a commitment to the stored event."""
    return {
        "v": 1,
        "kind": "event",
        "topic": stored.topic,
        "originator_id": str(stored.originator_id),
        "originator_version": stored.originator_version,
        "state_hash": b64encode(hashlib.sha256(stored.state).digest()),
    }


class KirokuFactory(SQLAlchemyFactory):
    datastore_class = KirokuDatastore
    application_recorder_class = LogRecorder


Factory = KirokuFactory
