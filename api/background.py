"""Appending from request threads, and the per-worker housekeeping thread.

Single statements go through ``Ledger.append``, whose group commit lets concurrent requests
share one transaction and one fsync while each statement is accepted or refused on its own. A
batch request is one ``append_batch``: all or nothing, and a checkpoint is signed right after it.

The housekeeper signs a checkpoint whenever the log grew and the last one is older than
``KIROKU_CHECKPOINT_INTERVAL`` (the documented bound on how long a receipt waits for its
inclusion proof), and brings the projections up to date every ``KIROKU_PROJECTION_INTERVAL``.
``kiroku serve`` runs it in a process of its own (``housekeeping_main``), so that catching the
views up after a burst of appends never holds a request worker's interpreter lock; an app made
with ``create_app`` alone runs it as a thread. The ledger signs nothing new when the tree did
not grow, so more than one housekeeper is harmless.

With witnesses configured (``KIROKU_WITNESSES``), each signed checkpoint also wakes the witness
threads (api/witnessing.py), which run beside the housekeeper and never block it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from api import metrics
from api.settings import ApiSettings
from api.witnessing import Witnessing
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
                 catch_up: Callable[[Ledger], int] | None,
                 witnessing: Witnessing | None = None) -> None:
        self.ledger = ledger
        self.witnessing = witnessing
        self.checkpoint_interval = checkpoint_interval
        self.projection_interval = projection_interval
        self.catch_up = catch_up
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._signing = threading.Lock()
        self._last_projection = 0.0

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self.run, name="kiroku-housekeeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def run(self) -> None:
        """Keep house in the calling thread until ``stop()`` (which may come from a signal)."""
        tick = min(self.checkpoint_interval, self.projection_interval)
        if self.witnessing is not None:
            self.witnessing.start()
        try:
            self._loop(tick)
        finally:
            if self.witnessing is not None:
                self.witnessing.stop()

    def _loop(self, tick: float) -> None:
        while not self._stopping.wait(tick):
            try:
                self.checkpoint_if_behind()
                self.project()
            except Exception:  # never let the thread die; the next tick retries
                log.exception("housekeeping failed")

    def checkpoint_now(self) -> None:
        with self._signing:
            self.ledger.checkpoint()
        if self.witnessing is not None:
            self.witnessing.notify()

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


def housekeeping_main() -> None:
    """Entry point of ``kiroku serve``'s housekeeping process: run until SIGTERM or SIGINT."""
    import signal

    from api.app import open_ledger
    from api.services import Projections

    exit_with_parent()
    _name_process(b"kiroku-housekeeper")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     kiroku housekeeper: %(message)s")
    settings = ApiSettings()
    ledger = open_ledger(settings)
    keeper = Housekeeper(ledger, checkpoint_interval=settings.checkpoint_interval,
                         projection_interval=settings.projection_interval,
                         catch_up=Projections.load(ledger).catch_up,
                         witnessing=witnessing_for(settings, ledger))
    signal.signal(signal.SIGTERM, lambda *_: keeper.stop())
    signal.signal(signal.SIGINT, lambda *_: keeper.stop())
    log.info("started (checkpoints every %.1f s, views every %.1f s)",
             settings.checkpoint_interval, settings.projection_interval)
    # The alert sender (api/alerts.py) in a thread of this process: its network waits must not
    # hold up checkpoints, and it stops with the housekeeper.
    from api.alerts import Sender

    sender, alerts_stopping = Sender(ledger), threading.Event()
    alerts = threading.Thread(target=sender.follow, args=(alerts_stopping,),
                              name="kiroku-alerts", daemon=True)
    alerts.start()
    try:
        keeper.run()
    finally:
        alerts_stopping.set()
        # A sender cut off mid-delivery loses nothing (its claims fall due again when their
        # lease ends, with the same delivery ids): a stop does not wait long for it.
        alerts.join(timeout=5)
        if not alerts.is_alive():
            sender.close()
        ledger.close()


def witnessing_for(settings: ApiSettings, ledger: Ledger) -> Witnessing | None:
    """The witness threads for the configured witnesses (None without KIROKU_WITNESSES)."""
    witnesses = settings.witness_list()
    if not witnesses:
        return None
    return Witnessing(ledger, witnesses, settings.quorum, timeout=settings.witness_timeout)


def _name_process(name: bytes) -> None:
    """Show ``name`` for this process in ps and top (Linux prctl PR_SET_NAME; elsewhere no-op)."""
    _prctl(15, name[:15])


def exit_with_parent() -> None:
    """Have the kernel send SIGTERM when the serving parent dies (Linux PR_SET_PDEATHSIG), so a
    killed ``kiroku serve`` leaves no orphaned workers holding the port or the database."""
    import signal

    _prctl(1, int(signal.SIGTERM))


def _prctl(option: int, value: bytes | int) -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        argument = ctypes.c_char_p(value) if isinstance(value, bytes) else ctypes.c_ulong(value)
        libc.prctl(option, argument, 0, 0, 0)
    except (OSError, AttributeError):
        pass
