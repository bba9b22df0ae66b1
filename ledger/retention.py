"""Erasure at the end of retention (the Act keeps provision records for 7 years).

Erasing removes a provision's payload and salt from its stored event. The leaf, the chain, every
proof and the agency's signature stay checkable, because the signature covers only the salted
commitment (docs/log-format.md); without the salt, the commitment cannot confirm a guessed payload.
Registration entries are never erased: verifiers need them.

The period counts from ``logged_at``, the time the log accepted the entry (docs/residents.md
"Retention" gives the reasons): it is in the public leaf, so anyone can check from an export that
only entries older than the cut-off were erased, and it grows with the log index, so the erased
entries are always a prefix of the provisions (ledger.completeness relies on that).

Rewriting a row leaves the old bytes in the database's free space (SQLite pages, PostgreSQL dead
tuples) until the storage is rewritten, so ``compact_storage`` rewrites what held payloads.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from sqlalchemy import Engine, inspect, select, text, update

from ledger.application import Ledger
from ledger.applications import Application
from ledger.domain import Logged, Provision
from ledger.encoding import format_time, now_utc, parse_time
from ledger.errors import ConfigurationError
from ledger.schema import log_entry

RETENTION_YEARS = 7  # 番号法施行令: provision records are kept for 7 years
RETENTION_ENV = "KIROKU_RETENTION_YEARS"
_CHUNK = 1000

#: Event topics whose payloads are erased at the end of retention, with the leaf kind they log.
ERASABLE = {get_topic(Provision.Recorded): "provision",
            # A resident's application: the form's answers, their certificate and signature
            # (docs/applications.md). Its later steps name only the application and an outcome.
            get_topic(Application.Submitted): "application.submitted"}

def retention_years(environ: Mapping[str, str] | None = None) -> int:
    """The retention period in whole years: ``KIROKU_RETENTION_YEARS``, default 7."""
    env = os.environ if environ is None else environ
    raw = env.get(RETENTION_ENV, "").strip()
    if not raw:
        return RETENTION_YEARS
    try:
        years = int(raw)
    except ValueError:
        raise ConfigurationError(f"{RETENTION_ENV}={raw!r} is not a whole number of years"
                                 ) from None
    if years < 1:
        raise ConfigurationError(f"{RETENTION_ENV}={years}: the period must be at least 1 year")
    return years


def retention_cutoff(years: int, now: datetime | None = None) -> datetime:
    """``now`` minus ``years`` calendar years (29 February becomes 28 February)."""
    now = now or now_utc()
    try:
        return now.replace(year=now.year - years)
    except ValueError:
        return now.replace(year=now.year - years, day=28)


@dataclass
class ErasureReport:
    """What one erasure did (or, in a dry run, would do). Log indices and counts only: never a
    payload value, so the report itself can be logged and kept."""

    before: datetime
    dry_run: bool
    erased: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    ranges: list[tuple[int, int]] = field(default_factory=list)  # inclusive log index ranges
    already_erased: int = 0  # erased by an earlier run
    #: The last log index of any erased provision (this run's or earlier); None if none is.
    horizon: int | None = None

    def add(self, index: int, kind: str) -> None:
        self.erased += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if self.ranges and self.ranges[-1][1] == index - 1:
            self.ranges[-1] = (self.ranges[-1][0], index)
        else:
            self.ranges.append((index, index))

    def to_json(self) -> dict[str, Any]:
        return {"before": format_time(self.before), "dry_run": self.dry_run,
                "erased": self.erased, "kinds": dict(sorted(self.kinds.items())),
                "ranges": [list(r) for r in self.ranges], "already_erased": self.already_erased}


def erase(ledger: Ledger, before: datetime, *, dry_run: bool = False,
          progress: Callable[[int], None] | None = None) -> ErasureReport:
    """Erase the payloads of erasable entries logged before ``before``, in log order.

    Idempotent: entries already erased are counted in ``already_erased``, not erased again.
    Each chunk is its own transaction, so an interrupted run leaves a prefix erased and the
    next run carries on. ``progress`` is called with the number of events read per chunk.
    """
    events = ledger.log.events_record_cls.__table__
    report = ErasureReport(before=before, dry_run=dry_run)
    last = -1
    while True:
        with ledger.log.write_transaction() as session:
            rows = session.execute(
                select(log_entry.c.idx, events.c.id, events.c.originator_id,
                       events.c.originator_version, events.c.topic, events.c.state)
                .join(events, events.c.id == log_entry.c.notification_id)
                .where(log_entry.c.idx > last, events.c.topic.in_(list(ERASABLE)))
                .order_by(log_entry.c.idx).limit(_CHUNK)
            ).all()
            if not rows:
                return report
            for row in rows:
                last = int(row.idx)
                event = cast(Logged, ledger.mapper.to_domain_event(StoredEvent(
                    originator_id=row.originator_id, originator_version=row.originator_version,
                    topic=row.topic, state=bytes(row.state))))
                if event.payload is None:
                    report.already_erased += 1
                    report.horizon = last
                    continue
                if parse_time(event.logged_at, field="logged_at") >= before:
                    return report  # log order is time order: nothing later is due
                report.add(last, ERASABLE[row.topic])
                report.horizon = last
                if dry_run:
                    continue
                blank = dataclasses.replace(event, payload=None, salt=None)  # type: ignore[call-arg]
                session.execute(update(events).where(events.c.id == row.id).values(
                    state=ledger.mapper.to_stored_event(blank).state))
        if progress is not None:
            progress(len(rows))


def erase_payloads(ledger: Ledger, before: datetime,
                   progress: Callable[[int], None] | None = None) -> int:
    """Erase payloads of provisions logged before ``before``; returns how many were erased."""
    return erase(ledger, before, progress=progress).erased


def views_hold_erased(ledger: Ledger, horizon: int | None, tables: Sequence[str]) -> bool:
    """Whether a view table (given by the caller: views are a layer above) still holds a row for
    an entry at or below ``horizon``, the last erased provision: then an earlier run stopped
    before rebuilding the views, and they must be rebuilt. ``tables`` have an ``idx`` column."""
    if horizon is None:
        return False
    with ledger.log.transaction(commit=False) as session:
        for name in _existing(ledger, tables):
            found = session.execute(text(f"SELECT 1 FROM {name} WHERE idx <= :h LIMIT 1"),
                                    {"h": horizon}).first()
            if found is not None:
                return True
    return False


def compact_storage(ledger: Ledger, tables: Sequence[str] = ()) -> list[str]:
    """Rewrite the storage that held erased payloads, so no old copy stays in free space.

    SQLite: VACUUM rebuilds the whole file and the write-ahead log is truncated. PostgreSQL:
    VACUUM FULL rewrites the event table, the completeness index's tables and ``tables`` (the
    views', rebuilt after erasure) into new files (it holds an exclusive lock on each table while it runs; appends wait). Copies outside the database's
    live files (PostgreSQL's WAL until it is recycled, archives, backups) are the operator's to
    expire (docs/residents.md "Retention"). Returns what was compacted, for the report.
    """
    engine = ledger.log.datastore.engine
    assert isinstance(engine, Engine)
    events = ledger.log.events_record_cls.__table__.name
    if engine.dialect.name == "sqlite":
        # A connection of its own, in autocommit mode: the recorder's engine opens a
        # transaction on every connection, and VACUUM cannot run inside one.
        database = engine.url.database
        if not database or database == ":memory:":
            return []
        raw = sqlite3.connect(database, isolation_level=None, timeout=30)
        try:
            raw.execute("VACUUM")
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
        return ["database file"]
    if engine.dialect.name == "postgresql":
        # The completeness index's tables keep keyed pseudonyms of erased records in dead rows
        # once the index has moved past them (ledger.completeness).
        index_tables = [name for name in inspect(engine).get_table_names()
                        if name.startswith("kiroku_completeness_")]
        names = [events, *index_tables, *_existing(ledger, tables)]
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            for table in names:
                connection.exec_driver_sql(f'VACUUM FULL "{table}"')
        return names
    return []


def _existing(ledger: Ledger, tables: Sequence[str]) -> list[str]:
    """The tables of ``tables`` the schema has (a view may be newer than the database)."""
    engine = ledger.log.datastore.engine
    assert engine is not None
    inspector = inspect(engine)
    return [name for name in tables if inspector.has_table(name)]
