"""C2SP tlog-cosignature/v1 (Ed25519): witness cosignatures on checkpoints, and k-of-n quorums.

https://c2sp.org/tlog-cosignature. A cosignature is a signed-note signature line
``— <witness name> base64(key ID || u64 big-endian timestamp || Ed25519 signature)`` whose key ID
is ``SHA-256(name || 0x0A || 0x04 || public key)[:4]`` and whose signed message is
``"cosignature/v1\\ntime <timestamp>\\n" || checkpoint body``. Witness keys are vkeys with
signature type 0x04 (c2sp.org/signed-note "Signature types").

This module only verifies; the witness (``witness/``) signs.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from verifier.errors import CheckpointSignatureError, MalformedVkey, VerificationError
from verifier.note import Note, NoteSignature, note_key_id, parse_note

# c2sp.org/signed-note "Signature types": 0x04 is a timestamped Ed25519 checkpoint cosignature.
ALG_COSIGNATURE_V1 = 0x04
HEADER = b"cosignature/v1\n"
_TIMESTAMP_BYTES = 8
_SIGNATURE_BYTES = 64
# tlog-cosignature: the timestamp MUST NOT exceed 2^63 - 1.
_MAX_TIMESTAMP = (1 << 63) - 1


class QuorumNotMet(VerificationError):
    """Fewer than K of the trusted witnesses cosigned the checkpoint (k-of-n policy)."""

    kind = "witness-quorum"


def cosignature_message(body: str | bytes, timestamp: int) -> bytes:
    """tlog-cosignature "Ed25519 signed message": header line, time line, checkpoint body."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return HEADER + b"time %d\n" % timestamp + body


def _valid_key_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


@dataclass(frozen=True)
class CosignatureVerifier:
    """A witness's cosignature/v1 key, from ``name+hex(keyid)+base64(0x04 || pubkey)``."""

    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> CosignatureVerifier:
        if not _valid_key_name(name):
            raise MalformedVkey(f"witness name {name!r} is empty or has spaces or '+'")
        if len(public_key) != 32:
            raise MalformedVkey(f"witness Ed25519 key is {len(public_key)} bytes, expected 32")
        return cls(name, note_key_id(name, ALG_COSIGNATURE_V1, public_key), public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        parts = vkey.strip().split("+", 2)  # the base64 part may itself contain "+"
        if len(parts) != 3:
            raise MalformedVkey(f"witness vkey has {len(parts)} '+'-separated parts, expected 3")
        name, key_id_hex, key_b64 = parts
        try:
            key_id = bytes.fromhex(key_id_hex)
            key = binascii.a2b_base64(key_b64.encode("ascii"), strict_mode=True)
        except (ValueError, binascii.Error, UnicodeEncodeError):
            raise MalformedVkey("witness vkey key id is not hex or its key is not base64") from None
        if len(key_id) != 4:
            raise MalformedVkey(f"witness vkey key id {key_id_hex!r} is not 8 hex digits")
        if not key or key[0] != ALG_COSIGNATURE_V1:
            alg = f"0x{key[0]:02x}" if key else "nothing"
            raise MalformedVkey(
                f"witness vkey signature type is {alg}, expected 0x04 (tlog-cosignature/v1)")
        verifier = cls.from_public_key(name, key[1:])
        if verifier.key_id != key_id:
            raise MalformedVkey(
                f"witness vkey key id is {key_id.hex()}, expected {verifier.key_id.hex()}")
        try:
            Ed25519PublicKey.from_public_bytes(verifier.public_key)
        except ValueError as exc:
            raise MalformedVkey(f"witness vkey is not an Ed25519 public key: {exc}") from None
        return verifier

    @property
    def vkey(self) -> str:
        key = binascii.b2a_base64(bytes([ALG_COSIGNATURE_V1]) + self.public_key, newline=False)
        return f"{self.name}+{self.key_id.hex()}+{key.decode()}"

    def matches(self, signature: NoteSignature) -> bool:
        """signed-note: a line is this key's only if both the name and the key ID match."""
        return signature.name == self.name and signature.key_id == self.key_id

    def verify(self, body: str | bytes, signature: NoteSignature) -> int:
        """Check one cosignature line on checkpoint ``body``; return its timestamp.

        Raises CheckpointSignatureError when the line is this witness's (name and key ID) but
        does not verify: signed-note says such a note SHOULD be rejected as a whole.
        """
        blob = signature.signature
        if len(blob) != _TIMESTAMP_BYTES + _SIGNATURE_BYTES:
            raise CheckpointSignatureError(
                f"cosignature by {self.name} is {len(blob)} bytes after the key ID, expected "
                f"{_TIMESTAMP_BYTES + _SIGNATURE_BYTES} (u64 timestamp and Ed25519 signature)")
        timestamp = int.from_bytes(blob[:_TIMESTAMP_BYTES], "big")
        if timestamp > _MAX_TIMESTAMP:
            raise CheckpointSignatureError(f"cosignature by {self.name} has timestamp above 2^63-1")
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                blob[_TIMESTAMP_BYTES:], cosignature_message(body, timestamp))
        except InvalidSignature:
            raise CheckpointSignatureError(
                f"cosignature by {self.name}+{self.key_id.hex()} does not verify over the "
                "checkpoint") from None
        return timestamp


@dataclass(frozen=True)
class Cosigned:
    """The witnesses whose cosignatures verified on a note, with their timestamps."""

    note: Note
    timestamps: dict[str, int]

    @property
    def witnesses(self) -> list[str]:
        return sorted(self.timestamps)


def verify_cosignatures(
    message: str | bytes | Note, witnesses: Iterable[CosignatureVerifier],
) -> Cosigned:
    """Every valid cosignature on the note by one of ``witnesses`` (distinct witnesses only).

    Lines by unknown keys are ignored (signed-note); a line by a known witness that fails to
    verify raises CheckpointSignatureError. The log's own signature is not checked here: callers
    check it first with verifier.checkpoint.open_checkpoint.
    """
    note = message if isinstance(message, Note) else parse_note(message)
    trusted = list(witnesses)
    timestamps: dict[str, int] = {}
    for line in note.signatures:
        for witness in trusted:
            if witness.matches(line):
                timestamps[witness.vkey] = witness.verify(note.text, line)
    # Keyed by vkey so that two lines from one witness count once; reported by name.
    by_vkey = {w.vkey: w.name for w in trusted}
    return Cosigned(note, {by_vkey[k]: t for k, t in timestamps.items()})


def require_quorum(
    message: str | bytes | Note, witnesses: Sequence[CosignatureVerifier], quorum: int,
) -> Cosigned:
    """Refuse a checkpoint note without ``quorum`` valid cosignatures from ``witnesses``.

    tlog-proof "Verifying" step 3: which witnesses suffice is the verifier's policy; here k of
    the n trusted witness keys given. Returns the verified cosignatures, or raises QuorumNotMet.
    """
    if quorum < 0 or quorum > len({w.vkey for w in witnesses}):
        raise MalformedVkey(
            f"quorum {quorum} needs 0 <= K <= {len(witnesses)} (the distinct witness keys given)")
    cosigned = verify_cosignatures(message, witnesses)
    found = len(cosigned.timestamps)
    if found < quorum:
        names = ", ".join(cosigned.witnesses) or "none"
        raise QuorumNotMet(
            f"checkpoint has {found} valid cosignature(s) from the {len(witnesses)} trusted "
            f"witness(es) ({names}), expected at least {quorum}")
    return cosigned
