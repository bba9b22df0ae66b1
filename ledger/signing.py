"""Statement signing and checking (docs/log-format.md, "Statements").

An agency signs the RFC 8785 canonical JSON of a small envelope that carries a salted commitment
to the payload, never the payload itself: after the payload and salt are erased at the end of the
retention period the signature still verifies, and it cannot confirm a guessed payload.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from ledger.encoding import (
    b64decode,
    b64encode,
    canonical_json,
    canonical_json_validated,
    format_time,
    now_utc,
)
from ledger.errors import BadSignature, CommitmentMismatch, MalformedStatement
from ledger.keys import SigningKey

STATEMENT_VERSION = 1
#: Version 2 is a provision whose payload names each agency's link code instead of the shared
#: ``subject`` (docs/log-format.md); every other kind stays version 1.
PROVISION_VERSIONS = (1, 2)
STATEMENT_KEYS = frozenset({"v", "kind", "agency", "key_id", "time", "commitment"})
SALT_BYTES = 32
_COMMITMENT_DOMAIN = b"kiroku/commitment/v1\n"


def commitment(payload: Any, salt: bytes, *, validated: bool = False) -> str:
    """b64(SHA-256("kiroku/commitment/v1\\n" ‖ salt ‖ JCS(payload))).

    ``validated``: the payload passed ledger.provision's checks (no floats, fixed ASCII keys).
    """
    encode = canonical_json_validated if validated else canonical_json
    return b64encode(hashlib.sha256(_COMMITMENT_DOMAIN + salt + encode(payload)).digest())


def sign_statement(
    payload: dict[str, Any],
    *,
    kind: str,
    agency: str,
    key: SigningKey,
    time: datetime | None = None,
    salt: bytes | None = None,
    version: int | None = None,
) -> dict[str, Any]:
    """Build and sign a statement as an agency (or the operator) submits it.

    ``version``: the statement's ``v``; by default 2 for a provision payload that names link
    codes (``requester_code``), else 1. Returns ``{"statement", "signature", "payload",
    "salt"}`` ready to append.
    """
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    if version is None:
        version = 2 if kind == "provision" and "requester_code" in payload else STATEMENT_VERSION
    statement = {
        "v": version,
        "kind": kind,
        "agency": agency,
        "key_id": key.key_id,
        "time": format_time(time or now_utc()),
        "commitment": commitment(payload, salt),
    }
    signature = key.sign(canonical_json(statement))
    return {
        "statement": statement,
        "signature": b64encode(signature),
        "payload": payload,
        "salt": b64encode(salt),
    }


def check_shape(submission: Any) -> None:
    """Parse-time checks of a submitted statement's structure (no keys needed)."""
    if not isinstance(submission, dict):
        raise MalformedStatement("a statement must be a JSON object")
    missing = {"statement", "signature", "payload", "salt"} - submission.keys()
    if missing:
        raise MalformedStatement(f"statement is missing {', '.join(sorted(missing))}")
    extra = submission.keys() - {"statement", "signature", "payload", "salt"}
    if extra:
        raise MalformedStatement(f"statement has unknown fields {', '.join(sorted(extra))}")
    envelope = submission["statement"]
    if not isinstance(envelope, dict) or envelope.keys() != STATEMENT_KEYS:
        got = sorted(envelope) if isinstance(envelope, dict) else type(envelope).__name__
        raise MalformedStatement(
            f"'statement' must have exactly the keys {sorted(STATEMENT_KEYS)}, got {got}"
        )
    versions = PROVISION_VERSIONS if envelope.get("kind") == "provision" else (STATEMENT_VERSION,)
    if type(envelope["v"]) is not int or envelope["v"] not in versions:
        raise MalformedStatement(
            f"statement version {envelope['v']!r} is not supported (use "
            f"{' or '.join(map(str, versions))})")
    for field in ("kind", "agency", "key_id", "time", "commitment"):
        if not isinstance(envelope[field], str) or not envelope[field]:
            raise MalformedStatement(f"statement.{field} must be a non-empty string")
    if not isinstance(submission["payload"], dict):
        raise MalformedStatement("payload must be a JSON object")


def verify_signature(envelope: dict[str, Any], signature_b64: str, public_key: bytes) -> None:
    """Raise BadSignature unless ``signature`` is the key's Ed25519 signature of JCS(envelope).

    libsodium (PyNaCl) checks it: on this path, where every appended statement is checked, it
    is about 1.5 times as fast as OpenSSL's Ed25519 through ``cryptography``. It is the stricter
    of the two (canonical S and key, no small-order key or R), so whatever the log accepts also
    verifies for the independent verifier (``cryptography``);
    tests/ledger/test_signature_libraries.py checks both on valid, forged and edge-case
    signatures.
    """
    signature = b64decode(signature_b64, field="signature", length=64)
    try:
        # The envelope passed check_shape: only strings and the integer version.
        crypto_sign_open(signature + canonical_json_validated(envelope), public_key)
    except BadSignatureError:
        raise BadSignature(
            f"the signature does not verify with key {envelope.get('key_id')} of agency "
            f"{envelope.get('agency')}: sign the RFC 8785 canonical JSON of 'statement' "
            "(see docs/signing.md)"
        ) from None


_POOL: ThreadPoolExecutor | None = None
_CHUNK = 64  # statements per task: enough to amortise the hand-off to a thread


def _check_one(item: tuple[dict[str, Any], str, bytes]) -> BadSignature | MalformedStatement | None:
    try:
        verify_signature(*item)
    except (BadSignature, MalformedStatement) as exc:
        return exc
    return None


def _check_chunk(chunk: list[tuple[dict[str, Any], str, bytes]]
                 ) -> list[BadSignature | MalformedStatement | None]:
    return [_check_one(item) for item in chunk]


class SignatureChecks:
    """Checks (statement, signature, public key) triples as they are added.

    Ed25519 verification in libsodium releases the GIL (cffi calls do), so with ``parallel`` the checks run
    on a thread per core in chunks, started while the caller goes on with other work; results
    come back in the order added (None where the signature holds).
    """

    def __init__(self, *, parallel: bool) -> None:
        self._parallel = parallel
        self._chunk: list[tuple[dict[str, Any], str, bytes]] = []
        self._done: list[Future[list[BadSignature | MalformedStatement | None]]] = []
        self._serial: list[BadSignature | MalformedStatement | None] = []

    def add(self, statement: dict[str, Any], signature: str, public_key: bytes) -> None:
        item = (statement, signature, public_key)
        if not self._parallel:
            self._serial.append(_check_one(item))
            return
        self._chunk.append(item)
        if len(self._chunk) == _CHUNK:
            self._submit()

    def _submit(self) -> None:
        global _POOL
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                       thread_name_prefix="kiroku-verify")
        self._done.append(_POOL.submit(_check_chunk, self._chunk))
        self._chunk = []

    def results(self) -> Iterator[BadSignature | MalformedStatement | None]:
        if not self._parallel:
            yield from self._serial
            return
        if self._chunk:
            self._submit()
        for future in self._done:
            yield from future.result()


def verify_commitment(envelope: dict[str, Any], payload: Any, salt_b64: str, *,
                      validated: bool = False) -> None:
    salt = b64decode(salt_b64, field="salt", length=SALT_BYTES)
    expected = commitment(payload, salt, validated=validated)
    if not hmac.compare_digest(expected, envelope["commitment"]):
        raise CommitmentMismatch(
            f"statement.commitment does not match the payload and salt: got "
            f"{envelope['commitment']}, computed {expected}"
        )
