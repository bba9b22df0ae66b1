"""The per-chunk check that worker processes run in parallel.

A chunk is a run of consecutive export lines whose length is a power of two and whose first
position is a multiple of it, so the chunk's leaves form aligned perfect subtrees of the log's
Merkle tree (RFC 9162 §2.1.1) and the main process can fold them into its compact range.

The worker only answers "clean" or "look here". It does not know the leaf hash before its first
line, and its key snapshot is the main process's *forecast* of the registry at the chunk's start
(registrations in chunks still in flight are foreseen by a cheap scan of their lines, see
``export.py``). So the main process checks the chunk boundary, checks that every key the chunk
used is the same in the forecast and in the real registry, and re-runs any chunk that is not
plainly clean with the exact state in ``sequence.check_run``, which names the failure.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass, field

from verifier.entry import ZERO_PREV, EntryProblem, parse_line
from verifier.keys import AgencyKey, KeyEvent, KeyProblem, KeyRegistry
from verifier.merkle import CompactRange
from verifier.sequence import content_problem

CHUNK_SIZE = 4096  # a power of two (see the module docstring)


@dataclass(frozen=True)
class ChunkJob:
    start: int
    blob: bytes  # the chunk's lines joined with b"\n"
    count: int
    keys: dict[tuple[str, str], AgencyKey]
    operator_public_key: bytes
    check_signatures: bool


@dataclass
class ChunkResult:
    start: int
    count: int
    failed_at: int | None = None
    first_prev: str | None = None
    subtrees: list[tuple[int, bytes]] = field(default_factory=list)
    last_hash: bytes | None = None
    before_last: bytes | None = None
    events: list[KeyEvent] = field(default_factory=list)
    used_keys: set[tuple[str, str]] = field(default_factory=set)


def check_chunk(job: ChunkJob) -> ChunkResult:
    registry = KeyRegistry(job.operator_public_key)
    registry.keys = dict(job.keys)
    result = ChunkResult(job.start, job.count)
    lines = job.blob.split(b"\n") if job.count else []
    if len(lines) != job.count:
        result.failed_at = job.start
        return result
    compact = CompactRange()
    expected_prev = ZERO_PREV if job.start == 0 else None
    last_hash = before_last = None
    used = result.used_keys
    b2a = binascii.b2a_base64
    position = job.start
    for line in lines:
        try:
            entry = parse_line(line)
        except EntryProblem:
            result.failed_at = position
            return result
        if entry.index != position:
            result.failed_at = position
            return result
        if expected_prev is None:
            result.first_prev = entry.prev
        elif entry.prev != expected_prev:
            result.failed_at = position
            return result
        if content_problem(entry, registry, job.check_signatures) is not None:
            result.failed_at = position
            return result
        used.add((entry.agency, entry.key_id))
        if entry.kind.startswith("agency.key_"):
            try:
                event = registry.event_for(entry)
            except KeyProblem:
                result.failed_at = position
                return result
            if event is not None:
                registry.apply(event)
                result.events.append(event)
        compact.append(entry.leaf_hash)
        before_last, last_hash = last_hash, entry.leaf_hash
        expected_prev = b2a(last_hash, newline=False).decode()
        position += 1
    result.subtrees = compact.subtrees()
    result.last_hash, result.before_last = last_hash, before_last
    return result
