"""The log's RFC 9162 Merkle tree over persisted nodes.

Every perfect subtree's root is stored when it completes (``append_nodes``), so a root or a proof
for any tree size needs only O(log n) stored hashes, read in one query, and never a scan of the
log. pymerkle supplies the tree algorithms (root folding, inclusion path layout); its storage
interface is backed here by a ``NodeReader`` instead of its own tables, because the nodes must be
written in the same database transaction as the events they commit to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable
from typing import Protocol

from pymerkle.core import BaseMerkleTree

NodeKey = tuple[int, int]  # (level, index at that level); level 0 holds the leaf hashes


class NodeReader(Protocol):
    def read_nodes(self, keys: Collection[NodeKey]) -> dict[NodeKey, bytes]:
        """Return the stored hash of every requested node (all of them must exist)."""
        ...


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d0}) = SHA-256(0x00 ‖ d0)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x01 ‖ MTH(left) ‖ MTH(right))."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def frontier_keys(size: int) -> list[NodeKey]:
    """Keys of the perfect subtrees that make up a tree of ``size`` leaves, highest level first."""
    return [(h, (size >> h) - 1) for h in range(size.bit_length() - 1, -1, -1) if size >> h & 1]


def append_nodes(
    size: int, frontier: dict[int, bytes], leaf_hashes: Iterable[bytes]
) -> list[tuple[int, int, bytes]]:
    """Interior nodes completed by appending ``leaf_hashes`` to a tree of ``size`` leaves.

    ``frontier`` maps level -> root of the perfect subtree at that level on the tree's right edge
    (see ``frontier_keys``); it is updated in place. Returns (level, index, hash) for levels ≥ 1.
    """
    created: list[tuple[int, int, bytes]] = []
    for digest in leaf_hashes:
        level, position = 0, size
        while position & 1:
            digest = node_hash(frontier.pop(level), digest)
            level += 1
            position >>= 1
            created.append((level, position, digest))
        frontier[level] = digest
        size += 1
    return created


class StoredTree(BaseMerkleTree):  # type: ignore[misc]
    """A read-only view of the stored tree at a fixed size, for roots and proofs."""

    def __init__(self, reader: NodeReader, size: int) -> None:
        self._reader = reader
        self._size = size
        self._nodes: dict[NodeKey, bytes] = {}
        self._collect: set[NodeKey] | None = None
        super().__init__("sha256", threshold=1, capacity=0)

    # pymerkle storage interface (indices counted from one there) --------------------------
    def _encode_entry(self, data: bytes) -> bytes:
        return data

    def _store_leaf(self, data: object, digest: bytes) -> int:
        raise TypeError("StoredTree is read-only: entries are appended by ledger.storage")

    def _get_leaf(self, index: int) -> bytes:
        return self._node((0, index - 1))

    def _get_leaves(self, offset: int, width: int) -> list[bytes]:
        return [self._node((0, i)) for i in range(offset, offset + width)]

    def _get_size(self) -> int:
        return self._size

    def _get_subroot(self, offset: int, width: int) -> bytes:
        level = width.bit_length() - 1
        return self._node((level, offset >> level))

    def _node(self, key: NodeKey) -> bytes:
        if self._collect is not None:
            self._collect.add(key)
            return b"\x00" * 32
        try:
            return self._nodes[key]
        except KeyError:
            self._nodes.update(self._reader.read_nodes([key]))
            return self._nodes[key]

    def _prefetched(self, compute: Callable[[], object]) -> None:
        """Run ``compute`` once to learn which nodes it reads, then read them in one query."""
        self._collect = set()
        try:
            compute()
        finally:
            wanted, self._collect = self._collect, None
        missing = wanted - self._nodes.keys()
        if missing:
            self._nodes.update(self._reader.read_nodes(missing))

    # RFC 9162 views -------------------------------------------------------------------------
    # Each view lists the perfect subtrees it needs (``range_keys``), reads them in one query
    # and folds them; pymerkle's own walk is kept for ``inclusion_proofs`` only.
    def _fold(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) from the stored roots of the perfect subtrees covering the range."""
        keys = range_keys(start, end)
        result = self._nodes[keys[-1]]
        for key in reversed(keys[:-1]):
            result = node_hash(self._nodes[key], result)
        return result

    def _read(self, ranges: Iterable[tuple[int, int]], extra: Iterable[NodeKey] = ()) -> None:
        wanted = {key for a, b in ranges for key in range_keys(a, b)}
        wanted.update(extra)
        missing = wanted - self._nodes.keys()
        if missing:
            self._nodes.update(self._reader.read_nodes(missing))

    def root(self, size: int | None = None) -> bytes:
        """MTH(D[0:size]) (RFC 9162 §2.1.1)."""
        size = self._size if size is None else size
        if size == 0:
            return hashlib.sha256(b"").digest()
        self._read([(0, size)])
        return self._fold(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1), leaf index counted from zero."""
        ranges = _inclusion_ranges(index, size)
        self._read(ranges)
        return [self._fold(a, b) for a, b in ranges]

    def inclusion_bundle(self, index: int, size: int) -> tuple[bytes, bytes, list[bytes]]:
        """(leaf hash, root, PATH(index, D[0:size])) from one read of storage."""
        ranges = _inclusion_ranges(index, size)
        self._read([*ranges, (0, size)], [(0, index)])
        return self._nodes[(0, index)], self._fold(0, size), [self._fold(a, b) for a, b in ranges]

    def inclusion_proofs(self, indices: Collection[int], size: int) -> dict[int, list[bytes]]:
        """PATH(i, D[0:size]) for each index, their nodes read in one query (a page of a
        resident's records is verified against one checkpoint)."""
        self._prefetched(lambda: [self._get_inclusion_path(i + 1, size) for i in indices])
        return {i: list(self._get_inclusion_path(i + 1, size)[1][1:]) for i in indices}

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """PROOF(old_size, D[0:new_size]) (RFC 9162 §2.1.4.1)."""
        ranges = _consistency_ranges(old_size, new_size)
        self._read(ranges)
        return [self._fold(a, b) for a, b in ranges]

    def consistency_bundle(self, old_size: int, new_size: int
                           ) -> tuple[bytes, bytes, list[bytes]]:
        """(old root, new root, PROOF(old_size, D[0:new_size])) from one read of storage."""
        ranges = _consistency_ranges(old_size, new_size)
        self._read([*ranges, (0, old_size), (0, new_size)])
        return (self._fold(0, old_size), self._fold(0, new_size),
                [self._fold(a, b) for a, b in ranges])


def range_keys(start: int, end: int) -> list[NodeKey]:
    """The perfect subtrees covering leaves [start, end), left to right: the largest aligned
    power of two first (RFC 9162's split), so folding them from the right gives MTH(D[start:end])
    for every range a root, inclusion path or consistency proof is made of."""
    keys: list[NodeKey] = []
    while start < end:
        level = (end - start).bit_length() - 1
        while start & ((1 << level) - 1):
            level -= 1
        keys.append((level, start >> level))
        start += 1 << level
    return keys


def _inclusion_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form PATH(m, D[0:n]) (RFC 9162 §2.1.3.1), bottom-up."""
    if not 0 <= m < n:
        raise ValueError(f"inclusion needs 0 <= index < size, got {m} and {n}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, n
    while end - start > 1:
        k = 1 << ((end - start - 1).bit_length() - 1)  # largest power of two < width
        if m < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    return ranges[::-1]


def _consistency_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form SUBPROOF(m, D[0:n], true), in the RFC's order.

    RFC 9162 §2.1.4.1, unrolled: descend while m < width; the subtree holding the old tree's
    right edge comes first (omitted when it is the whole old tree, b = true), then the siblings
    from the bottom up.
    """
    if not 0 < m <= n:
        raise ValueError(f"consistency needs 0 < old_size <= new_size, got {m} and {n}")
    if m == n:
        return []
    siblings: list[tuple[int, int]] = []
    start, width, known = 0, n, True  # known: b in the RFC (old subtree equals a known root)
    while m != width:
        k = 1 << ((width - 1).bit_length() - 1)  # largest power of two < width
        if m <= k:
            siblings.append((start + k, start + width))
            width = k
        else:
            siblings.append((start, start + k))
            start, m, width, known = start + k, m - k, width - k, False
    head = [] if known else [(start, start + width)]
    return head + siblings[::-1]
