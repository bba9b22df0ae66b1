"""C2SP signed-note, vkeys and tlog-checkpoint against golang.org/x/mod, C2SP and sumdb vectors."""

from __future__ import annotations

import base64

import pytest

from tests.verifier.conftest import load_vectors
from tests.verifier.exportgen import key_from_seed, sign_note, vkey_of
from verifier.checkpoint import open_checkpoint, parse_checkpoint_body
from verifier.errors import (
    CheckpointSignatureError,
    MalformedCheckpoint,
    MalformedNote,
    MalformedVkey,
)
from verifier.merkle import leaf_hash, verify_inclusion
from verifier.note import NoteVerifier, open_note, parse_note

NOTES = {v["id"]: v for v in load_vectors("signed_note_vectors.json")["vectors"]}
CHECKPOINTS = {v["id"]: v for v in load_vectors("checkpoint_vectors.json")["vectors"]}
TLOG_PROOF = load_vectors("tlog_proof_vectors.json")["vectors"][0]


@pytest.mark.parametrize("vid", ["gomod-peterneumann-sign", "gomod-enochroot-open", "c2sp-signed-note-example"])
def test_valid_ed25519_notes(vid: str) -> None:
    v = NOTES[vid]
    note = open_note(v["signed_note"], [NoteVerifier.from_vkey(v["vkey"])])
    assert note.text == v["text"]


def test_note_with_two_signers_verifies_with_either_or_both() -> None:
    both = NOTES["gomod-enochroot-open"]["signed_note"]
    peter = NoteVerifier.from_vkey(NOTES["gomod-peterneumann-sign"]["vkey"])
    enoch = NoteVerifier.from_vkey(NOTES["gomod-enochroot-open"]["vkey"])
    for keys in ([peter], [enoch], [peter, enoch]):
        open_note(both, keys)


def test_unknown_signers_only_is_rejected() -> None:
    other = NoteVerifier.from_vkey(NOTES["c2sp-signed-note-example"]["vkey"])
    with pytest.raises(CheckpointSignatureError, match="no verifiable signatures"):
        open_note(NOTES["gomod-enochroot-open"]["signed_note"], [other])


def test_known_key_with_bad_signature_is_an_error_even_if_another_verifies() -> None:
    v = NOTES["gomod-enochroot-open"]
    peter_line, enoch_line = v["signed_note"].split("\n\n")[1].splitlines()
    blob = bytearray(base64.b64decode(peter_line.split()[-1]))
    blob[10] ^= 1
    broken = f"{v['text']}\n\u2014 PeterNeumann {base64.b64encode(bytes(blob)).decode()}\n{enoch_line}\n"
    keys = [NoteVerifier.from_vkey(NOTES["gomod-peterneumann-sign"]["vkey"]), NoteVerifier.from_vkey(v["vkey"])]
    with pytest.raises(CheckpointSignatureError, match="does not verify"):
        open_note(broken, keys)


def test_modified_text_fails() -> None:
    v = NOTES["c2sp-signed-note-example"]
    with pytest.raises(CheckpointSignatureError):
        open_note(v["signed_note"].replace("example", "exampel", 1), [NoteVerifier.from_vkey(v["vkey"])])


@pytest.mark.parametrize("bad", NOTES["gomod-bad-vkeys"]["bad_vkeys"] + [
    NOTES["formats-rekor-ecdsa"]["vkey"],  # ECDSA (type 0x02): verify-only Ed25519 here
    "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key id
    "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a3", "", "PeterNeumann+c74f20a3+!!!!",
])
def test_bad_vkeys_are_rejected(bad: str) -> None:
    with pytest.raises(MalformedVkey):
        NoteVerifier.from_vkey(bad)


def test_vkey_base64_with_plus_splits_at_first_two_only() -> None:
    for seed in range(200):
        vkey = vkey_of("log.example", key_from_seed(seed))
        if "+" in vkey.split("+", 2)[2]:
            break
    else:
        pytest.skip("no key with '+' in its base64 among 200 seeds")
    assert NoteVerifier.from_vkey(vkey).name == "log.example"
    # The golang vector's key also contains '+'.
    assert NoteVerifier.from_vkey(NOTES["gomod-enochroot-open"]["vkey"]).name == "EnochRoot"


@pytest.mark.parametrize("note", [
    "no blank line\n\u2014 a AAAAAAAA\n", "text\n\n", "text\n\n\u2014 a AAAAAAAA",
    "text\n\n- a AAAAAAAAAA==\n", "te\x01xt\n\n\u2014 a AAAAAAAAAA==\n", b"\xff\n\n",
])
def test_malformed_notes(note: str | bytes) -> None:
    with pytest.raises(MalformedNote):
        parse_note(note)


def test_gomod_formattree_golden() -> None:
    v = CHECKPOINTS["gomod-formattree"]
    cp = parse_checkpoint_body(v["checkpoint_body"])
    assert cp.size == v["tree_size"] == 123456789012
    assert cp.root == leaf_hash(v["record_ascii"].encode())
    assert cp.body() == v["checkpoint_body"]


def test_c2sp_checkpoint_example_parses() -> None:
    note = parse_note(CHECKPOINTS["c2sp-checkpoint-example"]["signed_checkpoint"])
    cp = parse_checkpoint_body(note.text)
    assert (cp.origin, cp.size) == ("example.com/behind-the-sofa", 20852163)


def test_witness_cosigned_checkpoints_parse_but_cosigner_keys_are_not_ed25519_note_keys() -> None:
    for vid in ("sunlight-witness-cosig", "sunlight-witness2-cosig"):
        v = CHECKPOINTS[vid]
        assert parse_checkpoint_body(parse_note(v["signed_checkpoint"]).text).size == 300
        with pytest.raises(MalformedVkey, match="0x04"):
            NoteVerifier.from_vkey(v["witness_vkey"])


@pytest.mark.parametrize("body", [
    "origin\n12\n", "origin\n012\nAAAA\n", "\n1\n" + "A" * 43 + "=\n", "o\n1\nAAAA\n",
    "o\n1\n" + "A" * 43 + "=\n\n", "o\n-1\n" + "A" * 43 + "=\n", "o\n1\n" + "A" * 43 + "=",
])
def test_malformed_checkpoint_bodies(body: str) -> None:
    with pytest.raises(MalformedCheckpoint):
        parse_checkpoint_body(body)


def test_checkpoint_extension_lines_are_kept() -> None:
    cp = parse_checkpoint_body("o\n1\n" + "A" * 43 + "=\nTimestamp: 1\n")
    assert cp.extensions == ("Timestamp: 1",)


def test_real_sumdb_tlog_proof() -> None:
    """sum.golang.org: tessera v1.0.0 is entry 43930254 of the signed tree of size 58253265."""
    v = TLOG_PROOF
    head, checkpoint_text = v["tlog_proof"].split("\n\n", 1)
    lines = head.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    index = int(lines[1].removeprefix("index "))
    proof = [base64.b64decode(x) for x in lines[2:]]
    cp = open_checkpoint(checkpoint_text, NoteVerifier.from_vkey(v["log_vkey"]), origin=v["origin"])
    h = leaf_hash(v["leaf_raw"].encode())
    assert base64.b64encode(h).decode() == v["expected_leaf_hash_b64"]
    verify_inclusion(h, index, cp.size, proof, cp.root)


def test_checkpoint_origin_must_match() -> None:
    key = key_from_seed(5)
    text = sign_note("a.example\n0\n" + base64.b64encode(bytes(32)).decode() + "\n", "a.example", key)
    with pytest.raises(MalformedCheckpoint, match="origin"):
        open_checkpoint(text, NoteVerifier.from_vkey(vkey_of("a.example", key)), origin="b.example")
