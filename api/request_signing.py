"""Signed HTTP requests: how agencies and auditors authenticate reads (docs/api.md).

    Authorization: Kiroku-Signature principal="agency:131121", key_id="9f2c…",
                   created="1718000000", nonce="<b64>", signature="<b64>"

The signature is Ed25519 over the UTF-8 bytes of these lines, each ending in a newline::

    kiroku-request/v1
    <METHOD>
    <path and query exactly as sent>
    <principal>
    <key_id>
    <created: Unix seconds>
    <nonce: 16+ random bytes, base64>
    <b64(SHA-256(request body))>

An agency signs with a statement key registered to it in the log (valid and not revoked now); an
auditor with a key listed in ``KIROKU_AUDITOR_KEYS``. ``created`` must be within
``KIROKU_REQUEST_SKEW`` seconds of the server's clock, and a (key, nonce) pair seen in that window
by the same worker is refused, so a captured header cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from api.errors import Unauthenticated
from ledger.errors import StatementRejected
from ledger.keys import SigningKey

SCHEME = "Kiroku-Signature"
_PARAM = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*(?:,|$)')
_FIELDS = ("principal", "key_id", "created", "nonce", "signature")


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``kind`` is "agency", "auditor" or "resident"."""

    kind: str
    name: str  # agency code, auditor name, or (for residents) the certificate fingerprint


def signing_string(method: str, target: str, principal: str, key_id: str, created: str,
                   nonce: str, body: bytes) -> bytes:
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    lines = ["kiroku-request/v1", method.upper(), target, principal, key_id, created, nonce, digest]
    return ("\n".join(lines) + "\n").encode()


def sign_request(key: SigningKey, principal: str, method: str, target: str, body: bytes = b"",
                 *, now: float | None = None, nonce: str | None = None) -> str:
    """The Authorization header value for a request (used by kiroku.client and the tests)."""
    import os

    created = str(int(time.time() if now is None else now))
    nonce = nonce or base64.b64encode(os.urandom(18)).decode()
    message = signing_string(method, target, principal, key.key_id, created, nonce, body)
    signature = base64.b64encode(key.sign(message)).decode()
    return (f'{SCHEME} principal="{principal}", key_id="{key.key_id}", created="{created}", '
            f'nonce="{nonce}", signature="{signature}"')


def parse_header(value: str) -> dict[str, str]:
    scheme, _, rest = value.strip().partition(" ")
    if scheme != SCHEME:
        raise Unauthenticated(f"expected the {SCHEME} authorization scheme")
    params = dict(_PARAM.findall(rest))
    missing = [f for f in _FIELDS if f not in params]
    if missing:
        raise Unauthenticated(f"{SCHEME} header lacks {', '.join(missing)}")
    return params


class NonceStore(Protocol):
    def check_and_add(self, key_id: str, nonce: str, now: float) -> None:
        """Raise Unauthenticated when (key_id, nonce) was used before within the window."""


class NonceCache:
    """(key id, nonce) pairs seen within the clock-skew window, bounded in size."""

    def __init__(self, window: int, capacity: int = 200_000) -> None:
        self.window, self.capacity = window, capacity
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def check_and_add(self, key_id: str, nonce: str, now: float) -> None:
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now - 2 * self.window
                                  or len(self._seen) >= self.capacity):
                self._seen.popitem(last=False)
            if (key_id, nonce) in self._seen:
                raise Unauthenticated("this request signature was already used (replay refused)")
            self._seen[(key_id, nonce)] = now


def verify_request(header: str, method: str, target: str, body: bytes, *, ledger: object,
                   auditors: dict[str, tuple[str, bytes]], skew: int, nonces: NonceStore
                   ) -> Principal:
    """Check a Kiroku-Signature header; return the authenticated principal."""
    params = parse_header(header)
    kind, _, name = params["principal"].partition(":")
    try:
        created = int(params["created"])
    except ValueError:
        raise Unauthenticated("'created' must be Unix seconds") from None
    now = time.time()
    if abs(now - created) > skew:
        raise Unauthenticated(f"'created' is more than {skew} s from the server's clock")
    if not 16 <= len(params["nonce"]) <= 64:
        raise Unauthenticated("'nonce' must be 16 to 64 characters (base64 of random bytes)")
    if kind == "agency":
        public = _agency_key(ledger, name, params["key_id"], now)
    elif kind == "auditor":
        found = auditors.get(params["key_id"])
        if found is None or found[0] != name:
            raise Unauthenticated(f"no auditor key {params['key_id']!r} for {name!r}")
        public = found[1]
    else:
        raise Unauthenticated("principal must be 'agency:<code>' or 'auditor:<name>'")
    message = signing_string(method, target, params["principal"], params["key_id"],
                             params["created"], params["nonce"], body)
    try:
        signature = base64.b64decode(params["signature"], validate=True)
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, binascii.Error, ValueError):
        raise Unauthenticated(
            "the request signature does not verify; sign the kiroku-request/v1 string "
            "(docs/api.md)") from None
    nonces.check_and_add(params["key_id"], params["nonce"], now)
    return Principal(kind, name)


def _agency_key(ledger: object, code: str, key_id: str, now: float) -> bytes:
    from datetime import UTC, datetime

    registry = ledger.registry  # type: ignore[attr-defined]
    if key_id not in registry.keys:
        ledger.refresh_registry()  # type: ignore[attr-defined]
    at = datetime.fromtimestamp(now, UTC)
    try:
        return bytes(registry.key_for(code, key_id, at, at).public_key)
    except StatementRejected as exc:
        raise Unauthenticated(f"agency key refused: {exc}") from None
