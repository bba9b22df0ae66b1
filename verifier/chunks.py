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
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from verifier.entry import (
    B32_PATTERN,
    COMMITMENT_PREFIX,
    FAST_LEAF,
    MAX_SAFE_INT,
    OPERATOR,
    REGISTRATION_KINDS,
    ZERO_PREV,
    EntryProblem,
    parse_line,
)
from verifier.erased import ErasedRanges
from verifier.keys import AgencyKey, KeyEvent, KeyProblem, KeyRegistry
from verifier.merkle import CompactRange
from verifier.sequence import content_problem

CHUNK_SIZE = 4096  # a power of two (see the module docstring)


@dataclass(frozen=True)
class ChunkJob:
    start: int
    blob: bytes | None  # the chunk's lines joined with b"\n", or None to read ``span``
    count: int
    keys: dict[tuple[str, str], AgencyKey]
    operator_public_key: bytes
    check_signatures: bool
    # (path, offset, length) of the same lines in a regular file: the worker reads them itself,
    # so the export's bytes are not copied through a pipe.
    span: tuple[str, int, int] | None = None


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
    erased: list[tuple[int, int]] = field(default_factory=list)  # erased by retention (erased.py)


_FILES: dict[str, int] = {}  # per worker process: export path -> open descriptor


def _read_span(path: str, offset: int, length: int) -> bytes | None:
    fd = _FILES.get(path)
    if fd is None:
        if len(_FILES) > 16:
            for old in _FILES.values():
                os.close(old)
            _FILES.clear()
        fd = _FILES[path] = os.open(path, os.O_RDONLY)
    parts = []
    while length > 0:
        data = os.pread(fd, length, offset)
        if not data:
            return None  # the file shrank under us: the main process re-reads and reports
        parts.append(data)
        offset += len(data)
        length -= len(data)
    return b"".join(parts)


def chunk_lines(job: ChunkJob) -> list[bytes] | None:
    """The job's lines, or None when they cannot be had (the caller reports the chunk)."""
    if job.count == 0:
        return []
    if job.blob is not None:
        blob: bytes | None = job.blob
    else:
        assert job.span is not None
        blob = _read_span(*job.span)
    if blob is None:
        return None
    lines = blob.split(b"\n")
    return lines if len(lines) == job.count else None


def check_chunk(job: ChunkJob) -> ChunkResult:
    lines = chunk_lines(job)
    if lines is None:
        return ChunkResult(job.start, job.count, failed_at=job.start)
    return fast_chunk(job, lines) or general_chunk(job, lines)


def general_chunk(job: ChunkJob, lines: list[bytes]) -> ChunkResult:
    """Any chunk, entry by entry through ``parse_line`` and ``content_problem``."""
    registry = KeyRegistry(job.operator_public_key)
    registry.keys = dict(job.keys)
    result = ChunkResult(job.start, job.count)
    compact = CompactRange()
    expected_prev = ZERO_PREV if job.start == 0 else None
    last_hash = before_last = None
    used = result.used_keys
    erased = ErasedRanges(result.erased)
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
        if entry.erased:
            erased.add(position)
        if entry.kind in REGISTRATION_KINDS:  # agency keys and operator.key_rotated
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


# The common line, as kiroku writes it (JCS, payload present or erased), in one match.
_KEPT_LINE = re.compile(
    rb'\{"erased":false,"index":(0|[1-9][0-9]{0,15}),"leaf":"([A-Za-z0-9+/]+={0,2})"'
    rb',"leaf_hash":"(' + B32_PATTERN + rb')","payload":(.+),"salt":"(' + B32_PATTERN + rb')"\}',
    re.DOTALL,
)
_ERASED_LINE = re.compile(
    rb'\{"erased":true,"index":(0|[1-9][0-9]{0,15}),"leaf":"([A-Za-z0-9+/]+={0,2})"'
    rb',"leaf_hash":"(' + B32_PATTERN + rb')","payload":null,"salt":null\}'
)
_MICROS = b".000000Z"


def fast_chunk(job: ChunkJob, lines: list[bytes]) -> ChunkResult | None:
    """The whole chunk on the fast path: agency-signed provisions written canonically.

    The same checks as ``parse_line`` + ``content_problem`` for the lines the fast patterns of
    ``entry.py`` accept, with nothing allocated per entry that is not needed. It returns None at
    the first line that is anything else (a registration, a slow-path spelling, or any failure),
    and ``check_chunk`` then runs ``general_chunk`` over the chunk, which decides and names.
    """
    kept_line, erased_line, fast_leaf = _KEPT_LINE.fullmatch, _ERASED_LINE.fullmatch, FAST_LEAF.fullmatch
    a2b, b2a, sha256 = binascii.a2b_base64, binascii.b2a_base64, hashlib.sha256
    check_signatures = job.check_signatures
    position = job.start
    expected_prev: bytes | None = ZERO_PREV.encode() if position == 0 else None
    first_prev: str | None = None
    cache: dict[tuple[bytes, bytes], tuple[Any, bytes, bytes | None]] = {}
    used: set[tuple[str, str]] = set()
    erased = ErasedRanges()
    hashes: list[bytes] = []
    append = hashes.append
    for line in lines:
        m = kept_line(line)
        if m is None:
            m = erased_line(line)
            if m is None:
                return None
            index_text, leaf_b64, hash_b64 = m.groups()
            payload = salt_b64 = None
            erased.add(position)
        else:
            index_text, leaf_b64, hash_b64, payload, salt_b64 = m.groups()
        try:
            leaf = a2b(leaf_b64, strict_mode=True)
        except binascii.Error:
            return None
        tail = len(leaf) % 3
        if tail and b2a(leaf[-tail:], newline=False)[-4:] != leaf_b64[-4:]:
            return None  # stray bits in the last base64 group: not the one spelling
        lm = fast_leaf(leaf)
        if lm is None:
            return None
        agency, commitment, index, key_id, kind, logged_at, prev, signature, time, v = lm.groups()
        if kind != b"provision" or index != index_text or int(index) != position:
            return None
        if position > MAX_SAFE_INT:
            return None
        if expected_prev is None:
            first_prev = prev.decode()
        elif prev != expected_prev:
            return None
        if payload is not None and salt_b64 is not None:
            digest = sha256(COMMITMENT_PREFIX + a2b(salt_b64) + payload).digest()
            if b2a(digest, newline=False) != commitment:
                return None
        found = cache.get((agency, key_id))
        if found is None:
            if agency == OPERATOR.encode():
                return None
            name = (agency.decode(), key_id.decode())
            key = job.keys.get(name)
            if key is None:
                return None
            public = Ed25519PublicKey.from_public_bytes(key.public_key) if check_signatures else None
            found = cache[(agency, key_id)] = (
                public, key.valid_from.encode(),
                None if key.revoked_at is None else key.revoked_at.encode(),
            )
            used.add(name)
        public, valid_from, revoked_at = found
        instant = time if len(time) == 27 else time[:19] + _MICROS
        if instant < valid_from:
            return None
        if revoked_at is not None:
            logged = logged_at if len(logged_at) == 27 else logged_at[:19] + _MICROS
            if instant >= revoked_at or logged >= revoked_at:
                return None
        if public is not None:
            statement = b"".join((
                b'{"agency":"', agency, b'","commitment":"', commitment, b'","key_id":"', key_id,
                b'","kind":"provision","time":"', time, b'","v":', v, b"}"))
            try:
                public.verify(a2b(signature), statement)
            except InvalidSignature:
                return None
        h = sha256(b"\x00" + leaf).digest()
        expected_prev = b2a(h, newline=False)
        if expected_prev != hash_b64:
            return None
        append(h)
        position += 1
    result = ChunkResult(job.start, job.count, first_prev=first_prev, used_keys=used,
                         erased=erased.ranges)
    if hashes:
        result.last_hash = hashes[-1]
        result.before_last = hashes[-2] if len(hashes) > 1 else None
        result.subtrees = _subtrees(hashes, job.start)
    return result


def _subtrees(hashes: list[bytes], start: int) -> list[tuple[int, bytes]]:
    """(height, root) of the aligned perfect subtrees over ``hashes`` (leaves from ``start``)."""
    n = len(hashes)
    if n & (n - 1) or start % n:
        compact = CompactRange()
        for h in hashes:
            compact.append(h)
        return compact.subtrees()
    sha256 = hashlib.sha256
    level, height = hashes, 0
    while len(level) > 1:
        pairs = iter(level)
        level = [sha256(b"\x01" + left + right).digest() for left, right in zip(pairs, pairs)]
        height += 1
    return [(height, level[0])]
