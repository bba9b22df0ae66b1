"""A tiny RFC 6962 tree for the witness tests: roots, consistency proofs and signed checkpoints
made without the ledger, so these tests exercise the witness alone."""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.verifier.exportgen import mth, sign_note, vkey_of


def leaves(n: int, tag: str = "") -> list[bytes]:
    return [hashlib.sha256(b"\x00" + f"{tag}leaf {i}".encode()).digest() for i in range(n)]


def consistency(m: int, hashes: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.2 PROOF(m, D[n])."""

    def sub(m: int, d: list[bytes], whole: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if whole else [mth(d)]
        k = 1
        while k * 2 < n:
            k *= 2
        if m <= k:
            return sub(m, d[:k], whole) + [mth(d[k:])]
        return sub(m - k, d[k:], False) + [mth(d[:k])]

    return sub(m, hashes, True)


class FakeLog:
    """A log (origin, key) whose checkpoints cover the first ``size`` of ``hashes``."""

    def __init__(self, origin: str = "log.test/a", key: Ed25519PrivateKey | None = None) -> None:
        self.origin = origin
        self.key = key or Ed25519PrivateKey.generate()

    @property
    def vkey(self) -> str:
        return vkey_of(self.origin, self.key)

    def checkpoint(self, hashes: list[bytes]) -> str:
        root = base64.b64encode(mth(hashes)).decode()
        return sign_note(f"{self.origin}\n{len(hashes)}\n{root}\n", self.origin, self.key)


def request(old: int, proof: list[bytes], note: str) -> bytes:
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()
