"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed-note envelopes (Ed25519).

The operator never signs two inconsistent checkpoints: before signing, the root at the latest
signed size is recomputed from stored data and must equal the signed one (Sunlight/Tessera do the
same at start-up, which ``verify_latest`` implements).
"""

from __future__ import annotations

import base64
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


def sign(origin: str, size: int, root: bytes, key: SigningKey) -> Checkpoint:
    """c2sp.org/signed-note: text, a blank line, then '— name base64(keyid ‖ signature)'."""
    text = body(origin, size, root)
    signature = key.sign(text.encode())
    key_hash = note_key_id(origin, key.public_bytes)
    note = f"{text}\n\u2014 {origin} {b64encode(key_hash + signature)}\n"
    return Checkpoint(origin, size, root, note)


def open_own(note: str, origin: str, public_key: bytes) -> Checkpoint:
    """Parse a checkpoint this log signed and check the operator's signature on it."""
    text, sep, signatures = note.partition("\n\n")
    if not sep:
        raise IntegrityFailure("stored checkpoint is not a signed note (no blank line)")
    text += "\n"
    lines = text.split("\n")
    if len(lines) < 4 or lines[0] != origin:
        raise IntegrityFailure(f"stored checkpoint has origin {lines[0]!r}, expected {origin!r}")
    size, root = int(lines[1]), base64.b64decode(lines[2])
    wanted = note_key_id(origin, public_key)
    for line in signatures.splitlines():
        prefix = f"\u2014 {origin} "
        if not line.startswith(prefix):
            continue
        blob = base64.b64decode(line[len(prefix):])
        if blob[:4] != wanted:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(blob[4:], text.encode())
        except InvalidSignature:
            break
        return Checkpoint(origin, size, root, note)
    raise IntegrityFailure("stored checkpoint carries no valid signature by the operator key")
