"""Byte-exact encodings shared by statements, leaves and proofs (docs/log-format.md)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

import rfc8785

from ledger.errors import MalformedStatement


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) bytes of ``value``.

    For the common case (objects of strings, integers, booleans and null) ``json.dumps`` with
    sorted keys and no whitespace produces exactly the JCS bytes, several times faster than the
    pure-Python ``rfc8785`` encoder; anything else (floats, non-BMP keys whose UTF-16 order
    differs) goes through ``rfc8785``.
    """
    if _is_simple(value):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return rfc8785.dumps(value)


def _is_simple(value: Any) -> bool:
    if isinstance(value, str):
        # JCS sorts keys by UTF-16 code units; Python sorts by code points. They agree unless a
        # string has characters outside the BMP, and json.dumps escapes lone surrogates alike.
        return value.isascii() or all(ord(c) < 0xD800 for c in value)
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        # JCS serialises numbers as IEEE 754 doubles (RFC 8785 §3.2.2.3).
        return -(2**53) < value < 2**53
    if isinstance(value, dict):
        return all(_is_simple(k) and _is_simple(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_simple(v) for v in value)
    return False


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
