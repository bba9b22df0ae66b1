"""The stored tree's roots and proofs agree with an independent RFC 6962 reference written here
from the RFC's definitions, and with the published vectors."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Collection
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import NodeKey, StoredTree, append_nodes, leaf_hash

VECTORS = Path(__file__).parent / "vectors"


# -- RFC 6962 §2.1, written from the definitions -----------------------------------------------
def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = _k(n)
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


class MemoryNodes:
    def __init__(self, leaves: list[bytes]) -> None:
        self.nodes: dict[NodeKey, bytes] = {}
        frontier: dict[int, bytes] = {}
        hashes = [leaf_hash(x) for x in leaves]
        for i, h in enumerate(hashes):
            self.nodes[(0, i)] = h
        for level, idx, h in append_nodes(0, frontier, hashes):
            self.nodes[(level, idx)] = h
        self.reads = 0

    def read_nodes(self, keys: Collection[NodeKey]) -> dict[NodeKey, bytes]:
        self.reads += 1
        return {k: self.nodes[k] for k in keys}


def _leaves(n: int) -> list[bytes]:
    return [f"leaf {i}".encode() for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=3000), st.data())
def test_roots_and_proofs_match_reference(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    store = MemoryNodes(leaves)
    size = data.draw(st.integers(min_value=1, max_value=n), label="size")
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    old = data.draw(st.integers(min_value=1, max_value=size), label="old")
    tree = StoredTree(store, n)
    assert tree.root(size) == mth(leaves[:size])
    assert tree.inclusion_proof(index, size) == path(index, leaves[:size])
    assert tree.consistency_proof(old, size) == subproof(old, leaves[:size], True)


def test_each_query_reads_storage_once_and_few_nodes() -> None:
    n = 100_003
    store = MemoryNodes(_leaves(n))
    tree = StoredTree(store, n)
    tree.inclusion_proof(54_321, n)
    tree.consistency_proof(77_777, n)
    assert store.reads <= 2 + 2  # one batched read per query (+ leaf fallback)
    assert len(tree._nodes) < 4 * 17 * 2  # O(log n) nodes, not a scan


def test_empty_tree_root() -> None:
    assert StoredTree(MemoryNodes([]), 0).root() == hashlib.sha256(b"").digest()


def test_published_rfc6962_reference_tree() -> None:
    """transparency-dev/merkle's 8-leaf reference tree: the roots for every size 0..8."""
    vectors = json.loads((VECTORS / "rfc6962_hashes.json").read_text())
    leaves = [bytes.fromhex(x) for x in vectors["reference_tree"]["leaf_inputs_hex"]]
    store = MemoryNodes(leaves)
    for size, root in enumerate(vectors["reference_tree"]["root_hashes_by_size_hex"]):
        assert StoredTree(store, len(leaves)).root(size) == bytes.fromhex(root), size


def _decode(value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        return base64.b64decode(value)


@pytest.mark.parametrize("kind", ["inclusion", "consistency"])
def test_published_proofs_for_valid_probes(kind: str) -> None:
    vectors = json.loads((VECTORS / f"rfc6962_{kind}_proofs.json").read_text())
    leaves = [bytes.fromhex(x) for x in json.loads(
        (VECTORS / "rfc6962_hashes.json").read_text())["reference_tree"]["leaf_inputs_hex"]]
    store = MemoryNodes(leaves)
    checked = 0
    for probe in vectors["vectors"]:
        if probe.get("wantErr") or not probe.get("proof"):
            continue
        tree = StoredTree(store, len(leaves))
        if kind == "inclusion":
            size, index = probe["treeSize"], probe["leafIdx"]
            if size > len(leaves) or _decode(probe["root"]) != tree.root(size):
                continue  # probes over other trees
            got = tree.inclusion_proof(index, size)
        else:
            old, new = probe["size1"], probe["size2"]
            if new > len(leaves) or _decode(probe["root2"]) != tree.root(new):
                continue
            got = tree.consistency_proof(old, new)
        assert got == [_decode(p) for p in probe["proof"]], probe.get("desc")
        checked += 1
    assert checked > 0
