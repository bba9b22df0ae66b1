"""Following the ledger's notification log and keeping every view exactly once.

Why a polling loop rather than eventsourcing's ``ProjectionRunner``: the library runner rides on
``recorder.subscribe()``, which eventsourcing-sqlalchemy implements with PostgreSQL LISTEN/NOTIFY
only (SQLite, our default store, raises NotImplementedError), and it hands the projection one
event per transaction, which cannot reach 20,000 entries a second. This runner uses the library's
pieces instead — ``Projection`` (projections.views), ``Tracking`` and a ``TrackingRecorder``
(projections.store) — and reads the log in batches: one read of up to ``batch`` notifications
after the lowest view position, then one transaction in which each behind view writes its rows
(one ``executemany`` per table) and advances its tracking record by compare-and-set.

Guarantees: exactly once (rows and position commit together; a lost race rolls back), resumable
(a crash loses only an uncommitted batch), and ordered (ledger writers commit notification ids in
increasing order under their write lock, so a reader never sees id n+1 without id n).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking
from sqlalchemy import func, select

from ledger.application import Ledger
from ledger.encoding import now_utc, parse_time
from ledger.schema import log_entry
from projections.decode import PROVISION_TOPIC, ProvisionFact, decode_states
from projections.flags import FLAGGED_TOPIC, FlagFact, decode_flag
from projections.notices import NOTICE_TOPIC, NoticeFact, decode_notices
from projections.store import ViewStore
from projections.views import VIEWS, View

log = logging.getLogger(__name__)

BATCH = 10_000
APPLICATION = Ledger.name


@dataclass(frozen=True)
class Batch:
    """What one step read: the facts, and the position every view reaches by applying them."""

    facts: list[ProvisionFact | FlagFact | NoticeFact]
    after: int
    position: int


class Runner:
    """The views of one ledger database and the loop that keeps them up to date."""

    def __init__(self, ledger: Ledger, store: ViewStore | None = None, *, batch: int = BATCH
                 ) -> None:
        self.store = store or ViewStore(ledger.settings.database_url)
        self.batch = batch
        self.views: list[View] = [cls(self.store.tracking[cls.name]) for cls in VIEWS]
        self._events = ledger.log.events_record_cls.__table__

    def close(self) -> None:
        self.store.close()

    # Positions -----------------------------------------------------------------------------
    def positions(self) -> dict[str, int]:
        """Each view's last processed notification id (0 when nothing was processed)."""
        self.store.check_schema()
        return {v.name: v.view.max_tracking_id(APPLICATION) or 0 for v in self.views}

    # Processing ----------------------------------------------------------------------------
    def read(self, after: int, stop: int | None = None) -> Batch:
        """Up to ``batch`` provision facts with notification id in (after, stop]."""
        events = self._events
        with self.store.read() as session:
            top = session.execute(select(func.max(events.c.id))).scalar() or 0
            if stop is not None:
                top = min(top, stop)
            if top <= after:
                return Batch([], after, after)
            rows = session.execute(
                select(events.c.id, events.c.originator_id, events.c.state, log_entry.c.idx,
                       events.c.topic)
                .join(log_entry, log_entry.c.notification_id == events.c.id)
                .where(events.c.id > after, events.c.id <= top,
                       events.c.topic.in_((PROVISION_TOPIC, FLAGGED_TOPIC, NOTICE_TOPIC)))
                .order_by(events.c.id)
                .limit(self.batch)
            ).all()
            # In the same read: version-2 payloads resolve through the link-code registry.
            facts: list[ProvisionFact | FlagFact | NoticeFact] = list(decode_states(session, [
                (int(row.id), int(row.idx), row.originator_id, bytes(row.state))
                for row in rows if row.topic == PROVISION_TOPIC]))
            # Notices (projections.notices): individual targets resolve in the same read.
            notices = decode_notices(session, [
                (int(row.id), int(row.idx), row.originator_id, bytes(row.state))
                for row in rows if row.topic == NOTICE_TOPIC])
        # Flag entries (projections.flags) go in log order among the provisions.
        flagged = [decode_flag(int(r.id), int(r.idx), bytes(r.state))
                   for r in rows if r.topic == FLAGGED_TOPIC]
        if any(flagged) or notices:
            facts = sorted([*facts, *(f for f in flagged if f is not None), *notices],
                           key=lambda f: f.notification_id)
        # A short read covers everything up to ``top``, other kinds of entry included.
        position = top if len(rows) < self.batch else int(rows[-1].id)
        return Batch(facts, after, position)

    def step(self, stop: int | None = None) -> int:
        """Read one batch and apply it to every view behind. Returns notifications advanced over
        (by the view that advanced most); 0 when every view is current or another runner won."""
        positions = self.positions()
        batch = self.read(min(positions.values()), stop)
        behind = [v for v in self.views if positions[v.name] < batch.position]
        if not behind:
            return 0
        try:
            with self.store.write() as session:
                for view in behind:
                    since = positions[view.name]
                    view.write(session, [f for f in batch.facts if f.notification_id > since])
                    view.view._insert_tracking(session, Tracking(APPLICATION, batch.position))
        except IntegrityError:
            # Another runner committed this batch first; re-read the positions and go on.
            log.info("another runner advanced the views; retrying from the new position")
            return 0
        return batch.position - min(positions[v.name] for v in behind)

    def catch_up(self, stop: int | None = None,
                 progress: Callable[[int], None] | None = None) -> int:
        """Process everything committed so far (or up to notification ``stop``).

        Returns the number of log entries the most-behind view moved over."""
        applied = 0
        start = self.positions()
        while True:
            advanced = self.step(stop)
            if advanced == 0 and self._current(stop):
                break
            if progress is not None and advanced:
                progress(advanced)
        end = self.positions()
        low = min(start.values())
        with self.store.read() as session:
            applied = session.execute(
                select(func.count()).select_from(log_entry)
                .where(log_entry.c.notification_id > low,
                       log_entry.c.notification_id <= min(end.values()))
            ).scalar() or 0
        return int(applied)

    def _current(self, stop: int | None) -> bool:
        positions = self.positions()
        batch = self.read(min(positions.values()), stop)
        return batch.position <= min(positions.values())

    def follow(self, stopping: threading.Event, interval: float = 0.1,
               on_batch: Callable[[int], None] | None = None) -> None:
        """Keep the views current until ``stopping`` is set (``kiroku projections run``)."""
        while not stopping.is_set():
            advanced = self.step()
            if advanced:
                if on_batch is not None:
                    on_batch(advanced)
            else:
                stopping.wait(interval)

    # Rebuild -------------------------------------------------------------------------------
    def digests(self) -> dict[str, str]:
        with self.store.read() as session:
            return {v.name: v.digest(session) for v in self.views}

    def clear(self) -> None:
        with self.store.write() as session:
            for view in self.views:
                view.clear(session)

    def rebuild(self, stop: int | None = None,
                progress: Callable[[int], None] | None = None) -> RebuildResult:
        """Rebuild every view from index 0.

        Without ``stop``: first bring the incremental views to the current head and take their
        digests, then clear and replay to that same position, and compare digests; entries
        appended meanwhile are applied afterwards. With ``stop`` (a notification id): replay only
        up to it, so the views show what they showed then (``--as-of``); no comparison.
        """
        before: dict[str, str] | None = None
        if stop is None:
            self.catch_up()
            position = min(self.positions().values())
            before = self.digests()
            target = position
        else:
            target = stop
        self.clear()
        started = time.perf_counter()
        self.catch_up(stop=target, progress=progress)
        seconds = time.perf_counter() - started
        after = self.digests()
        with self.store.read() as session:
            entries = session.execute(
                select(func.count()).select_from(log_entry)
                .where(log_entry.c.notification_id <= target)
            ).scalar() or 0
        if stop is None:
            self.catch_up()
        return RebuildResult(before, after, int(entries), seconds)

    def reproject(self, progress: Callable[[int], None] | None = None) -> int:
        """Clear every view and replay the whole log, without comparing with what was there.

        For after a retention erasure: erased provisions leave the views (there is nothing left
        to show or count), so the views differ from before by design. Returns entries applied.
        """
        self.clear()
        return self.catch_up(progress=progress)

    # Status --------------------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        """Each view's position (notification id and log index) and its lag behind the log."""
        positions = self.positions()
        out = []
        with self.store.read() as session:
            size = session.execute(select(func.count()).select_from(log_entry)).scalar() or 0
            for view in self.views:
                position = positions[view.name]
                index = session.execute(
                    select(func.max(log_entry.c.idx))
                    .where(log_entry.c.notification_id <= position)
                ).scalar()
                lag = session.execute(
                    select(func.count()).select_from(log_entry)
                    .where(log_entry.c.notification_id > position)
                ).scalar() or 0
                oldest = session.execute(
                    select(log_entry.c.leaf).where(log_entry.c.notification_id > position)
                    .order_by(log_entry.c.notification_id).limit(1)
                ).scalar()
                lag_seconds = 0.0
                if oldest is not None:
                    logged = parse_time(json.loads(bytes(oldest))["logged_at"], field="logged_at")
                    lag_seconds = max(0.0, (now_utc() - logged).total_seconds())
                out.append({"name": view.name, "position": position,
                            "index": None if index is None else int(index),
                            "tree_size": int(size), "lag": int(lag),
                            "lag_seconds": round(lag_seconds, 3)})
        return out


@dataclass(frozen=True)
class RebuildResult:
    before: dict[str, str] | None
    after: dict[str, str]
    entries: int
    seconds: float

    @property
    def identical(self) -> bool | None:
        return None if self.before is None else self.before == self.after

    def mismatched(self) -> Sequence[str]:
        if self.before is None:
            return []
        return [name for name, digest in self.after.items() if self.before.get(name) != digest]


# Module-level API for the service: one Runner per open Ledger, closed with it. -------------
_runners: weakref.WeakKeyDictionary[Ledger, Runner] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def runner_for(ledger: Ledger) -> Runner:
    with _lock:
        runner = _runners.get(ledger)
        if runner is None:
            runner = Runner(ledger)
            _runners[ledger] = runner
            weakref.finalize(ledger, runner.close)
        return runner


def catch_up(ledger: Ledger) -> int:
    """Process every entry committed so far into every view; return how many were applied."""
    return runner_for(ledger).catch_up()


def status(ledger: Ledger) -> list[dict[str, Any]]:
    """[{"name", "position", "index", "tree_size", "lag", "lag_seconds"}] per view."""
    return runner_for(ledger).status()
