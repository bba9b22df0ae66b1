"""Stateless, expiring tokens: login challenges and resident sessions, HMAC-SHA256 signed.

A token is ``b64url(JSON claims) "." b64url(HMAC-SHA256(secret, purpose ‖ 0x0A ‖ claims))``.
The purpose ("challenge", "session") is bound into the MAC so one kind cannot stand in for
another. Nothing personal is inside: a session names the resident's certificate fingerprint, and
the pseudonym is looked up on each request (so revoking the certificate ends its sessions).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from api.errors import Unauthenticated


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, purpose: str, body: bytes) -> bytes:
        return hmac.new(self._secret, purpose.encode() + b"\n" + body, hashlib.sha256).digest()

    def issue(self, purpose: str, claims: dict[str, Any], ttl: int) -> tuple[str, int]:
        """Return (token, expiry as Unix seconds)."""
        expires = int(time.time()) + ttl
        body = json.dumps({**claims, "exp": expires, "jti": secrets.token_urlsafe(12)},
                          separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(body)}.{_b64(self._mac(purpose, body))}", expires

    def open(self, purpose: str, token: str) -> dict[str, Any]:
        """The token's claims; raises Unauthenticated if forged, malformed or expired."""
        head, sep, tail = token.partition(".")
        try:
            if not sep or len(token) > 4096:
                raise ValueError
            body, mac = _unb64(head), _unb64(tail)
            claims = json.loads(body)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise Unauthenticated(f"the {purpose} token is malformed") from None
        if not hmac.compare_digest(mac, self._mac(purpose, body)) or not isinstance(claims, dict):
            raise Unauthenticated(f"the {purpose} token is not valid here")
        if not isinstance(claims.get("exp"), int) or claims["exp"] < time.time():
            raise Unauthenticated(f"the {purpose} token has expired; get a new one")
        return claims
