"""C2SP signed-note: verifier keys and signature checking (Ed25519 only).

https://c2sp.org/signed-note. A note is UTF-8 text ending in a newline, a blank line, then one
or more lines ``— <key name> base64(key id || signature)``. The verifier here only verifies; it
never signs.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from verifier.errors import CheckpointSignatureError, MalformedNote, MalformedVkey

# signed-note "Signature types": 0x01 is Ed25519.
ALG_ED25519 = 0x01
_SIG_LINE = re.compile(r"\u2014 (\S+) ([A-Za-z0-9+/=]+)")
_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}")
_MAX_SIGNATURES = 100


def note_key_id(name: str, alg: int, public_key: bytes) -> bytes:
    """signed-note key ID: SHA-256(name || 0x0A || signature type || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()[:4]


def _valid_key_name(name: str) -> bool:
    # signed-note: a key name is non-empty, has no Unicode spaces and no "+".
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


@dataclass(frozen=True)
class NoteVerifier:
    """An Ed25519 note verifier key, parsed from ``name+hex(keyid)+base64(0x01 || pubkey)``."""

    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        vkey = vkey.strip()
        # The base64 part may itself contain "+": split at the first two only.
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise MalformedVkey(f"vkey has {len(parts)} '+'-separated parts, expected 3")
        name, key_id_hex, key_b64 = parts
        if not _valid_key_name(name):
            raise MalformedVkey(f"vkey name {name!r} is empty or has spaces or '+'")
        if _KEY_ID_HEX.fullmatch(key_id_hex) is None:
            raise MalformedVkey(f"vkey key id {key_id_hex!r} is not 8 hex digits")
        try:
            key = binascii.a2b_base64(key_b64.encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
            raise MalformedVkey(f"vkey key is not base64: {exc}") from None
        if not key or key[0] != ALG_ED25519:
            alg = f"0x{key[0]:02x}" if key else "nothing"
            raise MalformedVkey(f"vkey signature type is {alg}, expected 0x01 (Ed25519)")
        public_key = key[1:]
        if len(public_key) != 32:
            raise MalformedVkey(f"vkey Ed25519 key is {len(public_key)} bytes, expected 32")
        key_id = bytes.fromhex(key_id_hex)
        expected = note_key_id(name, ALG_ED25519, public_key)
        if key_id != expected:
            raise MalformedVkey(f"vkey key id is {key_id.hex()}, expected {expected.hex()}")
        try:
            Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError as exc:
            raise MalformedVkey(f"vkey key is not an Ed25519 public key: {exc}") from None
        return cls(name=name, key_id=key_id, public_key=public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class Note:
    """A parsed (not yet verified) signed note."""

    text: str
    signatures: tuple[NoteSignature, ...]


def parse_note(message: str | bytes) -> Note:
    """Split a signed note into its text and signature lines; raises MalformedNote."""
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedNote("note is not valid UTF-8") from None
    # signed-note: the text is UTF-8 without control characters other than newline.
    for ch in message:
        if ch != "\n" and (ord(ch) < 0x20 or ord(ch) == 0x7F):
            raise MalformedNote(f"note contains control character U+{ord(ch):04X}")
    if not message.endswith("\n"):
        raise MalformedNote("note does not end with a newline")
    split = message.rfind("\n\n")
    if split < 0:
        raise MalformedNote("note has no blank line before its signatures")
    text, sig_block = message[: split + 1], message[split + 2 :]
    lines = sig_block.split("\n")[:-1]
    if not lines:
        raise MalformedNote("note has no signature lines")
    if len(lines) > _MAX_SIGNATURES:
        raise MalformedNote(f"note has {len(lines)} signatures, expected at most {_MAX_SIGNATURES}")
    signatures = []
    for line in lines:
        match = _SIG_LINE.fullmatch(line)
        if match is None or not _valid_key_name(match.group(1)):
            raise MalformedNote(f"malformed signature line {line[:80]!r}")
        try:
            blob = binascii.a2b_base64(match.group(2).encode("ascii"), strict_mode=True)
        except (binascii.Error, ValueError):
            raise MalformedNote(f"signature is not base64 in line {line[:80]!r}") from None
        if len(blob) < 5:
            raise MalformedNote(f"signature in line {line[:80]!r} is too short")
        signatures.append(NoteSignature(match.group(1), blob[:4], blob[4:]))
    return Note(text=text, signatures=tuple(signatures))


def open_note(message: str | bytes, verifiers: list[NoteVerifier] | tuple[NoteVerifier, ...]) -> Note:
    """Parse a note and check that at least one trusted key signed it.

    Signatures by keys not in ``verifiers`` are ignored (a note may carry witness cosignatures);
    a signature line naming a trusted key (same name and key id) that does not verify is an error,
    as in golang.org/x/mod/sumdb/note. Returns the note, or raises CheckpointSignatureError /
    MalformedNote.
    """
    note = parse_note(message)
    known = {(v.name, v.key_id): v for v in verifiers}
    text_bytes = note.text.encode("utf-8")
    verified = []
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verifier.verify(text_bytes, sig.signature):
            raise CheckpointSignatureError(
                f"signature by {sig.name}+{sig.key_id.hex()} does not verify over the note text"
            )
        verified.append(verifier)
    if not verified:
        seen = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in note.signatures)
        trusted = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in verifiers)
        raise CheckpointSignatureError(
            f"note has no verifiable signatures: got signatures by {seen}, expected one by {trusted}"
        )
    return note
