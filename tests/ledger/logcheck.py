"""Independent whole-log check used by storage tests: recomputes everything from the leaves."""

from __future__ import annotations

import base64
import hashlib
import json

from sqlalchemy import select

from ledger.schema import log_entry
from ledger.storage import LogRecorder


def reference_root(hashes: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, written from the RFC's recursive definition."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(
        b"\x01" + reference_root(hashes[:k]) + reference_root(hashes[k:])
    ).digest()


def assert_log_whole(recorder: LogRecorder) -> None:
    with recorder.transaction(commit=False) as session:
        rows = session.execute(
            select(log_entry.c.idx, log_entry.c.notification_id, log_entry.c.leaf,
                   log_entry.c.leaf_hash).order_by(log_entry.c.idx)
        ).all()
        events = session.execute(
            select(recorder.events_record_cls.__table__.c.id)
        ).scalars().all()
    assert sorted(int(r[1]) for r in rows) == sorted(int(e) for e in events), "event without entry"
    prev = b"\x00" * 32
    hashes = []
    for position, (idx, _nid, leaf, digest) in enumerate(rows):
        leaf = bytes(leaf)
        assert int(idx) == position, f"index gap at {position}"
        assert hashlib.sha256(b"\x00" + leaf).digest() == bytes(digest)
        body = json.loads(leaf)
        assert body["index"] == position
        assert base64.b64decode(body["prev"]) == prev, f"chain broken at {position}"
        prev = bytes(digest)
        hashes.append(prev)
    from ledger.merkle import StoredTree

    if hashes:
        assert StoredTree(recorder, len(hashes)).root() == reference_root(hashes)
