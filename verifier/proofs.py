"""Proof JSON documents (docs/log-format.md "Proofs"), validated when parsed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from verifier.encoding import b64decode
from verifier.errors import MalformedProof


def _load(text: str | bytes) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedProof(f"proof is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedProof(f"proof is a JSON {type(obj).__name__}, expected an object")
    return obj


def _size(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if type(value) is not int or value < 0:
        raise MalformedProof(f"proof {key} is {value!r}, expected a non-negative integer")
    return value


def _hash(obj: dict[str, Any], key: str) -> bytes:
    try:
        return b64decode(obj.get(key))
    except ValueError as exc:
        raise MalformedProof(f"proof {key}: {exc}") from None


def _path(obj: dict[str, Any]) -> tuple[bytes, ...]:
    path = obj.get("proof")
    if not isinstance(path, list):
        raise MalformedProof("proof field 'proof' is not a list of base64 hashes")
    try:
        return tuple(b64decode(item) for item in path)
    except ValueError as exc:
        raise MalformedProof(f"proof hash: {exc}") from None


@dataclass(frozen=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    root_hash: bytes
    proof: tuple[bytes, ...]

    @classmethod
    def from_json(cls, text: str | bytes) -> InclusionProof:
        obj = _load(text)
        return cls(_size(obj, "leaf_index"), _size(obj, "tree_size"), _hash(obj, "leaf_hash"),
                   _hash(obj, "root_hash"), _path(obj))


@dataclass(frozen=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    proof: tuple[bytes, ...]

    @classmethod
    def from_json(cls, text: str | bytes) -> ConsistencyProof:
        obj = _load(text)
        return cls(_size(obj, "old_size"), _size(obj, "new_size"), _hash(obj, "old_root"),
                   _hash(obj, "new_root"), _path(obj))
