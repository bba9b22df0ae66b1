"""Strict decoding of the encodings the log format uses: standard base64 and RFC 3339 times."""

from __future__ import annotations

import binascii
import re

# Standard alphabet, padded (RFC 4648 §4), no whitespace.
_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")

# docs/log-format.md: RFC 3339 UTC with a "Z" suffix, whole seconds or microseconds.
TIME_PATTERN = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{6})?Z"
_TIME = re.compile(TIME_PATTERN)


def b64decode(text: object) -> bytes:
    """Decode standard padded base64, rejecting any other alphabet, whitespace or stray bits.

    Raises ValueError. Rejecting non-canonical encodings keeps one value to one spelling, so two
    texts compare equal exactly when their bytes do.
    """
    if not isinstance(text, str) or _B64.fullmatch(text) is None:
        raise ValueError(f"not standard padded base64: {str(text)[:60]!r}")
    raw = binascii.a2b_base64(text)
    if binascii.b2a_base64(raw, newline=False).decode("ascii") != text:
        raise ValueError(f"non-canonical base64 (stray bits): {text[:60]!r}")
    return raw


def b64encode(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


def time_key(text: object) -> str:
    """A string that sorts like the instant ``text`` names, or ValueError if it is not a log time.

    Log times have whole seconds or exactly six fractional digits, so padding the former to six
    zeros makes plain string order equal to time order (all are UTC).
    """
    if not isinstance(text, str) or _TIME.fullmatch(text) is None:
        raise ValueError(f"not an RFC 3339 UTC time with a Z suffix: {str(text)[:40]!r}")
    if len(text) == 20:
        return text[:19] + ".000000Z"
    return text
