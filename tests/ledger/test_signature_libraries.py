"""The log checks statement signatures with libsodium (PyNaCl); the independent verifier with
OpenSSL (``cryptography``). Whatever the log accepts must verify for the verifier: libsodium's
acceptance has to be within OpenSSL's, on genuine, forged and edge-case signatures alike."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.encoding import b64encode, canonical_json_validated
from ledger.errors import BadSignature
from ledger.keys import raw_public_key
from ledger.signing import verify_signature

L = 2**252 + 27742317777372353535851937790883648493  # the group order
IDENTITY = (1).to_bytes(32, "little")  # the neutral point's encoding: a small-order key / R
# y = -1 (order 2) and a non-canonical encoding of the identity (y = p + 1)
ORDER_TWO = (2**255 - 19 - 1).to_bytes(32, "little")
NON_CANONICAL_IDENTITY = (2**255 - 19 + 1).to_bytes(32, "little")


def _envelope(n: int) -> dict[str, object]:
    return {"v": 1, "kind": "provision", "agency": "A001", "key_id": f"k{n}",
            "time": "2026-04-01T09:00:00Z", "commitment": b64encode(hashlib.sha256(
                str(n).encode()).digest())}


def _openssl_accepts(envelope: dict[str, object], signature: bytes, public: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature,
                                                          canonical_json_validated(envelope))
    except (InvalidSignature, ValueError):
        return False
    return True


def _log_accepts(envelope: dict[str, object], signature: bytes, public: bytes) -> bool:
    try:
        verify_signature(envelope, b64encode(signature), public)
    except BadSignature:
        return False
    return True


def _cases() -> list[tuple[str, dict[str, object], bytes, bytes]]:
    cases = []
    for n in range(40):
        key = Ed25519PrivateKey.generate()
        public = raw_public_key(key.public_key())
        envelope = _envelope(n)
        signature = key.sign(canonical_json_validated(envelope))
        cases.append(("genuine", envelope, signature, public))
        flipped = bytearray(signature)
        flipped[n % 64] ^= 1 << (n % 8)
        cases.append(("bit flipped", envelope, bytes(flipped), public))
        cases.append(("other statement", _envelope(n + 1), signature, public))
        s = int.from_bytes(signature[32:], "little")
        cases.append(("S + L (non-canonical)", envelope,
                      signature[:32] + (s + L).to_bytes(32, "little"), public))
        cases.append(("random", envelope, os.urandom(64), public))
    envelope = _envelope(99)
    zero = (0).to_bytes(32, "little")
    for key in (IDENTITY, ORDER_TWO, NON_CANONICAL_IDENTITY):
        # With a small-order key, R = identity and S = 0 satisfy the cofactorless equation.
        cases.append(("small-order key", envelope, IDENTITY + zero, key))
        cases.append(("small-order key, R of order 2", envelope, ORDER_TWO + zero, key))
    return cases


CASES = _cases()


@pytest.mark.parametrize("name, envelope, signature, public", CASES,
                         ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)])
def test_what_the_log_accepts_the_verifier_accepts(name: str, envelope: dict[str, object],
                                                   signature: bytes, public: bytes) -> None:
    log, verifier = _log_accepts(envelope, signature, public), _openssl_accepts(
        envelope, signature, public)
    if name == "genuine":
        assert log and verifier
    elif name.startswith("small-order"):
        assert not log  # the log is the stricter one
    else:
        assert not log and not verifier
    assert verifier or not log


@pytest.mark.parametrize("public", [IDENTITY, ORDER_TWO, NON_CANONICAL_IDENTITY, b"\x01" * 31],
                         ids=["identity", "order 2", "non-canonical", "31 bytes"])
def test_the_registry_refuses_keys_no_agency_can_hold(public: bytes) -> None:
    from ledger.errors import InvalidRequest
    from tests.dbutil import sqlite_database
    from tests.ledger.fixtures import make_world

    with sqlite_database() as url:
        world = make_world(url)
        size = world.ledger.tree_size()
        with pytest.raises(InvalidRequest, match="not a usable Ed25519 public key"):
            world.ledger.add_agency_key(world.provider, public)
        with pytest.raises(InvalidRequest, match="not a usable Ed25519 public key"):
            world.ledger.rotate_agency_key(world.provider, public)
        assert world.ledger.tree_size() == size  # nothing appended
        genuine = raw_public_key(Ed25519PrivateKey.generate().public_key())
        world.ledger.add_agency_key(world.provider, genuine)
        assert world.ledger.tree_size() == size + 1
        world.ledger.close()
