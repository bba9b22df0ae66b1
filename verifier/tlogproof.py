"""Checking a C2SP tlog-proof offline: one entry, its inclusion proof and a cosigned checkpoint.

https://c2sp.org/tlog-proof "Verifying a tlog proof": (1) compute the leaf hash, (2) check the
checkpoint's origin and the log's signature, (3) verify the cosignatures of the known witnesses
against the k-of-n policy, (4) check the inclusion proof against the signed root.

The leaf comes from the caller (``leaf``, e.g. a go.sum record) or, in kiroku's files, from the
``extra`` line: base64 of ``{"format": "kiroku-entry/v1", "leaf", "payload", "salt"}``. The spec
says extra data is not to be trusted by itself, so every part of it is bound here: the leaf by
its hash in step 4, the payload and salt by the leaf's salted commitment, the index by the leaf's
own ``index``.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from verifier.checkpoint import Checkpoint, open_checkpoint
from verifier.cosignature import CosignatureVerifier, Cosigned, require_quorum
from verifier.encoding import b64decode
from verifier.entry import canonical_json, commitment_of
from verifier.errors import InclusionProofError, MalformedProof, VerificationError
from verifier.merkle import HASH_SIZE, leaf_hash, verify_inclusion
from verifier.note import NoteVerifier, parse_note

HEADER = "c2sp.org/tlog-proof@v1"
KIROKU_EXTRA = "kiroku-entry/v1"
_INDEX = re.compile(r"index (0|[1-9][0-9]{0,19})")


class EntryMismatch(VerificationError):
    """The entry carried in the proof does not match what the log committed to."""

    kind = "entry-mismatch"


@dataclass(frozen=True)
class TlogProof:
    extra: bytes | None
    index: int
    proof: tuple[bytes, ...]
    checkpoint: str  # the checkpoint note, verbatim


@dataclass(frozen=True)
class VerifiedProof:
    checkpoint: Checkpoint
    index: int
    cosigned: Cosigned | None
    entry: dict[str, Any] | None  # kiroku's leaf JSON, when the proof carries it
    payload: Any


def _b64(text: str, what: str) -> bytes:
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise MalformedProof(f"tlog-proof {what} is not base64") from None


def parse_tlog_proof(data: str | bytes) -> TlogProof:
    """Parse the tlog-proof format; raises MalformedProof."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedProof("tlog-proof is not UTF-8") from None
    head, sep, note = data.partition("\n\n")
    if not sep:
        raise MalformedProof("tlog-proof has no empty line before the checkpoint")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise MalformedProof(f"tlog-proof starts with {lines[0][:40]!r}, expected {HEADER!r}")
    position = 1
    extra = None
    if len(lines) > 1 and lines[1].startswith("extra "):
        extra = _b64(lines[1][len("extra "):], "extra data")
        position = 2
    if len(lines) <= position or (match := _INDEX.fullmatch(lines[position])) is None:
        raise MalformedProof("tlog-proof has no 'index N' line (decimal, no leading zeroes)")
    proof = tuple(_b64(line, "proof hash") for line in lines[position + 1:])
    if any(len(h) != HASH_SIZE for h in proof):
        raise MalformedProof("a tlog-proof hash is not 32 bytes")
    return TlogProof(extra, int(match.group(1)), proof, note)


def _kiroku_entry(extra: bytes) -> tuple[bytes, dict[str, Any], Any, bytes | None]:
    try:
        obj = json.loads(extra)
    except (ValueError, UnicodeDecodeError):
        raise MalformedProof("tlog-proof extra data is not kiroku's JSON") from None
    if not isinstance(obj, dict) or obj.get("format") != KIROKU_EXTRA:
        raise MalformedProof(f"tlog-proof extra data is not {KIROKU_EXTRA!r}")
    try:
        leaf = b64decode(obj.get("leaf"))
        salt = b64decode(obj["salt"]) if obj.get("salt") is not None else None
    except ValueError as exc:
        raise MalformedProof(f"tlog-proof extra data: {exc}") from None
    try:
        entry = json.loads(leaf)
    except (ValueError, UnicodeDecodeError):
        raise MalformedProof("the leaf in the extra data is not JSON") from None
    if not isinstance(entry, dict):
        raise MalformedProof("the leaf in the extra data is not a JSON object")
    return leaf, entry, obj.get("payload"), salt


def verify_tlog_proof(
    data: str | bytes, log_key: NoteVerifier, *, leaf: bytes | None = None,
    witnesses: Sequence[CosignatureVerifier] = (), quorum: int = 0, origin: str | None = None,
) -> VerifiedProof:
    """Verify a tlog-proof; returns what it proves or raises VerificationError.

    ``origin`` is the origin line to accept (default: the log key's name, as for kiroku's logs;
    sum.golang.org signs "go.sum database tree" with a key named "sum.golang.org").
    """
    parsed = parse_tlog_proof(data)
    entry = payload = None
    # Step 1: the leaf hash.
    if leaf is None:
        if parsed.extra is None:
            raise MalformedProof("the proof carries no leaf: give the entry's bytes (--leaf)")
        leaf, entry, payload, salt = _kiroku_entry(parsed.extra)
        if entry.get("index") != parsed.index:
            raise EntryMismatch(
                f"the leaf is entry {entry.get('index')!r}, the proof is for index {parsed.index}")
        if payload is not None and (salt is None or commitment_of(
                salt, canonical_json(payload)) != entry.get("commitment")):
            raise EntryMismatch("the payload and salt do not match the leaf's commitment")
    digest = leaf_hash(leaf)
    # Step 2: origin and the log's signature.
    checkpoint = open_checkpoint(parsed.checkpoint, log_key, origin=origin or log_key.name)
    # Step 3: the witnesses' cosignatures, k of n.
    cosigned = None
    if witnesses or quorum:
        cosigned = require_quorum(parse_note(parsed.checkpoint), witnesses, quorum)
    # Step 4: the inclusion proof against the signed root.
    try:
        verify_inclusion(digest, parsed.index, checkpoint.size, parsed.proof, checkpoint.root)
    except InclusionProofError as exc:
        raise InclusionProofError(f"entry {parsed.index}: {exc}") from None
    return VerifiedProof(checkpoint, parsed.index, cosigned, entry, payload)
