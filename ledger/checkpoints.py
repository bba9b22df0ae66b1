"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed-note envelopes (Ed25519).

The operator never signs two inconsistent checkpoints: before signing, the root at the latest
signed size is recomputed from stored data and must equal the signed one (Sunlight/Tessera do the
same at start-up, which ``verify_latest`` implements).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.encoding import b64encode
from ledger.errors import IntegrityFailure
from ledger.keys import SigningKey, note_key_id


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    note: str


def body(origin: str, size: int, root: bytes) -> str:
    """c2sp.org/tlog-checkpoint: origin, decimal size, base64 root, each ending in a newline."""
    return f"{origin}\n{size}\n{b64encode(root)}\n"


def sign(origin: str, size: int, root: bytes, key: SigningKey, *co_signers: SigningKey
         ) -> Checkpoint:
    """c2sp.org/signed-note: text, a blank line, then '— name base64(keyid ‖ signature)'.

    ``co_signers`` (an operator key in its rotation window, docs/key-rotation.md) add a line
    each under the same name: signed-note allows several signatures, and the key ID (name, type
    and public key) tells them apart, so a verifier holding either vkey finds its line and
    ignores the other (golang.org/x/mod/sumdb/note matches by name and key hash the same way).
    """
    text = body(origin, size, root)
    lines = []
    for signer in (key, *co_signers):
        key_hash = note_key_id(origin, signer.public_bytes)
        lines.append(f"\u2014 {origin} {b64encode(key_hash + signer.sign(text.encode()))}\n")
    return Checkpoint(origin, size, root, f"{text}\n{''.join(lines)}")


def open_own(note: str, origin: str, public_key: bytes | Sequence[bytes]) -> Checkpoint:
    """Parse a checkpoint this log signed and check an operator signature on it (by any of the
    operator keys given: a checkpoint signed before a rotation carries only the old key's)."""
    keys = [public_key] if isinstance(public_key, bytes) else list(public_key)
    text, sep, signatures = note.partition("\n\n")
    if not sep:
        raise IntegrityFailure("stored checkpoint is not a signed note (no blank line)")
    text += "\n"
    lines = text.split("\n")
    if len(lines) < 4 or lines[0] != origin:
        raise IntegrityFailure(f"stored checkpoint has origin {lines[0]!r}, expected {origin!r}")
    size, root = int(lines[1]), base64.b64decode(lines[2])
    wanted = {note_key_id(origin, k): k for k in keys}
    for line in signatures.splitlines():
        prefix = f"\u2014 {origin} "
        if not line.startswith(prefix):
            continue
        blob = base64.b64decode(line[len(prefix):])
        found = wanted.get(blob[:4])
        if found is None:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(found).verify(blob[4:], text.encode())
        except InvalidSignature:
            break
        return Checkpoint(origin, size, root, note)
    raise IntegrityFailure("stored checkpoint carries no valid signature by the operator key")
