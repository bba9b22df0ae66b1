"""The append path's JSON encoder writes exactly RFC 8785 bytes (commitments, signed statements
and leaves depend on them), compared with the reference ``rfc8785`` encoder and ``json.dumps``."""

from __future__ import annotations

import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.encoding import canonical_json, canonical_json_validated
from ledger.errors import MalformedStatement

# What validated statements, payloads and leaves hold: no floats, integers JCS writes exactly,
# ASCII object keys; any text at all in the values (controls, U+2028, astral, Japanese).
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_KEYS = st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=12)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_KEYS, inner, max_size=6),
    max_leaves=30,
)


@settings(max_examples=2000, deadline=None)
@given(_VALUES)
def test_validated_encoding_is_rfc8785(value: object) -> None:
    encoded = canonical_json_validated(value)
    assert encoded == rfc8785.dumps(value)
    assert encoded == json.dumps(value, sort_keys=True, separators=(",", ":"),
                                 ensure_ascii=False).encode()
    assert encoded == canonical_json(value)


@pytest.mark.parametrize("text", [
    "".join(map(chr, range(0x20))) + '"\\/\x7f',  # every control, quote, backslash, DEL
    "\u2028\u2029\ufeff\ufffe",                  # separators JavaScript once refused, BOM
    "世田谷区 住民税 𠮷野家 🎌",                       # Japanese, a surrogate pair, an emoji
])
def test_escapes_match_rfc8785(text: str) -> None:
    value = {"b": text, "a": [text, {"z": 1, "A": -(2**53) + 1, "_": None}]}
    assert canonical_json_validated(value) == rfc8785.dumps(value)


def test_keys_sorted_as_utf16_code_units() -> None:
    value = {k: 1 for k in ("b", "B", "_", "a1", "a", "~", "0", "\x7f", " ")}
    assert canonical_json_validated(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("value", [{"a": "\ud800"}, {"a": 2**64}, {"a": b"bytes"}])
def test_what_is_not_validated_json_is_refused(value: object) -> None:
    with pytest.raises(MalformedStatement):
        canonical_json_validated(value)
