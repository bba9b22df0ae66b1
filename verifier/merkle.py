"""Merkle tree hashing and proof verification, re-implemented from RFC 9162 §2.1.

This module deliberately shares no code with the writer's Merkle library: a bug on the writing side
must not be mirrored here. Leaf indices are 0-based; hashes are raw 32-byte SHA-256 digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from verifier.errors import ConsistencyProofError, InclusionProofError

HASH_SIZE = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256

# RFC 9162 §2.1.1: MTH({}) = HASH().
EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d(0)}) = HASH(0x00 || d(0))."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: interior node = HASH(0x01 || left || right)."""
    return _sha256(_NODE_PREFIX + left + right).digest()


class CompactRange:
    """Streaming tree head: the roots of the perfect subtrees that make up ``[0, size)``.

    Holds at most one hash per bit of ``size`` (O(log n) memory), so a whole export's root can be
    computed without keeping its leaves. The subtrees are those of RFC 9162 §2.1.1's MTH split
    (k = the largest power of two smaller than n), so :meth:`root` equals MTH(D[0:size]).
    """

    __slots__ = ("_hashes", "_heights", "size")

    def __init__(self) -> None:
        self._heights: list[int] = []
        self._hashes: list[bytes] = []
        self.size = 0

    def append(self, leaf_hash_: bytes) -> None:
        """Add the next leaf, given by its leaf hash (the hot path of export checking)."""
        heights, hashes = self._heights, self._hashes
        size = self.size
        self.size = size + 1
        # The trailing one bits of the old size are the subtrees this leaf completes.
        height = 0
        while size & 1:
            leaf_hash_ = _sha256(_NODE_PREFIX + hashes.pop() + leaf_hash_).digest()
            heights.pop()
            height += 1
            size >>= 1
        heights.append(height)
        hashes.append(leaf_hash_)

    def append_subtree(self, subtree_root: bytes, height: int) -> None:
        """Add a perfect subtree of ``2**height`` leaves that starts at the current size.

        The subtree must be aligned (``size`` a multiple of ``2**height``), as the root of a
        power-of-two chunk of leaves starting at a multiple of its length is.
        """
        if self.size % (1 << height):
            raise ValueError(f"subtree of height {height} is not aligned at size {self.size}")
        heights, hashes = self._heights, self._hashes
        heights.append(height)
        hashes.append(subtree_root)
        # Merge equal-height neighbours: two perfect subtrees of 2^h leaves make one of 2^(h+1).
        while len(heights) > 1 and heights[-1] == heights[-2]:
            right = hashes.pop()
            heights.pop()
            hashes[-1] = _sha256(_NODE_PREFIX + hashes[-1] + right).digest()
            heights[-1] += 1
        self.size += 1 << height

    def subtrees(self) -> list[tuple[int, bytes]]:
        """The ``(height, root)`` pairs, leftmost (largest) first."""
        return list(zip(self._heights, self._hashes))

    def root(self) -> bytes:
        """MTH over all leaves appended so far (RFC 9162 §2.1.1); the empty tree is HASH()."""
        if not self._hashes:
            return EMPTY_ROOT
        hashes = self._hashes
        result = hashes[-1]
        for left in reversed(hashes[:-1]):
            result = _sha256(_NODE_PREFIX + left + result).digest()
        return result


def root_hash(leaf_hashes: Sequence[bytes] | Iterable[bytes]) -> bytes:
    """MTH(D[0:n]) of RFC 9162 §2.1.1, given the leaf hashes in order."""
    compact = CompactRange()
    for h in leaf_hashes:
        compact.append(h)
    return compact.root()


def _check_path(proof: Sequence[bytes], error: type[Exception]) -> None:
    for position, element in enumerate(proof):
        if len(element) != HASH_SIZE:
            raise error(
                f"proof element {position} is {len(element)} bytes, expected {HASH_SIZE}"
            )


def verify_inclusion(
    leaf_hash_: bytes, leaf_index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash_`` is leaf ``leaf_index`` of the tree ``(tree_size, root)``.

    Implements RFC 9162 §2.1.3.2 step by step. Returns None or raises InclusionProofError.
    """
    # RFC 9162 §2.1.3.2 step 1.
    if leaf_index < 0 or leaf_index >= tree_size:
        raise InclusionProofError(
            f"leaf index {leaf_index} is outside the tree, expected 0 <= index < {tree_size}"
        )
    if len(leaf_hash_) != HASH_SIZE or len(root) != HASH_SIZE:
        raise InclusionProofError(
            f"leaf hash/root are {len(leaf_hash_)}/{len(root)} bytes, expected {HASH_SIZE}"
        )
    _check_path(proof, InclusionProofError)
    # Step 2, 3.
    fn, sn = leaf_index, tree_size - 1
    r = leaf_hash_
    # Step 4.
    for p in proof:
        if sn == 0:
            raise InclusionProofError(
                f"proof has {len(proof)} hashes, more than a tree of size {tree_size} needs"
            )
        if fn & 1 or fn == sn:
            r = _sha256(_NODE_PREFIX + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(_NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    # Step 5.
    if sn != 0:
        raise InclusionProofError(
            f"proof has {len(proof)} hashes, fewer than a tree of size {tree_size} needs"
        )
    if r != root:
        raise InclusionProofError(
            f"proof leads to root {r.hex()}, expected {root.hex()}"
        )


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Check that the tree ``(old_size, old_root)`` is a prefix of ``(new_size, new_root)``.

    Implements RFC 9162 §2.1.4.2. Like transparency-dev/merkle, a proof from size 0 is rejected:
    the empty tree is trivially a prefix of every tree, so such a "proof" proves nothing and
    accepting it would let a caller skip the check it meant to make. Callers that track an empty
    log (the monitor) handle old size 0 themselves. Returns None or raises ConsistencyProofError.
    """
    if old_size < 0 or new_size < old_size:
        raise ConsistencyProofError(
            f"new size {new_size} is smaller than old size {old_size}, expected new >= old"
        )
    if old_size == 0:
        raise ConsistencyProofError(
            "old size is 0: a consistency proof from the empty tree proves nothing, expected old >= 1"
        )
    if old_size == new_size:
        if proof:
            raise ConsistencyProofError(
                f"proof has {len(proof)} hashes for equal sizes, expected none"
            )
        if old_root != new_root:
            raise ConsistencyProofError(
                f"roots differ for equal sizes {old_size}: got {new_root.hex()}, "
                f"expected {old_root.hex()}"
            )
        return
    # RFC 9162 §2.1.4.2 step 1.
    if not proof:
        raise ConsistencyProofError(
            f"proof is empty, expected hashes linking size {old_size} to {new_size}"
        )
    _check_path(proof, ConsistencyProofError)
    path = list(proof)
    # Step 2.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # Step 3, 4.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5.
    fr = sr = path[0]
    # Step 6.
    for c in path[1:]:
        if sn == 0:
            raise ConsistencyProofError(
                f"proof has {len(proof)} hashes, more than sizes {old_size}->{new_size} need"
            )
        if fn & 1 or fn == sn:
            fr = _sha256(_NODE_PREFIX + c + fr).digest()
            sr = _sha256(_NODE_PREFIX + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(_NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    # Step 7.
    if sn != 0:
        raise ConsistencyProofError(
            f"proof has {len(proof)} hashes, fewer than sizes {old_size}->{new_size} need"
        )
    if fr != old_root:
        raise ConsistencyProofError(
            f"proof leads to old root {fr.hex()}, expected {old_root.hex()}"
        )
    if sr != new_root:
        raise ConsistencyProofError(
            f"proof leads to new root {sr.hex()}, expected {new_root.hex()}"
        )
