"""The test bundles themselves: the large synthetic tree is a real RFC 9162 tree, and the
browser tests skip (never silently pass) where Chromium is missing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.conftest import REQUIRED
from tests.web.browser import unavailable_reason
from tests.web.bundles import SparseTree, synthetic_bundle
from verifier.checkpoint import open_checkpoint
from verifier.merkle import leaf_hash, root_hash, verify_inclusion
from verifier.note import NoteVerifier

FILLER = b"kiroku test filler leaf"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 31, 32, 33, 100])
def test_sparse_tree_matches_the_full_tree(size: int) -> None:
    marked = {i: f"leaf {i}".encode() for i in range(0, size, 3)}
    full = [leaf_hash(marked.get(i, FILLER)) for i in range(size)]
    tree = SparseTree(size, marked)
    assert tree.root() == root_hash(full)
    for index in marked:
        verify_inclusion(full[index], index, size, tree.path(index), root_hash(full))


def test_synthetic_bundle_is_checked_by_the_python_verifier_too() -> None:
    bundle, vkey = synthetic_bundle(10_000, 5)
    checkpoint = open_checkpoint(bundle["checkpoint"], NoteVerifier.from_vkey(vkey))
    assert checkpoint.size == 10_000
    for record in bundle["records"]:
        leaf = base64.b64decode(record["leaf"])
        assert json.loads(leaf)["index"] == record["index"]
        proof = [base64.b64decode(h) for h in record["inclusion"]["proof"]]
        verify_inclusion(leaf_hash(leaf), record["index"], checkpoint.size, proof, checkpoint.root)


def test_missing_chromium_or_playwright_gives_a_reason_ci_refuses(tmp_path: Path) -> None:
    word = REQUIRED["KIROKU_REQUIRE_BROWSER"]
    reasons = [unavailable_reason(chromium=tmp_path / "no-chromium"),
               unavailable_reason(package="no_such_playwright_package")]
    assert all(reason is not None and word in reason for reason in reasons), reasons
