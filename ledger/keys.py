"""Ed25519 keys: generation, storage with 0600 permissions, key ids and C2SP vkeys."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_core_ed25519_is_valid_point

from ledger.encoding import b64encode
from ledger.errors import ConfigurationError, InvalidRequest

_ED25519_ALG = b"\x01"  # C2SP signed-note signature type for Ed25519


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def check_statement_key(public_key: bytes) -> None:
    """Refuse a public key no agency can hold the private half of: not 32 bytes, not a point's
    canonical encoding, or a point of small order. With a small-order key some signatures verify
    for every statement under OpenSSL's Ed25519 (tests/ledger/test_signature_libraries.py), so
    such a key in the registry would let anyone write statements an auditor's verifier accepts.
    """
    if len(public_key) != 32 or not crypto_core_ed25519_is_valid_point(public_key):
        raise InvalidRequest("not a usable Ed25519 public key: it must be the 32-byte encoding of "
                             "a point of the prime-order group (a generated key always is)")


def statement_key_id(public_key: bytes) -> str:
    """docs/log-format.md: hex(SHA-256(raw public key))[:16]."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def note_key_id(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ pubkey)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + _ED25519_ALG + public_key).digest()[:4]


def vkey(name: str, public_key: bytes) -> str:
    """C2SP signed-note verifier key: name+hex(keyid)+base64(0x01 ‖ pubkey)."""
    return f"{name}+{note_key_id(name, public_key).hex()}+{b64encode(_ED25519_ALG + public_key)}"


@dataclass(frozen=True)
class SigningKey:
    """A private Ed25519 key with its statement key id."""

    private: Ed25519PrivateKey

    @property
    def public_bytes(self) -> bytes:
        return raw_public_key(self.private.public_key())

    @property
    def key_id(self) -> str:
        return statement_key_id(self.public_bytes)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    def to_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, data: bytes, *, source: str = "key") -> SigningKey:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"{source}: not a PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigurationError(f"{source}: expected an Ed25519 key, got {type(key).__name__}")
        return cls(key)

    def save(self, path: Path) -> None:
        """Write the key so that only its owner can read it (mode 0600), atomically."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(self.to_pem())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read key {path}: {exc.strerror}") from None
        return cls.from_pem(data, source=str(path))


def load_or_create(path: Path) -> tuple[SigningKey, bool]:
    """Load the key at ``path``, creating it on first use. Returns (key, created)."""
    if path.exists():
        return SigningKey.load(path), False
    key = SigningKey.generate()
    key.save(path)
    return key, True


# Operator key rotation (docs/key-rotation.md) ------------------------------------------------
#: The previous operator key, kept beside ``operator.pem`` while it co-signs checkpoints.
RETIRING_KEY_FILE = "operator.retiring.pem"
#: Domain separation of the new key's proof of possession in an ``operator.key_rotated`` entry.
POSSESSION_CONTEXT = b"kiroku/operator-key-rotation/v1\n"


def possession_message(payload: dict[str, object]) -> bytes:
    """What the new operator key signs: the context line, then JCS of the rotation payload
    without its ``possession`` field (RFC 8785), so the proof binds both keys and the window."""
    from ledger.encoding import canonical_json

    return POSSESSION_CONTEXT + canonical_json(
        {k: v for k, v in payload.items() if k != "possession"})
