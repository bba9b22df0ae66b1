"""Full check of stored data (like Tessera/Sunlight's fsck): rebuild the chain and the tree from
every leaf and compare with the stored leaf hashes, subtree roots and signed checkpoints."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

from sqlalchemy import select

from ledger.application import Ledger
from ledger.merkle import append_nodes, leaf_hash
from ledger.schema import log_entry, merkle_node
from ledger.storage import ZERO_HASH

_CHUNK = 5000


def fsck(ledger: Ledger, progress: Callable[[int], None] | None = None) -> list[str]:
    """Return a list of problems (empty when the log is intact). Memory stays O(log n + chunk)."""
    problems: list[str] = []
    size = ledger.tree_size()
    frontier: dict[int, bytes] = {}
    prev = ZERO_HASH
    roots_at: dict[int, bytes] = {}
    wanted_sizes = {c["tree_size"] for c in ledger.list_checkpoints(limit=10_000)}
    for low in range(0, size, _CHUNK):
        with ledger.log.transaction(commit=False) as session:
            rows = session.execute(
                select(log_entry.c.idx, log_entry.c.leaf, log_entry.c.leaf_hash)
                .where(log_entry.c.idx >= low, log_entry.c.idx < low + _CHUNK)
                .order_by(log_entry.c.idx)
            ).all()
            computed_nodes = []
            for expected, row in enumerate(rows, start=low):
                leaf = bytes(row.leaf)
                digest = leaf_hash(leaf)
                if int(row.idx) != expected:
                    problems.append(f"index {expected}: entry missing (found {row.idx})")
                    return problems
                if digest != bytes(row.leaf_hash):
                    problems.append(f"index {expected}: stored leaf hash does not match leaf bytes")
                body = json.loads(leaf)
                if body.get("index") != expected:
                    problems.append(f"index {expected}: leaf names index {body.get('index')}")
                if base64.b64decode(body.get("prev", "")) != prev:
                    problems.append(f"index {expected}: hash chain broken")
                prev = digest
                computed_nodes.extend(append_nodes(expected, frontier, [digest]))
                if expected + 1 in wanted_sizes:
                    roots_at[expected + 1] = _fold(frontier)
            for start in range(0, len(computed_nodes), 500):
                part = computed_nodes[start:start + 500]
                stored = {
                    (int(r.level), int(r.idx)): bytes(r.hash)
                    for r in session.execute(
                        select(merkle_node).where(merkle_node.c.level.in_({p[0] for p in part}),
                                                  merkle_node.c.idx.in_({p[1] for p in part}))
                    )
                }
                for level, idx, digest in part:
                    if stored.get((level, idx)) != digest:
                        problems.append(f"stored subtree ({level}, {idx}) differs from the leaves")
        if progress is not None:
            progress(len(rows))
        if problems:
            return problems
    for cp in ledger.list_checkpoints(limit=10_000):
        root = roots_at.get(cp["tree_size"])
        if cp["tree_size"] > size:
            problems.append(f"checkpoint at size {cp['tree_size']} is beyond the log ({size})")
        elif cp["tree_size"] and root is not None and base64.b64encode(root).decode() != cp["root_hash"]:
            problems.append(f"checkpoint at size {cp['tree_size']}: leaves give another root")
    return problems


def _fold(frontier: dict[int, bytes]) -> bytes:
    """Root of the tree whose right-edge perfect subtrees are ``frontier`` (RFC 9162 §2.1.1)."""
    import hashlib

    root: bytes | None = None
    for level in sorted(frontier):
        root = frontier[level] if root is None else hashlib.sha256(
            b"\x01" + frontier[level] + root).digest()
    return root if root is not None else hashlib.sha256(b"").digest()
