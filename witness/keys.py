"""The witness's signing key: Ed25519, cosignature/v1 (signature type 0x04).

Stored as one line in the signed-note signer-key form that golang.org/x/mod/sumdb/note uses,
``PRIVATE+KEY+<name>+<hex key ID>+base64(0x04 || 32-byte seed)``, in a file only its owner can
read (0600), so the name travels with the key and ``kiroku witness key`` can print the vkey.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from verifier.cosignature import ALG_COSIGNATURE_V1, CosignatureVerifier, cosignature_message
from verifier.errors import VerificationError

_PREFIX = "PRIVATE+KEY+"


class WitnessKeyError(Exception):
    """The key file is missing, unreadable or not a cosignature/v1 signer key."""


@dataclass(frozen=True)
class WitnessKey:
    name: str
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> WitnessKey:
        key = cls(name, Ed25519PrivateKey.generate())
        key.verifier  # validates the name  # noqa: B018
        return key

    @property
    def public_bytes(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)

    @property
    def verifier(self) -> CosignatureVerifier:
        try:
            return CosignatureVerifier.from_public_key(self.name, self.public_bytes)
        except VerificationError as exc:
            raise WitnessKeyError(str(exc)) from None

    @property
    def vkey(self) -> str:
        return self.verifier.vkey

    def cosign(self, body: str, timestamp: int) -> str:
        """One tlog-cosignature/v1 note signature line (with its newline) over ``body``.

        The signature is key ID || u64 big-endian timestamp || Ed25519 over the cosignature/v1
        message (c2sp.org/tlog-cosignature "Format"); tlog-witness forbids a zero timestamp.
        """
        if timestamp <= 0:
            raise ValueError("a cosignature timestamp must be positive (tlog-witness)")
        signature = self.private.sign(cosignature_message(body, timestamp))
        blob = self.verifier.key_id + timestamp.to_bytes(8, "big") + signature
        return f"\u2014 {self.name} {base64.b64encode(blob).decode()}\n"

    def to_skey(self) -> str:
        seed = self.private.private_bytes(serialization.Encoding.Raw,
                                          serialization.PrivateFormat.Raw,
                                          serialization.NoEncryption())
        encoded = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + seed).decode()
        return f"{_PREFIX}{self.name}+{self.verifier.key_id.hex()}+{encoded}"

    @classmethod
    def from_skey(cls, text: str) -> WitnessKey:
        text = text.strip()
        if not text.startswith(_PREFIX):
            raise WitnessKeyError("not a signer key (expected 'PRIVATE+KEY+name+id+key')")
        parts = text[len(_PREFIX):].split("+", 2)
        if len(parts) != 3:
            raise WitnessKeyError("signer key has fewer than name, key id and key parts")
        name, key_id, encoded = parts
        try:
            raw = binascii.a2b_base64(encoded.encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise WitnessKeyError("signer key is not base64") from None
        if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise WitnessKeyError("signer key is not a 32-byte Ed25519 seed of type 0x04")
        key = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if key.verifier.key_id.hex() != key_id.lower():
            raise WitnessKeyError(f"signer key id {key_id} does not match its key and name")
        return key

    def save(self, path: Path) -> None:
        """Write the key (mode 0600) without overwriting an existing file."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise WitnessKeyError(f"{path} exists; refusing to overwrite a key") from None
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(self.to_skey() + "\n")
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, path: Path) -> WitnessKey:
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise WitnessKeyError(f"cannot read witness key {path}: {exc}") from None
        return cls.from_skey(text)
