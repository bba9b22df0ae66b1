"""Byte-exact encodings shared by statements, leaves and proofs (docs/log-format.md)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import Any

import orjson
import rfc8785

from ledger.errors import MalformedStatement


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) bytes of ``value``.

    For JSON without floats, ``json.dumps`` with sorted keys, no whitespace and raw UTF-8 produces
    exactly the JCS bytes (same string escapes, RFC 8785 §3.2.2.2) several times faster than the
    pure-Python ``rfc8785`` encoder, provided no key needs UTF-16 ordering (only characters
    outside the BMP sort differently, §3.2.3). Anything else goes through ``rfc8785``.
    """
    if not _has_float(value):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if not _ASTRAL.search(text):
            try:
                return text.encode()
            except UnicodeEncodeError:
                raise MalformedStatement("JSON text holds an unpaired surrogate") from None
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeError) as exc:
        raise MalformedStatement(f"cannot canonicalise JSON: {exc}") from None


def canonical_json_validated(value: Any) -> bytes:
    """JCS bytes of JSON already validated to hold no floats and only ASCII object keys.

    Used on the append path for statements, provision payloads and leaves, whose shapes are
    checked at the boundary (ledger.signing.check_shape, ledger.provision). For them orjson with
    sorted keys writes exactly RFC 8785: integers below 2**53 in decimal, strings escaped as
    JCS escapes them (``\\"``, ``\\\\``, ``\\b \\f \\n \\r \\t``, other controls as
    lower-case ``\\u00xx``, everything else raw UTF-8), and ASCII keys sorted as UTF-16 sorts
    them. It is several times faster than ``json.dumps``; tests/ledger/test_encoding.py checks
    it against ``rfc8785`` and ``json.dumps`` on generated values.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        # A lone surrogate, an integer beyond 64 bits or a non-JSON type: not validated JSON.
        raise MalformedStatement(f"cannot canonicalise JSON: {exc}") from None


_ASTRAL = re.compile("[\U00010000-\U0010FFFF\ud800-\udfff]")


def _has_float(value: Any) -> bool:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return False
    if kind is int:
        # JCS serialises numbers as IEEE 754 doubles (RFC 8785 §3.2.2.3): big ints are floats.
        return not -(2**53) < value < 2**53
    if kind is dict:
        return any(type(k) is not str or _has_float(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return any(_has_float(v) for v in value)
    return True


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, *, field: str, length: int | None = None) -> bytes:
    """Strict standard base64 (with padding); raises MalformedStatement naming the field."""
    if not isinstance(text, str):
        raise MalformedStatement(f"{field}: expected a base64 string, got {type(text).__name__}")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MalformedStatement(f"{field}: not valid base64 ({exc})") from None
    if length is not None and len(data) != length:
        raise MalformedStatement(f"{field}: expected {length} bytes, got {len(data)}")
    return data


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with a ``Z`` suffix; microseconds only when present."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any, *, field: str) -> datetime:
    """Parse an RFC 3339 time that carries an explicit offset (``Z`` or ``±hh:mm``)."""
    if not isinstance(text, str):
        raise MalformedStatement(f"{field}: expected an RFC 3339 time string, got {text!r}")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise MalformedStatement(f"{field}: not an RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        raise MalformedStatement(f"{field}: time needs a UTC offset such as 'Z': {text!r}")
    return moment.astimezone(UTC)


def now_utc() -> datetime:
    return datetime.now(UTC)
