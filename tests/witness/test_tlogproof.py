"""C2SP tlog-proof: the real sum.golang.org proof verifies offline; altered ones do not."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.verifier.conftest import load_vectors
from verifier.cli import main as verify_main
from verifier.errors import CheckpointSignatureError, InclusionProofError, MalformedProof
from verifier.merkle import leaf_hash
from verifier.note import NoteVerifier
from verifier.tlogproof import parse_tlog_proof, verify_tlog_proof

VECTOR = load_vectors("tlog_proof_vectors.json")["vectors"][0]
LOG = NoteVerifier.from_vkey(VECTOR["log_vkey"])
LEAF = VECTOR["leaf_raw"].encode()
ORIGIN = VECTOR["origin"]


def test_sumdb_proof_verifies_with_its_leaf() -> None:
    assert base64.b64encode(leaf_hash(LEAF)).decode() == VECTOR["expected_leaf_hash_b64"]
    result = verify_tlog_proof(VECTOR["tlog_proof"], LOG, leaf=LEAF, origin=ORIGIN)
    assert (result.index, result.checkpoint.size) == (43930254, 58253265)
    assert result.checkpoint.origin == VECTOR["origin"]


def _swap_hash(text: str, position: int) -> str:
    lines = text.split("\n")
    digest = bytearray(base64.b64decode(lines[2 + position]))
    digest[0] ^= 1
    lines[2 + position] = base64.b64encode(bytes(digest)).decode()
    return "\n".join(lines)


@pytest.mark.parametrize("change,error", [
    (lambda t: t.replace("index 43930254", "index 43930255"), InclusionProofError),
    (lambda t: _swap_hash(t, 0), InclusionProofError),
    (lambda t: _swap_hash(t, 24), InclusionProofError),
    (lambda t: t.replace("\n58253265\n", "\n58253266\n"), CheckpointSignatureError),
    (lambda t: t.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"), MalformedProof),
    (lambda t: t.replace("index 43930254", "index 043930254"), MalformedProof),
    (lambda t: t.replace("\n\ngo.sum", "\ngo.sum"), MalformedProof),
])
def test_altered_proofs_are_refused(change, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        verify_tlog_proof(change(VECTOR["tlog_proof"]), LOG, leaf=LEAF, origin=ORIGIN)


def test_another_leaf_is_refused() -> None:
    with pytest.raises(InclusionProofError):
        verify_tlog_proof(VECTOR["tlog_proof"], LOG, origin=ORIGIN,
                          leaf=LEAF.replace(b"v1.0.0 h1", b"v1.0.1 h1"))


def test_extra_line_is_parsed() -> None:
    text = VECTOR["tlog_proof"].replace("\nindex", "\nextra " + base64.b64encode(b"x").decode()
                                        + "\nindex", 1)
    assert parse_tlog_proof(text).extra == b"x"
    verify_tlog_proof(text, LOG, leaf=LEAF, origin=ORIGIN)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proof, leaf = tmp_path / "p.tlog-proof", tmp_path / "leaf"
    proof.write_text(VECTOR["tlog_proof"])
    leaf.write_bytes(LEAF)
    assert verify_main(["proof", str(proof), "--vkey", VECTOR["log_vkey"], "--origin", ORIGIN, "--leaf", str(leaf)]) == 0
    assert "OK entry 43930254 is in go.sum database tree at size 58253265" in capsys.readouterr().out
    # Without the leaf a non-kiroku proof cannot be checked: unusable input, not a pass.
    assert verify_main(["proof", str(proof), "--vkey", VECTOR["log_vkey"], "--origin", ORIGIN]) == 2
    # sum.golang.org's checkpoint carries no cosignature: a quorum of one witness is refused.
    witness = load_vectors("checkpoint_vectors.json")["vectors"][3]["witness_vkey"]
    assert verify_main(["proof", str(proof), "--vkey", VECTOR["log_vkey"], "--origin", ORIGIN, "--leaf", str(leaf),
                        "--witness", witness, "--quorum", "1"]) == 1
    assert "witness-quorum" in capsys.readouterr().out
    proof.write_text(_swap_hash(VECTOR["tlog_proof"], 3))
    assert verify_main(["proof", str(proof), "--vkey", VECTOR["log_vkey"], "--origin", ORIGIN, "--leaf", str(leaf)]) == 1
