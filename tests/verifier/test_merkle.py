"""RFC 9162 §2.1 hashing and proofs against transparency-dev vectors and pymerkle."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.verifier.conftest import load_vectors
from tests.verifier.exportgen import mth
from verifier.errors import ConsistencyProofError, InclusionProofError
from verifier.merkle import (
    EMPTY_ROOT,
    CompactRange,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

HASHES = load_vectors("rfc6962_hashes.json")
INCLUSION = load_vectors("rfc6962_inclusion_proofs.json")["vectors"]
CONSISTENCY = load_vectors("rfc6962_consistency_proofs.json")["vectors"]


def _b(text: str | None) -> bytes:
    return base64.b64decode(text or "")


def test_hasher_vectors() -> None:
    for v in HASHES["hasher_vectors"]:
        want = bytes.fromhex(v["want_hex"])
        if v["kind"] == "empty_root":
            assert root_hash([]) == EMPTY_ROOT == want
        elif v["kind"] == "leaf":
            data = bytes.fromhex(v["leaf_input_hex"]) if "leaf_input_hex" in v else v["leaf_input_ascii"].encode()
            assert leaf_hash(data) == want
        else:
            assert node_hash(v["left_ascii"].encode(), v["right_ascii"].encode()) == want


def test_reference_tree_roots_for_every_size() -> None:
    tree = HASHES["reference_tree"]
    leaves = [leaf_hash(bytes.fromhex(x)) for x in tree["leaf_inputs_hex"]]
    for size, want in enumerate(tree["root_hashes_by_size_hex"]):
        assert root_hash(leaves[:size]).hex() == want
    assert [h.hex() for h in leaves] == tree["node_hashes_hex"][0]


@pytest.mark.parametrize("v", INCLUSION, ids=lambda v: v["file"])
def test_inclusion_vectors(v: dict) -> None:
    proof = [_b(p) for p in v["proof"] or []]
    args = (_b(v["leafHash"]), v["leafIdx"], v["treeSize"], proof, _b(v["root"]))
    if v["wantErr"]:
        with pytest.raises(InclusionProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("v", CONSISTENCY, ids=lambda v: v["file"])
def test_consistency_vectors(v: dict) -> None:
    proof = [_b(p) for p in v["proof"] or []]
    args = (v["size1"], v["size2"], proof, _b(v["root1"]), _b(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(ConsistencyProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_error_message_names_got_and_expected() -> None:
    with pytest.raises(InclusionProofError, match="expected"):
        verify_inclusion(leaf_hash(b"a"), 0, 1, [], leaf_hash(b"b"))


# --- independent reference: RFC 9162 §2.1.3.1 / §2.1.4.1 proof generation from the definition ---

def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return _path(m, leaves[:k]) + [mth(leaves[k:])]
    return _path(m - k, leaves[k:]) + [mth(leaves[:k])]


def _subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return _subproof(m, leaves[:k], complete) + [mth(leaves[k:])]
    return _subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=12), min_size=1, max_size=70), st.data())
def test_cross_check_with_pymerkle(entries: list[bytes], data: st.DataObject) -> None:
    from pymerkle import InmemoryTree  # tests only: the verifier must not use it

    tree = InmemoryTree(algorithm="sha256")
    for entry in entries:
        tree.append_entry(entry)
    leaves = [leaf_hash(e) for e in entries]
    n = len(entries)
    assert root_hash(leaves) == tree.get_root(n) == mth(leaves)
    compact = CompactRange()
    for h in leaves:
        compact.append(h)
    assert compact.root() == tree.get_root(n)

    index = data.draw(st.integers(0, n - 1))
    # pymerkle is 1-based and its path starts with the leaf itself (the "base"); RFC 9162 proofs
    # list only the siblings, bottom-up.
    pm_path = tree.prove_inclusion(index + 1, n).path
    assert pm_path[0] == leaves[index]
    verify_inclusion(leaves[index], index, n, pm_path[1:], tree.get_root(n))
    assert pm_path[1:] == _path(index, leaves)

    old = data.draw(st.integers(1, n))
    proof = _subproof(old, leaves, True)
    verify_consistency(old, n, proof, tree.get_root(old), tree.get_root(n))
    if proof:
        bad = list(proof)
        bad[data.draw(st.integers(0, len(bad) - 1))] = hashlib.sha256(b"x").digest()
        with pytest.raises(ConsistencyProofError):
            verify_consistency(old, n, bad, tree.get_root(old), tree.get_root(n))
    if n > 1:
        with pytest.raises(InclusionProofError):
            verify_inclusion(leaves[index], index, n, pm_path[1:], tree.get_root(n - 1))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=12))
def test_compact_range_accepts_aligned_subtrees(heights_seed: list[int]) -> None:
    leaves: list[bytes] = []
    compact = CompactRange()
    for h in heights_seed:
        # the largest aligned subtree not above h at the current size
        height = h
        while len(leaves) % (1 << height):
            height -= 1
        block = [leaf_hash(b"%d" % (len(leaves) + i)) for i in range(1 << height)]
        compact.append_subtree(mth(block), height)
        leaves.extend(block)
        assert compact.root() == mth(leaves)
    with pytest.raises(ValueError):
        if compact.size % 2:
            compact.append_subtree(leaves[0], 1)
        else:
            compact.append(leaves[0])
            compact.append_subtree(leaves[0], 1)
