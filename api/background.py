"""Appending from request threads, and the per-worker housekeeping thread.

Single statements go through ``Ledger.append``, whose group commit lets concurrent requests
share one transaction and one fsync while each statement is accepted or refused on its own. A
batch request is one ``append_batch``: all or nothing, and a checkpoint is signed right after it.

The housekeeping thread signs a checkpoint whenever the log grew and the last one is older than
``KIROKU_CHECKPOINT_INTERVAL`` (the documented bound on how long a receipt waits for its
inclusion proof), and brings the projections up to date every ``KIROKU_PROJECTION_INTERVAL``.
With several workers each runs one; the ledger signs nothing new when the tree did not grow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from api import metrics
from ledger.application import Ledger, Receipt
from ledger.errors import BatchRejected, StatementRejected

log = logging.getLogger("kiroku.api")


def count_rejections(error: StatementRejected) -> None:
    if isinstance(error, BatchRejected):
        for _, each in error.errors:
            metrics.REJECTIONS.labels(each.code).inc()
    else:
        metrics.REJECTIONS.labels(error.code).inc()


class Appender:
    def __init__(self, ledger: Ledger, housekeeper: Housekeeper) -> None:
        self.ledger = ledger
        self.housekeeper = housekeeper

    def one(self, submission: Any) -> Receipt:
        started = time.perf_counter()
        try:
            receipt = self.ledger.append(submission)
        except StatementRejected as exc:
            count_rejections(exc)
            raise
        metrics.APPENDS.labels("single").inc()
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        return receipt

    def batch(self, submissions: Sequence[Any]) -> list[Receipt]:
        started = time.perf_counter()
        try:
            receipts = self.ledger.append_batch(submissions)
        except StatementRejected as exc:
            count_rejections(exc)
            raise
        metrics.APPENDS.labels("batch").inc(len(receipts))
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        self.housekeeper.checkpoint_now()
        return receipts


class Housekeeper:
    def __init__(self, ledger: Ledger, *, checkpoint_interval: float, projection_interval: float,
                 catch_up: Callable[[Ledger], int] | None) -> None:
        self.ledger = ledger
        self.checkpoint_interval = checkpoint_interval
        self.projection_interval = projection_interval
        self.catch_up = catch_up
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._signing = threading.Lock()
        self._last_projection = 0.0

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="kiroku-housekeeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        tick = min(self.checkpoint_interval, self.projection_interval)
        while not self._stopping.wait(tick):
            try:
                self.checkpoint_if_behind()
                self.project()
            except Exception:  # never let the thread die; the next tick retries
                log.exception("housekeeping failed")

    def checkpoint_now(self) -> None:
        with self._signing:
            self.ledger.checkpoint()

    def checkpoint_if_behind(self) -> None:
        latest = self.ledger.latest_checkpoint()
        if self.ledger.tree_size() > (latest.size if latest is not None else 0):
            self.checkpoint_now()

    def project(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.catch_up is None or (not force and
                                     now - self._last_projection < self.projection_interval):
            return
        self._last_projection = now
        self.catch_up(self.ledger)
