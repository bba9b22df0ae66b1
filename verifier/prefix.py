"""Checks that one signed checkpoint extends another (used by the CLI and the monitor)."""

from __future__ import annotations

from verifier.checkpoint import Checkpoint
from verifier.errors import ConsistencyProofError
from verifier.merkle import EMPTY_ROOT, verify_consistency
from verifier.proofs import ConsistencyProof


def verify_extends(old: Checkpoint, new: Checkpoint, proof: ConsistencyProof | None) -> None:
    """Check that ``new`` is an append-only extension of ``old``; None or ConsistencyProofError.

    An empty old tree is a prefix of every tree, so from size 0 only the old root is checked (it
    must be the empty-tree root) and the proof must be empty: c2sp.org/tlog-witness semantics.
    ``merkle.verify_consistency`` itself rejects size 0, as transparency-dev/merkle does; this is
    where a monitor that starts from an empty log needs the other answer.
    """
    if old.origin != new.origin:
        raise ConsistencyProofError(f"origin changed: got {new.origin!r}, expected {old.origin!r}")
    if new.size < old.size:
        raise ConsistencyProofError(
            f"new checkpoint has size {new.size}, expected at least {old.size}", kind="rollback"
        )
    if old.size == 0:
        if old.root != EMPTY_ROOT:
            raise ConsistencyProofError(
                f"checkpoint of size 0 has root {old.root.hex()}, expected {EMPTY_ROOT.hex()}"
            )
        if proof is not None and proof.proof:
            raise ConsistencyProofError("proof from the empty tree must be empty")
        return
    if old.size == new.size:
        if old.root != new.root:
            raise ConsistencyProofError(
                f"two roots for size {old.size}: got {new.root.hex()}, expected {old.root.hex()}",
                kind="fork",
            )
        return
    if proof is None:
        raise ConsistencyProofError(f"no consistency proof from size {old.size} to {new.size}")
    if (proof.old_size, proof.new_size) != (old.size, new.size):
        raise ConsistencyProofError(
            f"proof is for sizes {proof.old_size}->{proof.new_size}, expected {old.size}->{new.size}"
        )
    if (proof.old_root, proof.new_root) != (old.root, new.root):
        raise ConsistencyProofError("proof names roots other than the two checkpoints' roots")
    verify_consistency(old.size, new.size, proof.proof, old.root, new.root)
