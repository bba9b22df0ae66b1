"""The published signing vectors (docs/signing-vectors.json) hold, recomputed here directly from
docs/signing.md with hashlib, rfc8785 and cryptography — and by ledger.signing."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.encoding import parse_time
from ledger.keys import SigningKey
from ledger.signing import sign_statement

VECTORS = json.loads(
    (Path(__file__).parents[2] / "docs" / "signing-vectors.json").read_text(encoding="utf-8")
)["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_recomputed_from_the_documented_procedure(vector: dict) -> None:
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector["private_key_seed_hex"]))
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert base64.b64encode(public).decode() == vector["public_key_b64"]
    assert hashlib.sha256(public).hexdigest()[:16] == vector["key_id"]
    payload_jcs = rfc8785.dumps(vector["payload"])
    assert payload_jcs.decode() == vector["payload_jcs_utf8"]
    salt = base64.b64decode(vector["salt_b64"])
    commitment = hashlib.sha256(b"kiroku/commitment/v1\n" + salt + payload_jcs).digest()
    assert base64.b64encode(commitment).decode() == vector["commitment_b64"]
    statement_jcs = rfc8785.dumps(vector["statement"])
    assert statement_jcs.decode() == vector["statement_jcs_utf8"]
    assert base64.b64encode(private.sign(statement_jcs)).decode() == vector["signature_b64"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_ledger_signing_reproduces_vector(vector: dict) -> None:
    key = SigningKey(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector["private_key_seed_hex"])))
    signed = sign_statement(
        vector["payload"], kind="provision", agency=vector["statement"]["agency"], key=key,
        time=parse_time(vector["statement"]["time"], field="time"),
        salt=base64.b64decode(vector["salt_b64"]),
    )
    assert signed == vector["submission"]
