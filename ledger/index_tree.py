"""The completeness index's sparse Merkle tree (docs/completeness.md "The tree").

256-bit keys, read most significant bit first; a subtree's hash depends only on the leaves
under it, whatever its depth:

- no leaf: ``EMPTY`` (32 zero bytes);
- one leaf (key k, value v): ``SHA-256(0x00 ‖ k ‖ v)`` — the leaf sits at the highest position
  where it is alone, so a path is about log2(residents) long rather than 256;
- two or more: ``SHA-256(0x01 ‖ left ‖ right)`` (RFC 9162 §2.1.1's domain separation).

A position is empty, a leaf or an inner node, never two of these (SHA-256 outputs neither are
all zeros nor have two preimage forms), so each key has at most one value under a root.

Storage. The stored positions are the non-empty ones whose parent is an inner node, and the
root. They are kept in *strata* of ``STRATUM`` levels, one row per stratum (as tlog-tiles
group a Merkle tree's levels): stratum s under the 8s-bit prefix q holds every stored position
at depths 8s+1 … 8s+8 below q (the root stratum holds the root too). A position's sibling is
then always in its own stratum, and a stratum exists only below an inner node at depth 8s, so
a leaf alone at a stratum's edge costs no row of its own. A batch update reads and rewrites a
few hundred rows instead of a row per position: with 20,000 residents a path crosses 2 or 3
strata, where it crossed ~15 positions and their siblings.

In memory a position is its heap number ``(1 << depth) | prefix`` (the root 1, children 2p and
2p+1, the sibling p ^ 1) and a node is bytes: the hash, followed by the key for a leaf. Ints and
bytes are neither hashed as tuples nor tracked by the garbage collector, which an update
creating tens of thousands of nodes would otherwise spend a fifth of its time on.

A batch of changed leaves is applied in three steps: read the strata on the changed paths
stratum level by stratum level (one query per level), recompute in memory, then write only the
strata whose content changed.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from operator import itemgetter

EMPTY = b"\x00" * 32
KEY_BITS = 256
STRATUM = 8  # levels per stored row; a stratum's prefix is then whole bytes of the key
_sha256 = hashlib.sha256
_LEAF_FLAG = 0x80
_INNER = b"\x01"
_first = itemgetter(0)

#: A stratum is named by the position at its top (depth 8s), the root stratum by the root (1).
Strata = dict[int, dict[int, bytes]]
#: Reads stored strata: {row id: encoded content} for the row ids given (absent ids left out).
StratumReader = Callable[[Collection[bytes]], dict[bytes, bytes]]


def leaf_hash(key: bytes, value: bytes) -> bytes:
    return _sha256(b"\x00" + key + value).digest()


def inner_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(_INNER + left + right).digest()


def bit(key: bytes, depth: int) -> int:
    return (key[depth >> 3] >> (7 - (depth & 7))) & 1


def compact_root(leaves: dict[bytes, bytes]) -> bytes:
    """The root over ``{key: value}`` built from scratch, by the plain recursive definition
    (tests compare it with the incrementally kept one)."""
    items = sorted((k, leaf_hash(k, v)) for k, v in leaves.items())
    return _subtree(items, 0)


def _subtree(items: list[tuple[bytes, bytes]], depth: int) -> bytes:
    if not items:
        return EMPTY
    if len(items) == 1:
        return items[0][1]
    split = next((i for i, (k, _) in enumerate(items) if bit(k, depth)), len(items))
    return inner_hash(_subtree(items[:split], depth + 1), _subtree(items[split:], depth + 1))


# Strata ------------------------------------------------------------------------------------
def stratum_of(position: int) -> int:
    depth = position.bit_length() - 1
    if depth == 0:
        return 1
    return position >> ((depth - 1) % STRATUM + 1)


def row_id(stratum: int) -> bytes:
    """The stratum's row key: its level s (one byte) ‖ its prefix (s whole bytes)."""
    level = (stratum.bit_length() - 1) // STRATUM
    return bytes([level]) + (stratum ^ (1 << level * STRATUM)).to_bytes(level, "big")


def encode_stratum(stratum: int, nodes: dict[int, bytes]) -> bytes:
    """Per position (in no particular order): one byte (depth below the stratum's top, 1…8, 0
    for the root; 0x80 for a leaf), one byte (the position's bits below the stratum's top),
    the hash, and a leaf's key."""
    base = stratum.bit_length() - 1
    out = bytearray()
    for position, node in nodes.items():
        rel = position.bit_length() - 1 - base
        out.append(rel | (_LEAF_FLAG if len(node) > 32 else 0))
        out.append(position & ((1 << rel) - 1))
        out += node
    return bytes(out)


def decode_stratum(stratum: int, data: bytes) -> dict[int, bytes]:
    nodes: dict[int, bytes] = {}
    at, end = 0, len(data)
    while at < end:
        head = data[at]
        rel = head & ~_LEAF_FLAG
        step = 66 if head & _LEAF_FLAG else 34
        nodes[(stratum << rel) | data[at + 1]] = data[at + 2:at + step]
        at += step
    return nodes


#: Strata levels kept between updates (``StoredTree.top``): at most 1 + 256 rows, which every
#: update of more than a few hundred keys reads and rewrites, and which hold most of the
#: positions an update decodes; the levels below are read per update.
TOP_LEVELS = 2
_TOP_BOUND = 1 << TOP_LEVELS * STRATUM  # strata named below this are in the top levels


class StoredTree:
    """The strata read so far through ``read``; a stratum not stored reads as empty.

    ``known`` are strata already read (``top()`` of an earlier update over the same stored
    tree); the caller vouches that they are current."""

    def __init__(self, read: StratumReader, known: Strata | None = None) -> None:
        self._read = read
        self.strata: Strata = {}
        self.stored: set[int] = set()  # strata that have a row
        self.nodes: dict[int, bytes] = {}
        for stratum, content in (known or {}).items():
            self.strata[stratum] = content
            if content:  # a row is written for every non-empty stratum and only for those
                self.stored.add(stratum)
            self.nodes.update(content)

    def top(self) -> Strata:
        """The strata of the top ``TOP_LEVELS`` levels read or written so far."""
        return {s: content for s, content in self.strata.items() if s < _TOP_BOUND}

    def load(self, strata: Iterable[int]) -> None:
        wanted = {s: row_id(s) for s in strata if s not in self.strata}
        if not wanted:
            return
        found = self._read(list(wanted.values()))
        for stratum, rid in wanted.items():
            data = found.get(rid)
            content = decode_stratum(stratum, data) if data else {}
            if data is not None:
                self.stored.add(stratum)
            self.strata[stratum] = content
            self.nodes.update(content)

    def get(self, position: int) -> bytes | None:
        node = self.nodes.get(position)
        if node is None:
            stratum = stratum_of(position)
            if stratum not in self.strata:  # not prefetched: read it alone
                self.load([stratum])
                node = self.nodes.get(position)
        return node


# Updating ----------------------------------------------------------------------------------
@dataclass
class Rows:
    """Strata rows to write after an update: ``insert`` and ``update`` ({row id: content}),
    ``delete`` (row ids of strata left empty)."""

    insert: dict[bytes, bytes]
    update: dict[bytes, bytes]
    delete: list[bytes]


_Item = tuple[int, bytes]  # (key as an int, new leaf node: leaf hash ‖ key, or b"" if removed)


class TreeUpdate:
    """Apply ``{key: new leaf hash or None (removed)}`` to the stored tree read by ``read``.

    The new positions go straight into the strata's content (``tree.strata``) while
    ``tree.nodes`` keeps the tree as read, which is what the update reads from."""

    def __init__(self, read: StratumReader, known: Strata | None = None) -> None:
        self.tree = StoredTree(read, known)
        self._dirty: set[int] = set()
        # Bound once: the recursion below runs some 20,000 times per checkpoint.
        self._nodes, self._strata, self._get = self.tree.nodes, self.tree.strata, self.tree.get

    def apply(self, updates: dict[bytes, bytes | None]) -> bytes:
        """Returns the new root; ``rows()`` then gives the strata to write."""
        if not updates:
            root = self.tree.get(1)
            return root[:32] if root is not None else EMPTY
        items = sorted((int.from_bytes(k, "big"), h + k if h is not None else b"")
                       for k, h in updates.items())
        self._prefetch(items)
        node = self._update(1, 0, 1, items)
        content = self.tree.strata[1]
        if content.get(1) != node:
            self._dirty.add(1)
            if node is None:
                del content[1]
            else:
                content[1] = node
        return node[:32] if node is not None else EMPTY

    def rows(self) -> Rows:
        """The changed strata, encoded."""
        tree = self.tree
        rows = Rows({}, {}, [])
        for stratum in self._dirty:
            content = tree.strata[stratum]
            rid = row_id(stratum)
            if stratum not in tree.stored:
                if content:
                    # A plain INSERT: were a row there after all, the write fails loudly
                    # instead of replacing it (see ``_join``).
                    rows.insert[rid] = encode_stratum(stratum, content)
            elif content:
                rows.update[rid] = encode_stratum(stratum, content)
            else:
                rows.delete.append(rid)
        return rows

    def _prefetch(self, items: list[_Item]) -> None:
        """Read, a stratum level at a time, every stratum the update will look at: those on the
        changed keys' paths below an inner node (siblings share their stratum)."""
        tree = self.tree
        tree.load([1])
        nodes = tree.nodes
        for level in range(1, KEY_BITS // STRATUM):
            depth = level * STRATUM
            shift, mark = KEY_BITS - depth, 1 << depth
            wanted = []
            for top in {mark | (ik >> shift) for ik, _ in items}:
                node = nodes.get(top)
                if node is not None and len(node) == 32:
                    wanted.append(top)
            if not wanted:
                return
            tree.load(wanted)

    def _update(self, position: int, depth: int, here: int, items: list[_Item]
                ) -> bytes | None:
        """The new node at ``position`` (in stratum ``here``) for the sorted ``items`` below."""
        node = self._nodes.get(position)
        if node is None and here not in self._strata:
            node = self._get(position)  # not prefetched: read its stratum alone
        if node is None or len(node) > 32:
            leaves = [item for item in items if item[1]]
            if node is not None:
                old = int.from_bytes(node[32:], "big")
                if all(ik != old for ik, _ in items):
                    leaves.append((old, node))
                    leaves.sort()
            return self._build(position, depth, here, leaves)
        child = position << 1
        below = position if depth % STRATUM == 0 else here  # the children's stratum
        split = bisect_left(items, ((child | 1) ^ (2 << depth)) << (KEY_BITS - 1 - depth),
                            key=_first)
        left = (self._update(child, depth + 1, below, items[:split]) if split
                else self._get(child))
        right = (self._update(child | 1, depth + 1, below, items[split:]) if split < len(items)
                 else self._get(child | 1))
        return self._join(child, below, left, right)

    def _build(self, position: int, depth: int, here: int, items: list[_Item]) -> bytes | None:
        """A fresh subtree over ``items`` (all with new leaf nodes), sorted by key."""
        if not items:
            return None
        if len(items) == 1:
            return items[0][1]
        child = position << 1
        below = position if depth % STRATUM == 0 else here
        split = bisect_left(items, ((child | 1) ^ (2 << depth)) << (KEY_BITS - 1 - depth),
                            key=_first)
        return self._join(child, below, self._build(child, depth + 1, below, items[:split]),
                          self._build(child | 1, depth + 1, below, items[split:]))

    def _join(self, child: int, stratum: int, left: bytes | None, right: bytes | None
              ) -> bytes | None:
        """The node over two siblings; stores the siblings' new state in their stratum.

        A stratum the prefetch did not read is below a position that was not an inner node,
        so it holds nothing: it starts empty without a read."""
        result: bytes | None
        if left is None:
            if right is None or len(right) > 32:
                result = right  # nothing, or a lone leaf that moves up to where it is alone
            else:
                result = _sha256(_INNER + EMPTY + right).digest()
        elif right is None:
            result = left if len(left) > 32 else _sha256(_INNER + left + EMPTY).digest()
        else:
            result = _sha256(_INNER + left[:32] + right[:32]).digest()
        if result is None or len(result) > 32:
            left = right = None  # only an inner node's children are stored
        content = self._strata.get(stratum)
        if content is None:
            content = self._strata[stratum] = {}
        old_left, old_right = content.get(child), content.get(child | 1)
        if old_left != left or old_right != right:
            self._dirty.add(stratum)
            if left is not None:
                content[child] = left
            elif old_left is not None:
                del content[child]
            if right is not None:
                content[child | 1] = right
            elif old_right is not None:
                del content[child | 1]
        return result


def prove(read: StratumReader, key: bytes) -> tuple[list[bytes], bytes | None]:
    """(siblings from the root down, the key of the leaf where ``key``'s path ends: ``key``
    itself, another key, or None for an empty position)."""
    tree = StoredTree(read)  # one stratum read per 8 levels of the path
    ik = int.from_bytes(key, "big")
    siblings: list[bytes] = []
    node = tree.get(1)
    depth = 0
    while node is not None and len(node) == 32:
        depth += 1
        mine = (1 << depth) | (ik >> (KEY_BITS - depth))
        sibling = tree.get(mine ^ 1)
        siblings.append(sibling[:32] if sibling is not None else EMPTY)
        node = tree.get(mine)
    return siblings, node[32:] if node is not None else None
