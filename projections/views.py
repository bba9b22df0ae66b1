"""The two projections and how each writes a batch of provision facts into its tables.

Both follow eventsourcing's ``Projection`` interface (``name``, ``topics``, a tracking recorder as
``view``, ``process_event``); the runner (projections.runner) calls the batch method ``write``,
which turns many facts into one ``executemany`` per table. Both are pure functions of the log:
rebuilding from index 0 ends in identical rows (``digest``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic
from sqlalchemy import Boolean, Table, Uuid, insert, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from ledger.domain import Provision
from ledger.schema import log_entry
from projections.decode import PROVISION_TOPIC, ProvisionFact, fact_from_event, month_jst
from projections.flags import (
    FLAGGED_TOPIC,
    FlagFact,
    flag_fact,
    write_flag_history,
    write_resident_flags,
)
from projections.notices import NOTICE_TOPIC, NoticeFact, notice, write_notices
from projections.schema import (
    audit_count,
    audit_operator,
    audit_provision,
    record_flag,
    resident_flag,
    resident_record,
)
from projections.store import ViewTrackingRecorder, write_transaction

CountKey = tuple[str, str, str, str, str, str]  # agency, role, month, affair, outcome, reason
OperatorKey = tuple[str, str, str]  # agency, month, operator


class View(Projection[ViewTrackingRecorder]):
    """A projection whose rows are written with its tracking record in one transaction."""

    topics = (PROVISION_TOPIC, FLAGGED_TOPIC)
    tables: ClassVar[tuple[Table, ...]] = ()

    @abstractmethod
    def write(self, session: Session, facts: Sequence[ProvisionFact | FlagFact | NoticeFact]
              ) -> None:
        """Write the rows for ``facts`` (in log order) in ``session`` (the caller's
        transaction)."""

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """One event at a time (eventsourcing's runner interface): rows and tracking together."""
        with write_transaction(self.view.datastore) as session:
            if isinstance(domain_event, Provision.Recorded):
                index = session.execute(
                    select(log_entry.c.idx)
                    .where(log_entry.c.notification_id == tracking.notification_id)
                ).scalar_one()
                fact = fact_from_event(domain_event, tracking.notification_id, int(index),
                                       session)
                if fact is not None:
                    self.write(session, [fact])
            elif get_topic(type(domain_event)) == FLAGGED_TOPIC:
                index = session.execute(
                    select(log_entry.c.idx)
                    .where(log_entry.c.notification_id == tracking.notification_id)
                ).scalar_one()
                flagged = flag_fact(tracking.notification_id, int(index),
                                    domain_event.statement, domain_event.payload,
                                    domain_event.logged_at)
                if flagged is not None:
                    self.write(session, [flagged])
            self.view._insert_tracking(session, tracking)

    def clear(self, session: Session) -> None:
        for table in self.tables:
            session.execute(table.delete())
        self.view.reset(session)

    def digest(self, session: Session) -> str:
        """SHA-256 over every row of the view's tables in primary-key order."""
        hasher = hashlib.sha256()
        for table in self.tables:
            hasher.update(f"{table.name}\n".encode())
            query = select(*table.c).order_by(*table.primary_key.columns)
            for row in session.execute(query.execution_options(yield_per=5000)):
                hasher.update(json.dumps(list(row), default=str, ensure_ascii=False).encode())
                hasher.update(b"\n")
        return hasher.hexdigest()


class ResidentView(View):
    """Every provision about each resident, keyed by log index, indexed by (subject, time)."""

    name = "resident"
    tables = (resident_record, resident_flag)

    def write(self, session: Session, facts: Sequence[ProvisionFact | FlagFact | NoticeFact]
              ) -> None:
        insert_rows(session, resident_record, [
            (f.index, f.id, f.subject, f.requested_at, f.provided_at, f.requester, f.provider,
             f.basis, f.affair, _items_json(f.items), f.outcome,
             f.reason, f.non_disclosure)
            for f in facts if isinstance(f, ProvisionFact)
        ])
        # Flags after the batch's records: a flag entry always follows its provision's.
        write_resident_flags(session, facts)


class AuditView(View):
    """Per-agency counters (month × affair × outcome × reason, per operator) and the detail rows
    that anomaly detection and ``as_of`` reports read."""

    name = "audit"
    tables = (audit_provision, audit_count, audit_operator, record_flag)

    def write(self, session: Session, facts: Sequence[ProvisionFact | FlagFact | NoticeFact]
              ) -> None:
        write_flag_history(session, facts)
        provisions = [f for f in facts if isinstance(f, ProvisionFact)]
        if not provisions:
            return
        insert_rows(session, audit_provision, [
            (f.index, f.requester, f.provider, f.submitter, f.affair, f.outcome, f.reason,
             # The requester's own reference to the resident (its link code from version 2):
             # the agency's report groups by it and shows it, never the internal pseudonym.
             f.operator, f.requester_ref, f.requested_at, f.non_disclosure)
            for f in provisions
        ])
        counts, hidden, operators = aggregate(provisions)
        add_counts(session, audit_count, [(*k, n, hidden[k]) for k, n in counts.items()])
        add_counts(session, audit_operator, [(*k, n) for k, n in operators.items()])


def insert_rows(session: Session, table: Table, rows: list[tuple[Any, ...]]) -> None:
    """Insert rows given in the table's column order, in one executemany.

    On SQLite the rows go straight to the driver: SQLAlchemy's per-row bind processing was half
    the cost of a rebuild (bench/bench_projections.py). Values are adapted as SQLAlchemy would
    store them there (Uuid as 32 hex digits, Boolean as 0/1), so reads through SQLAlchemy agree.
    """
    if not rows:
        return
    connection = session.connection()
    names = [column.name for column in table.columns]
    if connection.dialect.name != "sqlite":
        connection.execute(insert(table), [dict(zip(names, row)) for row in rows])
        return
    adapt = [_SQLITE_ADAPTERS.get(type(column.type)) for column in table.columns]
    prepared = [tuple(v if a is None or v is None else a(v) for v, a in zip(row, adapt))
                for row in rows]
    marks = ", ".join("?" * len(names))
    connection.exec_driver_sql(
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})", prepared)


_SQLITE_ADAPTERS: dict[type, Any] = {Uuid: lambda v: v.hex, Boolean: int}


def aggregate(rows: Iterable[Any]) -> tuple[Counter[CountKey], Counter[CountKey],
                                            Counter[OperatorKey]]:
    """Counts, non-disclosed counts and operator counts of facts or audit rows.

    One function for the incremental counters and for ``as_of`` reports, so both agree.
    Each provision counts once for its requester and once for its provider.
    """
    counts: Counter[CountKey] = Counter()
    hidden: Counter[CountKey] = Counter()
    operators: Counter[OperatorKey] = Counter()
    for row in rows:
        month = month_jst(row.requested_at)
        reason = row.reason or ""
        for agency, role in ((row.requester, "requester"), (row.provider, "provider")):
            key = (agency, role, month, row.affair, row.outcome, reason)
            counts[key] += 1
            hidden[key] += 1 if row.non_disclosure else 0
        operators[(row.requester, month, row.operator)] += 1
    return counts, hidden, operators


def add_counts(session: Session, table: Table, rows: list[tuple[Any, ...]]) -> None:
    """Add counts to a counter table: rows are (primary key…, counts…) in column order;
    INSERT … ON CONFLICT (primary key) DO UPDATE SET count = count + excluded.count."""
    if not rows:
        return
    connection = session.connection()
    keys = [c.name for c in table.primary_key.columns]
    added = [c.name for c in table.columns if not c.primary_key]
    if connection.dialect.name == "sqlite":
        names = keys + added
        connection.exec_driver_sql(
            f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
            f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
            + ", ".join(f"{n} = {n} + excluded.{n}" for n in added), rows)
        return
    statement = postgresql.insert(table)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=keys, set_={n: table.c[n] + statement.excluded[n] for n in added}),
        [dict(zip(keys + added, row)) for row in rows])


@functools.lru_cache(maxsize=4096)
def _items_json(items: tuple[str, ...]) -> str:
    return json.dumps(list(items), ensure_ascii=False)  # few distinct lists: cached


class NoticesView(View):
    """Notices (お知らせ, projections.notices): one row per notice entry. Residents' read marks
    are not part of it (they are not derived from the log), so a rebuild keeps them."""

    name = "notices"
    topics = (NOTICE_TOPIC, NOTICE_TOPIC)  # the base's two-topic shape; one kind here
    tables = (notice,)

    def write(self, session: Session, facts: Sequence[Any]) -> None:
        write_notices(session, [f for f in facts if isinstance(f, NoticeFact)])


VIEWS: tuple[type[View], ...] = (ResidentView, AuditView, NoticesView)
