"""Sharded logs (docs/shards.md): several exports, each its own log, and the chain between them.

``python -m verifier shards --shard EXPORT CHECKPOINT VKEY [--shard …]`` (oldest first) verifies
each export against its own checkpoint and vkey exactly as ``export`` does (each log has its own
origin), then the links:

1. every shard but the last is frozen: its last entry is ``shard.frozen``, signed by the
   operator, naming the shard's own origin, and its checkpoint covers that entry (the final
   checkpoint);
2. every shard but the first starts with ``shard.opened`` (entry 0, signed by the operator)
   naming its own origin and, as ``previous``, the shard before: that shard's origin, final size
   and root equal to the given final checkpoint, and the final checkpoint note itself, whose
   signature must verify with the previous shard's vkey.

So a reader holding the newest shard's export can tell which log came before and at which
signed size it ended, and no entry can be added to a frozen shard unnoticed.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from verifier.checkpoint import Checkpoint, open_checkpoint
from verifier.errors import UnusableInput, VerificationError

OPENED = "shard.opened"
FROZEN = "shard.frozen"
OPERATOR = "operator"


class ShardChainError(VerificationError):
    """Two shards do not link up: a missing or wrong ``shard.opened``/``shard.frozen``."""

    kind = "shard-chain"


@dataclass(frozen=True)
class Edge:
    """The first and the last entry of one verified export, with the export's checkpoint."""

    checkpoint: Checkpoint
    first: dict[str, Any]
    last: dict[str, Any]
    first_payload: Any
    last_payload: Any


def _entry(line: bytes, where: str) -> tuple[dict[str, Any], Any]:
    try:
        record = json.loads(line)
        leaf = json.loads(base64.b64decode(record["leaf"], validate=True))
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise UnusableInput(f"{where} is not an export line") from None
    if not isinstance(leaf, dict):
        raise UnusableInput(f"{where} does not hold a log entry")
    return leaf, record.get("payload")


def read_edge(export: str, checkpoint: Checkpoint) -> Edge:
    """First and last entries of an export file (already verified: only parsed here)."""
    first: bytes | None = None
    last: bytes | None = None
    try:
        with open(export, "rb") as stream:
            for line in stream:
                if line.strip():
                    first = first or line
                    last = line
    except OSError as exc:
        raise UnusableInput(f"cannot read export {export!r}: {exc.strerror or exc}") from None
    if first is None or last is None:
        raise ShardChainError(f"the export {export} of {checkpoint.origin} is empty")
    head, head_payload = _entry(first, f"{export} line 1")
    tail, tail_payload = _entry(last, f"{export}'s last line")
    return Edge(checkpoint, head, tail, head_payload, tail_payload)


def check_chain(edges: Sequence[Edge], vkeys: Sequence[Any]) -> str | None:
    """Raise ShardChainError at the first broken link; return the origin the first shard
    continues (its ``shard.opened`` names one that was not given), or None."""
    for position, edge in enumerate(edges):
        origin = edge.checkpoint.origin
        if position < len(edges) - 1:
            _check_frozen(edge, origin)
        if position > 0:
            _check_opened(edge, origin, edges[position - 1].checkpoint, vkeys[position - 1])
    first = edges[0]
    if first.first.get("kind") == OPENED and isinstance(first.first_payload, dict):
        previous = first.first_payload.get("previous")
        if isinstance(previous, dict):
            return str(previous.get("origin"))
    return None


def _check_frozen(edge: Edge, origin: str) -> None:
    tail = edge.last
    if tail.get("kind") != FROZEN or tail.get("agency") != OPERATOR:
        raise ShardChainError(
            f"{origin} is followed by another shard but is not frozen: its last entry "
            f"{tail.get('index')} is {tail.get('kind')!r}, expected {FROZEN!r} by the operator",
            index=tail.get("index"))
    if not isinstance(edge.last_payload, dict) or edge.last_payload.get("origin") != origin:
        raise ShardChainError(f"the {FROZEN} entry of {origin} names another log",
                              index=tail.get("index"))
    if tail.get("index") != edge.checkpoint.size - 1:
        raise ShardChainError(
            f"the final checkpoint of {origin} has size {edge.checkpoint.size}, expected "
            f"{tail.get('index', -1) + 1} (up to its {FROZEN} entry)", index=tail.get("index"))


def _check_opened(edge: Edge, origin: str, before: Checkpoint, before_vkey: Any) -> None:
    head, payload = edge.first, edge.first_payload
    if head.get("kind") != OPENED or head.get("agency") != OPERATOR or head.get("index") != 0:
        raise ShardChainError(
            f"{origin} follows {before.origin} but its entry 0 is {head.get('kind')!r}, "
            f"expected {OPENED!r} by the operator", index=0)
    if not isinstance(payload, dict) or payload.get("origin") != origin:
        raise ShardChainError(f"the {OPENED} entry of {origin} names another log", index=0)
    previous = payload.get("previous")
    if not isinstance(previous, dict):
        raise ShardChainError(f"{origin} names no previous shard, expected {before.origin}",
                              index=0)
    root = base64.b64encode(before.root).decode()
    named = (previous.get("origin"), previous.get("size"), previous.get("root"))
    if named != (before.origin, before.size, root):
        raise ShardChainError(
            f"{origin} continues {named[0]} at size {named[1]} root {named[2]}, but the shard "
            f"before ends at {before.origin} size {before.size} root {root}", index=0)
    note = previous.get("checkpoint")
    if not isinstance(note, str):
        raise ShardChainError(f"the {OPENED} entry of {origin} carries no checkpoint", index=0)
    try:
        carried = open_checkpoint(note, before_vkey, origin=before.origin)
    except VerificationError as exc:
        raise ShardChainError(f"the final checkpoint {origin} carries for {before.origin} does "
                              f"not verify: {exc}", index=0) from None
    if (carried.size, carried.root) != (before.size, before.root):
        raise ShardChainError(f"the final checkpoint {origin} carries differs from the one given "
                              f"for {before.origin}", index=0)


def shards_command(shards: Sequence[Sequence[str]], *, as_json: bool = False,
                   signatures: bool = True, workers: int | None = None) -> int:
    """Verify each ``(export, checkpoint, vkey)`` (oldest first), then the chain between them."""
    from verifier.cli import (
        EXIT_OK,
        _emit_json,
        _human,
        _read,
        _report_error,
        export_command,
        load_vkeys,
    )
    from verifier.export import read_checkpoint

    base: dict[str, Any] = {"shards": [list(s) for s in shards]}
    edges: list[Edge] = []
    keys: list[Any] = []
    try:
        if not shards:
            raise UnusableInput("give at least one --shard EXPORT CHECKPOINT VKEY")
        for export, checkpoint, vkey in shards:
            code = export_command(export, checkpoint, vkey, as_json=False,
                                  signatures=signatures, workers=workers)
            if code != EXIT_OK:
                return code
            verifiers = load_vkeys(vkey)
            cp, _ = read_checkpoint(_read(checkpoint, "checkpoint"), verifiers)
            edges.append(read_edge(export, cp))
            keys.append(verifiers)
        continues = check_chain(edges, keys)
    except VerificationError as exc:
        return _report_error(exc, as_json, base)
    chain = " → ".join(f"{e.checkpoint.origin} ({e.checkpoint.size})" for e in edges)
    after = f"; the first continues {continues}, not given" if continues else ""
    _human(f"OK {len(edges)} shard(s) verified and linked: {chain}{after}", as_json)
    if as_json:
        _emit_json({**base, "ok": True, "continues": continues, "chain": [
            {"origin": e.checkpoint.origin, "size": e.checkpoint.size,
             "root": e.checkpoint.root.hex()} for e in edges], "failure": None})
    return EXIT_OK
