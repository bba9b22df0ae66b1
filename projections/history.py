"""``--as-of INDEX|TIME``: naming a point of the log's history.

An as-of point is a log index, inclusive: the views as they stood once that entry was applied.
A time is turned into the last index logged at or before it, by binary search over the leaves'
``logged_at`` (entries are logged in index order; concurrent writers stamp ``logged_at`` a moment
before they take the write lock, so around the boundary two entries may be a few milliseconds out
of order — the search then picks one of them).
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select

from ledger.application import Ledger
from ledger.encoding import parse_time
from ledger.errors import LedgerError
from ledger.schema import log_entry
from projections.errors import InvalidQuery
from projections.store import ViewStore


def resolve_as_of(ledger: Ledger, text: str) -> int:
    """The log index that ``text`` (an index, or an RFC 3339 time) names."""
    size = ledger.tree_size()
    if text.strip().isdigit():
        index = int(text)
        if index >= size:
            raise InvalidQuery(f"index {index} is beyond the log's last entry ({size - 1})")
        return index
    try:
        moment = parse_time(text.strip(), field="as-of")
    except LedgerError:
        raise InvalidQuery(
            f"--as-of takes a log index or an RFC 3339 time like 2026-04-01T00:00:00Z, got {text!r}"
        ) from None
    return index_at(ledger, moment, size)


def index_at(ledger: Ledger, moment: datetime, size: int) -> int:
    low, high = 0, size  # invariant: entries < low are at or before moment, >= high after it
    while low < high:
        middle = (low + high) // 2
        leaf, _ = ledger.get_leaf(middle)
        if parse_time(json.loads(leaf)["logged_at"], field="logged_at") <= moment:
            low = middle + 1
        else:
            high = middle
    if low == 0:
        raise InvalidQuery(f"the log has no entry logged at or before {moment.isoformat()}")
    return low - 1


def notification_of(store: ViewStore, index: int) -> int:
    """The notification id of the entry at log ``index`` (what tracking positions count)."""
    with store.read() as session:
        found = session.execute(
            select(log_entry.c.notification_id).where(log_entry.c.idx == index)
        ).scalar()
    if found is None:
        raise InvalidQuery(f"no log entry at index {index}")
    return int(found)
