"""tlog-cosignature/v1 against the C2SP message vector and Sunlight's witness cosignatures."""

from __future__ import annotations

import base64

import pytest

from tests.verifier.conftest import load_vectors
from verifier.cosignature import (
    CosignatureVerifier,
    QuorumNotMet,
    cosignature_message,
    require_quorum,
    verify_cosignatures,
)
from verifier.errors import CheckpointSignatureError, MalformedVkey
from verifier.note import parse_note
from witness.keys import WitnessKey, WitnessKeyError

VECTORS = {v["id"]: v for v in load_vectors("checkpoint_vectors.json")["vectors"]}
SUNLIGHT = ("sunlight-witness-cosig", "sunlight-witness2-cosig")


def test_signed_message_is_the_spec_example() -> None:
    v = VECTORS["c2sp-cosignature-message"]
    assert cosignature_message(v["checkpoint_body"], v["timestamp"]) == v["signed_message"].encode()


@pytest.mark.parametrize("vid", SUNLIGHT)
def test_sunlight_cosignatures_verify_with_their_vkeys(vid: str) -> None:
    v = VECTORS[vid]
    witness = CosignatureVerifier.from_vkey(v["witness_vkey"])
    assert witness.vkey == v["witness_vkey"]  # key id computed with algorithm byte 0x04
    cosigned = require_quorum(v["signed_checkpoint"], [witness], 1)
    assert cosigned.witnesses == [witness.name]
    assert cosigned.timestamps[witness.name] > 1_700_000_000


def test_cosignature_over_another_checkpoint_is_refused() -> None:
    v = VECTORS["sunlight-witness-cosig"]
    witness = CosignatureVerifier.from_vkey(v["witness_vkey"])
    forged = v["signed_checkpoint"].replace("\n300\n", "\n301\n")
    with pytest.raises(CheckpointSignatureError, match="does not verify"):
        verify_cosignatures(forged, [witness])


def test_quorum_counts_distinct_trusted_witnesses_only() -> None:
    first, second = (VECTORS[vid] for vid in SUNLIGHT)
    w1 = CosignatureVerifier.from_vkey(first["witness_vkey"])
    w2 = CosignatureVerifier.from_vkey(second["witness_vkey"])
    # witness2 did not cosign rome2026h1's checkpoint: one of two found.
    with pytest.raises(QuorumNotMet, match="1 valid cosignature.*expected at least 2"):
        require_quorum(first["signed_checkpoint"], [w1, w2], 2)
    # The same line twice is still one witness.
    note = first["signed_checkpoint"]
    line = note.rstrip("\n").split("\n")[-1]
    with pytest.raises(QuorumNotMet):
        require_quorum(note + line + "\n", [w1, w2], 2)
    with pytest.raises(QuorumNotMet, match="0 valid"):
        require_quorum(note, [w2], 1)


def test_log_style_vkey_is_not_a_witness_key() -> None:
    with pytest.raises(MalformedVkey, match="0x01"):
        CosignatureVerifier.from_vkey("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    with pytest.raises(MalformedVkey, match="key id"):
        CosignatureVerifier.from_vkey(VECTORS["sunlight-witness-cosig"]["witness_vkey"]
                                      .replace("+b8a2cf20+", "+b8a2cf21+"))


def test_witness_key_signs_what_the_verifier_accepts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = WitnessKey.generate("witness.test/w1")
    key.save(tmp_path / "w.key")
    assert (tmp_path / "w.key").stat().st_mode & 0o777 == 0o600
    loaded = WitnessKey.load(tmp_path / "w.key")
    assert loaded.vkey == key.vkey
    with pytest.raises(WitnessKeyError, match="refusing to overwrite"):
        key.save(tmp_path / "w.key")
    body = VECTORS["c2sp-cosignature-message"]["checkpoint_body"]
    line = loaded.cosign(body, 1679315147)
    blob = base64.b64decode(line.split()[-1])
    assert blob[:4] == key.verifier.key_id and int.from_bytes(blob[4:12], "big") == 1679315147
    note = body + "\n\u2014 example.com/behind-the-sofa " + "A" * 96 + "\n" + line
    assert require_quorum(parse_note(note), [CosignatureVerifier.from_vkey(key.vkey)], 1)
