"""The completeness index's sparse Merkle tree (docs/completeness.md "The tree").

256-bit keys, read most significant bit first; a subtree's hash depends only on the leaves
under it, whatever its depth:

- no leaf: ``EMPTY`` (32 zero bytes);
- one leaf (key k, value v): ``SHA-256(0x00 ‖ k ‖ v)`` — the leaf sits at the highest position
  where it is alone, so a path is about log2(residents) long rather than 256;
- two or more: ``SHA-256(0x01 ‖ left ‖ right)`` (RFC 9162 §2.1.1's domain separation).

A position is empty, a leaf or an inner node, never two of these (SHA-256 outputs neither are
all zeros nor have two preimage forms), so each key has at most one value under a root.

Storage: one row per non-empty position whose parent is an inner node (and the root), keyed by
``node_id(depth, key)``. A batch of changed leaves is applied in three steps: read the rows on
the changed paths level by level (one query per level), recompute in memory, then write only the
rows that changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

EMPTY = b"\x00" * 32
KEY_BITS = 256
_sha256 = hashlib.sha256


def leaf_hash(key: bytes, value: bytes) -> bytes:
    return _sha256(b"\x00" + key + value).digest()


def inner_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def bit(key: bytes, depth: int) -> int:
    return (key[depth >> 3] >> (7 - (depth & 7))) & 1


def node_id(depth: int, key: bytes) -> bytes:
    """The position at ``depth`` on ``key``'s path: 2-byte depth ‖ the first ``depth`` bits of
    the key (whole bytes, unused low bits cleared)."""
    whole, rest = divmod(depth, 8)
    prefix = key[:whole]
    if rest:
        prefix += bytes([key[whole] & (0xFF << (8 - rest)) & 0xFF])
    return depth.to_bytes(2, "big") + prefix


@dataclass(frozen=True, slots=True)
class Node:
    """A stored position: a leaf (``key`` set) or an inner node (``key`` None)."""

    hash: bytes
    key: bytes | None = None


def compact_root(leaves: dict[bytes, bytes]) -> bytes:
    """The root over ``{key: value}`` built from scratch (fsck and tests compare it with the
    incrementally kept one)."""
    items = sorted((k, leaf_hash(k, v)) for k, v in leaves.items())
    return _subtree(items, 0)


def _subtree(items: Sequence[tuple[bytes, bytes]], depth: int) -> bytes:
    if not items:
        return EMPTY
    if len(items) == 1:
        return items[0][1]
    split = next((i for i, (k, _) in enumerate(items) if bit(k, depth)), len(items))
    return inner_hash(_subtree(items[:split], depth + 1), _subtree(items[split:], depth + 1))


NodeReader = Callable[[Collection[bytes]], dict[bytes, Node]]


@dataclass
class Changes:
    """Rows to write after an update: ``put`` (new or changed positions) and ``delete``;
    ``existed`` says which of ``put`` already have a row (update rather than insert)."""

    put: dict[bytes, Node]
    delete: set[bytes]
    existed: set[bytes]


class TreeUpdate:
    """Apply ``{key: new leaf hash or None (removed)}`` to the stored tree read by ``read``."""

    def __init__(self, read: NodeReader) -> None:
        self._read = read
        self._old: dict[bytes, Node | None] = {}
        self.changes = Changes({}, set(), set())

    def apply(self, updates: dict[bytes, bytes | None]) -> bytes:
        """Returns the new root; ``self.changes`` then holds the rows to write."""
        if not updates:
            root = self._load([node_id(0, b"")]).get(node_id(0, b""))
            return root.hash if root is not None else EMPTY
        keys = sorted(updates)
        self._prefetch(keys)
        root_id = node_id(0, b"")
        node = self._update(0, keys, updates)
        self._set(root_id, node)
        return node.hash if node is not None else EMPTY

    # Reading --------------------------------------------------------------------------------
    def _load(self, ids: Iterable[bytes]) -> dict[bytes, Node | None]:
        wanted = [i for i in ids if i not in self._old]
        if wanted:
            found = self._read(wanted)
            for i in wanted:
                self._old[i] = found.get(i)
        return self._old

    def _prefetch(self, keys: Sequence[bytes]) -> None:
        """Read, level by level, every row the update will look at: the positions on the
        changed keys' paths down to the first leaf or empty position, and their siblings."""
        depth, groups = 0, {node_id(0, b""): list(keys)}
        self._load(groups)
        while groups and depth < KEY_BITS:
            inner = {i: ks for i, ks in groups.items() if (n := self._old.get(i)) is not None
                     and n.key is None}
            if not inner:
                return
            depth += 1
            children: dict[bytes, list[bytes]] = {}
            wanted: list[bytes] = []
            for ks in inner.values():
                first = ks[0]
                for side in (0, 1):
                    wanted.append(node_id(depth, _with_bit(first, depth - 1, side)))
                for k in ks:
                    children.setdefault(node_id(depth, k), []).append(k)
            self._load(wanted)
            groups = children

    # Recomputing ----------------------------------------------------------------------------
    def _update(self, depth: int, keys: list[bytes], updates: dict[bytes, bytes | None]
                ) -> Node | None:
        here = node_id(depth, keys[0])
        old = self._old.get(here) if here in self._old else self._load([here]).get(here)
        if old is None or old.key is not None:
            leaves = {k: h for k in keys if (h := updates[k]) is not None}
            if old is not None and old.key is not None and old.key not in updates:
                leaves[old.key] = old.hash
            return self._build(depth, sorted(leaves.items()))
        split = next((i for i, k in enumerate(keys) if bit(k, depth)), len(keys))
        sides = []
        for side, part in ((0, keys[:split]), (1, keys[split:])):
            child = node_id(depth + 1, _with_bit(keys[0], depth, side))
            if part:
                sides.append((child, self._update(depth + 1, part, updates)))
            else:
                known = self._load([child]).get(child)
                sides.append((child, known))
        return self._join(sides)

    def _build(self, depth: int, items: list[tuple[bytes, bytes]]) -> Node | None:
        """A fresh subtree over ``items`` (key, leaf hash), sorted by key."""
        if not items:
            return None
        if len(items) == 1:
            return Node(items[0][1], items[0][0])
        split = next((i for i, (k, _) in enumerate(items) if bit(k, depth)), len(items))
        sides = []
        for side, part in ((0, items[:split]), (1, items[split:])):
            child = node_id(depth + 1, _with_bit(items[0][0], depth, side))
            # Below a leaf or an empty position nothing is stored (see the module docstring).
            self._old.setdefault(child, None)
            sides.append((child, self._build(depth + 1, part)))
        return self._join(sides)

    def _join(self, sides: list[tuple[bytes, Node | None]]) -> Node | None:
        (left_id, left), (right_id, right) = sides
        if left is None and right is None:
            result = None
        elif left is None and right is not None and right.key is not None:
            result = right  # a lone leaf moves up to where it is alone
        elif right is None and left is not None and left.key is not None:
            result = left
        else:
            result = Node(inner_hash(left.hash if left else EMPTY, right.hash if right else EMPTY))
        keep = result is not None and result.key is None
        self._set(left_id, left if keep else None)
        self._set(right_id, right if keep else None)
        return result

    def _set(self, here: bytes, node: Node | None) -> None:
        old = self._old.get(here)
        if node is None:
            self.changes.put.pop(here, None)
            if old is not None:
                self.changes.delete.add(here)
        else:
            self.changes.delete.discard(here)
            if old != node:
                self.changes.put[here] = node
                if old is not None:
                    self.changes.existed.add(here)


def prove(read: NodeReader, key: bytes) -> tuple[list[bytes], Node | None]:
    """(siblings from the root down, the position where ``key``'s path ends: its own leaf,
    another key's leaf, or None for an empty position)."""
    siblings: list[bytes] = []
    here = node_id(0, b"")
    node = read([here]).get(here)
    depth = 0
    while node is not None and node.key is None:
        mine = node_id(depth + 1, key)
        other = node_id(depth + 1, _with_bit(key, depth, 1 - bit(key, depth)))
        found = read([mine, other])
        sibling = found.get(other)
        siblings.append(sibling.hash if sibling is not None else EMPTY)
        node = found.get(mine)
        depth += 1
    return siblings, node


def _with_bit(key: bytes, depth: int, value: int) -> bytes:
    """``key`` with bit ``depth`` set to ``value`` (only the bits up to ``depth`` matter)."""
    mask = 1 << (7 - (depth & 7))
    byte = key[depth >> 3]
    byte = byte | mask if value else byte & ~mask & 0xFF
    return key[: depth >> 3] + bytes([byte]) + key[(depth >> 3) + 1:]
