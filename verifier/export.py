"""Streaming verification of a JSON Lines export against a signed checkpoint.

Memory stays flat in the export's length: besides the key registry and a Merkle compact range
(O(log n) hashes), only the lines of the chunks in flight are held. Parsing, hashing and Ed25519
checks run per chunk in worker processes (all cores); the order-dependent checks (chain links
across chunks, key changes, the compact range) are folded in sequentially, chunk by chunk, in the
main process. Any chunk a worker does not report clean is re-checked in order by
``sequence.check_run``, which names the first bad index and its kind.

Order of whole-export checks after the entries (each only if all entries passed): the
checkpoint's signature (``checkpoint-signature-invalid``), the export's length against the
checkpoint's size (``export-too-short`` / ``export-too-long``), then the root
(``root-mismatch``).
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

from verifier.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint_body
from verifier.chunks import CHUNK_SIZE, ChunkJob, ChunkResult, check_chunk
from verifier.entry import EntryProblem, parse_line
from verifier.errors import (
    CheckpointSignatureError,
    EntryError,
    MalformedCheckpoint,
    RootMismatch,
)
from verifier.keys import AgencyKey, KeyProblem, KeyRegistry
from verifier.note import NoteVerifier, parse_note
from verifier.sequence import LogState, Lookahead, check_run


@dataclass(frozen=True)
class ExportReport:
    """What a successful check covered."""

    entries: int
    checkpoint: Checkpoint
    signatures_checked: bool


def read_checkpoint(text: str | bytes, vkey: NoteVerifier) -> tuple[Checkpoint, CheckpointSignatureError | None]:
    """Parse the checkpoint and check its signature, keeping a bad signature for later.

    The entries are checked against the operator key whatever the checkpoint says, so a forged
    checkpoint is reported after any bad entry (which has an index), not instead of it. A
    checkpoint that cannot be parsed at all raises (unusable input).
    """
    checkpoint = parse_checkpoint_body(parse_note(text).text)
    if checkpoint.origin != vkey.name:
        raise MalformedCheckpoint(
            f"checkpoint origin is {checkpoint.origin!r}, expected the operator key's name "
            f"{vkey.name!r}"
        )
    try:
        open_checkpoint(text, (vkey,), origin=vkey.name)
    except CheckpointSignatureError as exc:
        return checkpoint, exc
    return checkpoint, None


def export_lines(stream: Iterable[bytes]) -> Iterator[bytes]:
    """Lines of a JSON Lines stream without their line ends."""
    for raw in stream:
        yield raw[:-1] if raw.endswith(b"\n") else raw


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class _Pending:
    start: int
    lines: list[bytes]
    keys: dict[tuple[str, str], AgencyKey]  # the forecast the worker used
    future: Future[ChunkResult] | ChunkResult


# Registration payloads carry these keys; lines containing them are parsed by the forecast.
_REGISTRATION_MARKERS = (b'"valid_from"', b'"revoked_at"')


def _forecast(forecast: KeyRegistry, lines: list[bytes]) -> None:
    """Apply the key changes ``lines`` seem to make, so later chunks get a current snapshot.

    Only a forecast: a line it misreads or misses (say, an escaped key name) just makes the
    main process re-check the affected chunk in order, never a wrong verdict.
    """
    for line in lines:
        if _REGISTRATION_MARKERS[0] in line or _REGISTRATION_MARKERS[1] in line:
            try:
                event = forecast.event_for(parse_line(line))
            except (EntryProblem, KeyProblem):
                continue
            if event is not None:
                forecast.apply(event)


def verify_export(
    lines: Iterable[bytes],
    checkpoint_text: str | bytes,
    vkey: NoteVerifier,
    *,
    check_signatures: bool = True,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> ExportReport:
    """Check every entry of ``lines`` (export lines, without line ends) and the checkpoint.

    Returns a report, or raises: EntryError (with ``index`` and ``kind``) at the first bad entry,
    CheckpointSignatureError, RootMismatch, or an UnusableInput subclass for a checkpoint that
    cannot be parsed. ``workers=0`` checks in this process. ``chunk_size`` must be a power of two.
    """
    if chunk_size < 1 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size is {chunk_size}, expected a power of two")
    checkpoint, signature_error = read_checkpoint(checkpoint_text, vkey)
    # Only a checkpoint we trust says how long the export must be.
    limit = checkpoint.size if signature_error is None else None
    state = LogState(KeyRegistry(vkey.public_key))
    source = iter(lines)
    counted = source if limit is None else itertools.islice(source, limit)
    workers = default_workers() if workers is None else workers
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 0 else None
    try:
        _run_chunks(state, counted, pool, workers, check_signatures, progress, source, chunk_size)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if signature_error is not None:
        raise signature_error
    if state.position < checkpoint.size:
        raise EntryError(
            f"export ends after {state.position} entries, expected {checkpoint.size} (checkpoint size)",
            index=state.position, kind="export-too-short",
        )
    extra = next(source, None)
    root = state.compact.root()
    if extra is not None:
        prefix = "match" if root == checkpoint.root else "do not match"
        raise EntryError(
            f"export has more than the checkpoint's {checkpoint.size} entries "
            f"(the first {checkpoint.size} {prefix} its root)",
            index=checkpoint.size, kind="export-too-long",
        )
    if root != checkpoint.root:
        raise RootMismatch(
            f"root of the export's {state.position} leaves is {root.hex()}, expected "
            f"{checkpoint.root.hex()} (checkpoint)"
        )
    return ExportReport(state.position, checkpoint, check_signatures)


def _run_chunks(
    state: LogState,
    lines: Iterator[bytes],
    pool: ProcessPoolExecutor | None,
    workers: int,
    check_signatures: bool,
    progress: Callable[[int], None] | None,
    rest: Iterator[bytes],
    chunk_size: int,
) -> None:
    registry = state.registry
    forecast = registry.copy()
    pending: deque[_Pending] = deque()
    max_in_flight = 2 * workers + 2 if pool is not None else 1
    next_start = 0
    exhausted = False

    def submit() -> bool:
        nonlocal next_start, exhausted
        chunk = list(itertools.islice(lines, chunk_size))
        if not chunk:
            exhausted = True
            return False
        snapshot = dict(forecast.keys)
        job = ChunkJob(
            next_start, b"\n".join(chunk), len(chunk), snapshot,
            registry.operator_public_key, check_signatures,
        )
        future: Future[ChunkResult] | ChunkResult
        future = pool.submit(check_chunk, job) if pool is not None else check_chunk(job)
        pending.append(_Pending(next_start, chunk, snapshot, future))
        _forecast(forecast, chunk)
        next_start += len(chunk)
        return len(chunk) == chunk_size

    while True:
        while not exhausted and len(pending) < max_in_flight:
            if not submit():
                exhausted = True
        if not pending:
            return
        item = pending.popleft()
        result = item.future if isinstance(item.future, ChunkResult) else item.future.result()
        if _clean(result, item, state):
            for height, root in result.subtrees:
                state.compact.append_subtree(root, height)
            state.position += result.count
            if result.count >= 2:
                state.before_last = result.before_last
            else:
                state.before_last = state.last_hash
            state.last_hash = result.last_hash
            for event in result.events:
                registry.apply(event)
        else:
            # Re-check in order with the exact state; the lines after this chunk are there only
            # to classify a failure (look-ahead for reordering and insertion).
            later = itertools.chain.from_iterable(p.lines for p in pending)
            check_run(
                state,
                Lookahead(itertools.chain(item.lines, later, lines, rest)),
                check_signatures=check_signatures,
                limit=len(item.lines),
            )
        if pending and _forecast_drifted(pending, registry):
            # The forecast went wrong (a registration it could not read): start it again from
            # the real registry so that later chunks are not all re-checked in order.
            forecast = registry.copy()
            for waiting in pending:
                _forecast(forecast, waiting.lines)
        if progress is not None:
            progress(state.position)


def _clean(result: ChunkResult, item: _Pending, state: LogState) -> bool:
    """Whether a worker's verdict can be folded in without re-checking the chunk in order."""
    if result.failed_at is not None:
        return False
    if result.start > 0 and result.first_prev != state.prev_for(0):
        return False
    # Every key the worker relied on must be the same in its forecast and in the real registry.
    real = state.registry.keys
    return all(item.keys.get(k) == real.get(k) for k in result.used_keys)


def _forecast_drifted(pending: deque[_Pending], registry: KeyRegistry) -> bool:
    """Whether the forecast for the next pending chunk differs from the real registry now."""
    return pending[0].keys != registry.keys
