"""Group commit for single appends (the sequencing pattern of Trillian and Tessera).

Each caller's statement waits while the current transaction commits; the next leader then
appends everything that queued up meanwhile in one transaction and one fsync. With one caller
there is no waiting at all; with many, throughput grows with concurrency instead of being capped
by one fsync per statement. Each statement is still accepted or refused on its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

R = TypeVar("R")

MAX_GROUP = 1000


class _Slot(Generic[R]):
    __slots__ = ("error", "event", "lead", "result", "submission")

    def __init__(self, submission: Any) -> None:
        self.submission = submission
        self.event = threading.Event()
        self.result: R | None = None
        self.error: BaseException | None = None
        self.lead = False


class GroupCommit(Generic[R]):
    def __init__(self, run: Callable[[Sequence[Any]], list[R]], max_group: int = MAX_GROUP) -> None:
        self._run = run
        self._max = max_group
        self._lock = threading.Lock()
        self._queue: list[_Slot[R]] = []
        self._busy = False

    def submit(self, submission: Any) -> R:
        slot: _Slot[R] = _Slot(submission)
        with self._lock:
            self._queue.append(slot)
            lead = not self._busy
            self._busy = True
        if not lead:
            slot.event.wait()
            if not slot.lead:
                return self._outcome(slot)
        self._lead()
        return self._outcome(slot)

    def _lead(self) -> None:
        with self._lock:
            group, self._queue = self._queue[: self._max], self._queue[self._max:]
        try:
            results = self._run([s.submission for s in group])
            for slot, result in zip(group, results):
                slot.result = result
        except BaseException as exc:  # noqa: BLE001 -- the transaction failed, so did each statement
            # in it: every waiter re-raises this error
            for slot in group:
                slot.error = exc
        with self._lock:
            if self._queue:
                successor = self._queue[0]
                successor.lead = True
                successor.event.set()
            else:
                self._busy = False
        for slot in group:
            slot.event.set()

    @staticmethod
    def _outcome(slot: _Slot[R]) -> R:
        if slot.error is not None:
            raise slot.error
        assert slot.result is not None
        return slot.result
