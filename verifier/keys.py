"""Which key may sign which entry: the operator's key and the agency keys the log registered.

docs/log-format.md "Validity rules" 4: an entry by ``operator`` is checked with the operator's key
(statement key id ``hex(SHA-256(pubkey))[:16]``); any other agency's entry needs a key added for
that agency by an *earlier* ``agency.key_added`` entry, with ``valid_from <= time`` and, once
revoked, ``time < revoked_at`` and ``logged_at < revoked_at``.

Operator key rotation (docs/key-rotation.md): an ``operator.key_rotated`` entry, signed by the
operator key in force, names the next key with its proof of possession; from the next entry on,
registrar entries must be signed by the new key. Operator keys live in the same map as agency
keys, under agency ``operator``, so the parallel check's key snapshots carry them too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from verifier.encoding import b64decode, time_key
from verifier.entry import OPERATOR, Entry, canonical_json

OPERATOR_KINDS = frozenset(
    {"catalog.loaded", "catalog.replaced", "agency.registered", "agency.key_added",
     "agency.key_revoked", "operator.key_rotated", "proxy.registered", "proxy.cancelled",
     "shard.opened", "shard.frozen"}
)
ROTATION = "operator.key_rotated"
# What the new operator key signs to prove possession: this line, then JCS(payload without
# "possession") (RFC 8785), so the proof binds the old key, the new key and the window.
POSSESSION_CONTEXT = b"kiroku/operator-key-rotation/v1\n"

# ("add", agency, key_id, public_key, valid_from) or ("revoke", agency, key_id, revoked_at); times
# are time_key() strings so they compare as instants.
KeyEvent = tuple[Any, ...]


class KeyProblem(Exception):
    """The entry's key is unknown, not valid at its time, or the wrong signer for its kind."""


def statement_key_id(public_key: bytes) -> str:
    """docs/log-format.md: key_id = hex(SHA-256(raw 32-byte public key))[:16]."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AgencyKey:
    public_key: bytes
    valid_from: str
    revoked_at: str | None = None
    superseded: bool = False  # an operator key replaced by an operator.key_rotated entry


class KeyRegistry:
    """Agency keys in force after the entries seen so far. ``version`` counts applied events."""

    def __init__(self, operator_public_key: bytes, more_operator_keys: Sequence[bytes] = ()
                 ) -> None:
        # The first vkey's key; every key given (``--vkey`` is repeatable) may sign registrar
        # entries until a rotation in the log supersedes it.
        self.operator_public_key = operator_public_key
        self.operator_key_id = statement_key_id(operator_public_key)
        self.keys: dict[tuple[str, str], AgencyKey] = {}
        self.history: list[tuple[str, str]] = []
        for public in (operator_public_key, *more_operator_keys):
            self.keys[(OPERATOR, statement_key_id(public))] = AgencyKey(public, "")

    @property
    def version(self) -> int:
        return len(self.history)

    def copy(self) -> KeyRegistry:
        clone = KeyRegistry(self.operator_public_key)
        clone.keys = dict(self.keys)  # the operator keys included  # AgencyKey is immutable
        clone.history = list(self.history)
        return clone

    def event_for(self, entry: Entry) -> KeyEvent | None:
        """The registry change an ``agency.key_added``/``key_revoked`` entry makes (or None).

        Raises KeyProblem if the registration itself is not usable.
        """
        if entry.kind not in ("agency.key_added", "agency.key_revoked", ROTATION) or entry.erased:
            return None
        payload = entry.payload
        if not isinstance(payload, dict):
            raise KeyProblem(f"{entry.kind} payload is not an object")
        if entry.kind == ROTATION:
            return self._rotation(entry, payload)
        agency, key_id = payload.get("agency"), payload.get("key_id")
        if not isinstance(agency, str) or not isinstance(key_id, str) or not agency:
            raise KeyProblem(f"{entry.kind} payload has no agency/key_id strings")
        try:
            if entry.kind == "agency.key_revoked":
                return ("revoke", agency, key_id, time_key(payload.get("revoked_at")))
            public_key = b64decode(payload.get("public_key"))
            valid_from = time_key(payload.get("valid_from"))
        except ValueError as exc:
            raise KeyProblem(f"{entry.kind} payload: {exc}") from None
        if len(public_key) != 32:
            raise KeyProblem(f"registered public key is {len(public_key)} bytes, expected 32")
        if re.fullmatch(r"[0-9a-f]{16}", key_id) is None or key_id != statement_key_id(public_key):
            raise KeyProblem(
                f"registered key_id is {key_id!r}, expected {statement_key_id(public_key)!r} "
                "(hex SHA-256 of the public key, first 16 digits)"
            )
        try:
            Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError:
            raise KeyProblem("registered public key is not an Ed25519 key") from None
        if agency == OPERATOR:
            raise KeyProblem("agency.key_added may not add keys for the operator")
        return ("add", agency, key_id, public_key, valid_from)

    def _rotation(self, entry: Entry, payload: dict[str, Any]) -> KeyEvent:
        """("rotate", "operator", new key_id, new public key, previous key_id, retired_at)."""
        expected = {"key_id", "public_key", "previous_public_key", "valid_from", "retired_at",
                    "possession"}
        if set(payload) != expected:
            raise KeyProblem(f"{ROTATION} payload has keys {sorted(payload)}, expected "
                             f"{sorted(expected)}")
        try:
            public_key = b64decode(payload["public_key"])
            previous = b64decode(payload["previous_public_key"])
            possession = b64decode(payload["possession"])
            time_key(payload["valid_from"])
            retired_at = time_key(payload["retired_at"])
        except (ValueError, TypeError) as exc:
            raise KeyProblem(f"{ROTATION} payload: {exc}") from None
        if len(public_key) != 32 or payload["key_id"] != statement_key_id(public_key):
            raise KeyProblem(f"{ROTATION} key_id is {payload['key_id']!r}, expected "
                             "hex SHA-256 of its 32-byte public key, first 16 digits")
        if statement_key_id(previous) != entry.key_id:
            raise KeyProblem(f"{ROTATION} names previous key {statement_key_id(previous)}, but "
                             f"is signed by {entry.key_id}")
        known = self.keys.get((OPERATOR, payload["key_id"]))
        if known is not None and known.superseded:  # a given vkey may name it already
            raise KeyProblem(f"{ROTATION} brings back operator key {payload['key_id']}")
        message = POSSESSION_CONTEXT + canonical_json(
            {k: v for k, v in payload.items() if k != "possession"})
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(possession, message)
        except (ValueError, InvalidSignature):
            raise KeyProblem(f"{ROTATION} possession signature does not verify with the new "
                             "key") from None
        return ("rotate", OPERATOR, payload["key_id"], public_key, entry.key_id, retired_at)

    def operator_keys(self) -> dict[str, bytes]:
        """Every operator key known: given (vkeys) or brought in by rotation entries."""
        return {k[1]: v.public_key for k, v in self.keys.items() if k[0] == OPERATOR}

    def apply(self, event: KeyEvent) -> None:
        agency, key_id = event[1], event[2]
        current = self.keys.get((agency, key_id))
        if event[0] == "rotate":
            previous = self.keys.get((OPERATOR, event[4]))
            if previous is not None:
                self.keys[(OPERATOR, event[4])] = replace(previous, revoked_at=event[5],
                                                          superseded=True)
            if current is None:
                self.keys[(OPERATOR, key_id)] = AgencyKey(event[3], "")
            self.history.append((agency, key_id))
            return
        if event[0] == "add":
            if current is None:  # a re-add can neither move valid_from nor lift a revocation
                self.keys[(agency, key_id)] = AgencyKey(event[3], event[4])
        elif current is not None and (current.revoked_at is None or event[3] < current.revoked_at):
            self.keys[(agency, key_id)] = AgencyKey(current.public_key, current.valid_from, event[3])
        self.history.append((agency, key_id))

    def public_key_for(self, entry: Entry) -> bytes:
        """The key that must have signed ``entry``, or KeyProblem saying why none is valid."""
        if entry.agency == OPERATOR:
            operator = self.keys.get((OPERATOR, entry.key_id))
            if operator is None:
                current = [k[1] for k, v in self.keys.items()
                           if k[0] == OPERATOR and not v.superseded]
                raise KeyProblem(
                    f"operator entry names key {entry.key_id}, expected the operator's key "
                    f"{' or '.join(current)}"
                )
            if operator.superseded:
                raise KeyProblem(
                    f"operator key {entry.key_id} was replaced by an {ROTATION} entry before "
                    "this one; registrar entries after it must be signed by the new key")
            if entry.kind == "provision":
                raise KeyProblem("a provision must be signed by its requester or provider, got the operator")
            if entry.kind == "provision.flagged":
                raise KeyProblem("a flag must be signed by a party to the provision or an "
                                 "authority, got the operator")
            return operator.public_key
        if entry.kind in OPERATOR_KINDS:
            raise KeyProblem(f"{entry.kind} must be signed by the operator, got agency {entry.agency!r}")
        key = self.keys.get((entry.agency, entry.key_id))
        if key is None:
            raise KeyProblem(
                f"no key {entry.key_id} was added for agency {entry.agency!r} before this entry"
            )
        signed_at = _instant(entry.time)
        if signed_at < key.valid_from:
            raise KeyProblem(
                f"statement time {entry.time} is before key {entry.key_id}'s valid_from"
            )
        if key.revoked_at is not None:
            if signed_at >= key.revoked_at:
                raise KeyProblem(f"statement time {entry.time} is not before key {entry.key_id}'s revocation")
            if _instant(entry.logged_at) >= key.revoked_at:
                raise KeyProblem(
                    f"entry was logged at {entry.logged_at}, not before key {entry.key_id}'s revocation"
                )
        return key.public_key


def _instant(text: str) -> str:
    """time_key() for a time the entry parser already validated (skips the pattern check)."""
    return text[:19] + ".000000Z" if len(text) == 20 else text


_KEY_CACHE: dict[bytes, Ed25519PublicKey] = {}


def signature_valid(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Ed25519 (RFC 8032 §5.1.7) over ``message``; key objects are cached per process."""
    key = _KEY_CACHE.get(public_key)
    if key is None:
        if len(_KEY_CACHE) > 4096:
            _KEY_CACHE.clear()
        key = _KEY_CACHE[public_key] = Ed25519PublicKey.from_public_bytes(public_key)
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
