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
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace

from verifier.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint_body
from verifier.chunks import CHUNK_SIZE, ChunkJob, ChunkResult, check_chunk
from verifier.entry import EntryProblem, parse_line
from verifier.erased import ErasedRanges
from verifier.errors import (
    CheckpointSignatureError,
    EntryError,
    MalformedCheckpoint,
    RootMismatch,
    VerificationError,
)
from verifier.keys import AgencyKey, KeyProblem, KeyRegistry
from verifier.note import ALG_ED25519, NoteVerifier, note_key_id, parse_note
from verifier.sequence import LogState, Lookahead, check_run


@dataclass(frozen=True)
class ExportReport:
    """What a successful check covered."""

    entries: int
    checkpoint: Checkpoint
    signatures_checked: bool
    #: Entries whose payload and salt were erased at the end of retention (their leaves, chain
    #: links and signatures over the commitment were checked like any other).
    erased: ErasedRanges = field(default_factory=ErasedRanges)


def read_checkpoint(text: str | bytes, vkey: NoteVerifier | Sequence[NoteVerifier]
                    ) -> tuple[Checkpoint, CheckpointSignatureError | None]:
    """Parse the checkpoint and check its signature, keeping a bad signature for later.

    The entries are checked against the operator key whatever the checkpoint says, so a forged
    checkpoint is reported after any bad entry (which has an index), not instead of it. A
    checkpoint that cannot be parsed at all raises (unusable input). Several vkeys (one
    operator's keys, all named after the origin) are all trusted.
    """
    vkeys = _as_list(vkey)
    checkpoint = parse_checkpoint_body(parse_note(text).text)
    if checkpoint.origin != vkeys[0].name:
        raise MalformedCheckpoint(
            f"checkpoint origin is {checkpoint.origin!r}, expected the operator key's name "
            f"{vkeys[0].name!r}"
        )
    try:
        open_checkpoint(text, vkeys, origin=vkeys[0].name)
    except CheckpointSignatureError as exc:
        return checkpoint, exc
    return checkpoint, None


def _as_list(vkey: NoteVerifier | Sequence[NoteVerifier]) -> list[NoteVerifier]:
    return [vkey] if isinstance(vkey, NoteVerifier) else list(vkey)


def _signed_by_another_key(text: str | bytes, vkeys: list[NoteVerifier]) -> bool:
    """Whether the note has a line under the origin's name by a key not among ``vkeys``: an
    operator key the export itself may bring in (docs/key-rotation.md)."""
    known = {v.key_id for v in vkeys}
    try:
        note = parse_note(text)
    except VerificationError:
        return False
    mine = [s for s in note.signatures if s.name == vkeys[0].name]
    # A line by a given key that failed to verify is a forgery, whatever else the note holds.
    return bool(mine) and all(s.key_id not in known for s in mine)


def _learned_signature(text: str | bytes, vkeys: list[NoteVerifier], registry: KeyRegistry
                       ) -> bool:
    """Whether an operator key brought in by a verified ``operator.key_rotated`` entry (itself
    signed by a trusted key, with the new key's proof of possession) signed the checkpoint."""
    name = vkeys[0].name
    given = {v.public_key for v in vkeys}
    learned = [NoteVerifier(name, note_key_id(name, ALG_ED25519, public), public)
               for public in registry.operator_keys().values() if public not in given]
    if not learned:
        return False
    try:
        open_checkpoint(text, learned, origin=name)
    except CheckpointSignatureError:
        return False
    return True


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
    count: int
    keys: dict[tuple[str, str], AgencyKey]  # the forecast the worker used
    future: Future[ChunkResult] | ChunkResult
    lines: list[bytes] | None  # the chunk's lines (None: read again from the file when needed)
    offset: int = 0  # where the chunk's bytes start and end in the export file
    end: int = 0
    markers: bool = True  # whether its lines may hold a key registration


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


class _LineChunks:
    """Chunks of an iterable of lines; each chunk's bytes go to its worker through the pipe."""

    def __init__(self, lines: Iterator[bytes], rest: Iterator[bytes]) -> None:
        self._lines = lines  # up to the checkpoint's size
        self._rest = rest  # the same source, for what lies beyond

    def take(self, start: int, size: int, keys: dict[tuple[str, str], AgencyKey],
             template: ChunkJob) -> tuple[ChunkJob, _Pending] | None:
        chunk = list(itertools.islice(self._lines, size))
        if not chunk:
            return None
        job = replace(template, start=start, blob=b"\n".join(chunk), count=len(chunk), keys=keys)
        return job, _Pending(start, len(chunk), keys, None, chunk)  # type: ignore[arg-type]

    def lines_of(self, item: _Pending) -> list[bytes]:
        assert item.lines is not None
        return item.lines

    def from_chunk(self, item: _Pending, pending: Iterable[_Pending]) -> Iterator[bytes]:
        later = itertools.chain.from_iterable(self.lines_of(p) for p in pending)
        return itertools.chain(self.lines_of(item), later, self._lines, self._rest)

    def has_markers(self, item: _Pending) -> bool:
        return True  # the lines are at hand: _forecast scans them itself

    def extra(self) -> bool:
        return next(self._rest, None) is not None


class _FileChunks:
    """Chunks of a regular file, found by counting line ends in a read-ahead window.

    Workers read their chunk's bytes from the file themselves; the main process only finds where
    chunks end (one C-speed count per chunk, then a few searches to adjust the estimate) and looks
    for registration markers, so it neither splits lines nor copies them through pipes. Memory is
    the window, whatever the file's size.
    """

    WINDOW = 1 << 24

    def __init__(self, path: str, limit: int | None) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size
        self._buf, self._base = b"", 0
        self._pos = 0
        self._left = limit
        self._average = 1024.0  # line length estimate, refined chunk by chunk

    def close(self) -> None:
        os.close(self._fd)

    def _cover(self, begin: int, end: int) -> None:
        """Make the window hold the file's bytes [begin, end) (clipped to the file's end)."""
        end = min(end, self.size)
        if begin >= self._base and end <= self._base + len(self._buf):
            return
        want = max(end - begin, self.WINDOW)
        parts, offset = [], begin
        while offset < begin + want:
            data = os.pread(self._fd, begin + want - offset, offset)
            if not data:
                break
            parts.append(data)
            offset += len(data)
        self._buf, self._base = b"".join(parts), begin

    def _end_of_lines(self, begin: int, wanted: int) -> tuple[int, int, int]:
        """(lines found, up to ``wanted``; where the last one's bytes end; where the next starts).

        Lines are what ``export_lines`` yields: the bytes between line ends, and the bytes after
        the last line end if there are any.
        """
        guess = min(self.size, begin + int(self._average * wanted * 1.02) + 1)
        self._cover(begin, guess)
        buf, base = self._buf, self._base
        found = buf.count(b"\n", begin - base, guess - base)
        if found >= wanted:  # past the wanted line end: step back to it
            at = guess - base
            for _ in range(found - wanted + 1):
                at = buf.rfind(b"\n", begin - base, at)
            return wanted, base + at, base + at + 1
        # Short of it: carry on line end by line end from the start of the last line seen.
        line_start = base + buf.rfind(b"\n", begin - base, guess - base) + 1 if found else begin
        cursor = guess
        while found < wanted:
            if cursor >= self.size:
                if line_start < self.size:  # bytes after the last line end: one more line
                    return found + 1, self.size, self.size
                return found, line_start - 1, self.size
            self._cover(line_start, max(cursor + 1 + self.WINDOW // 4, line_start + 2 * (cursor - line_start)))
            buf, base = self._buf, self._base
            at = buf.find(b"\n", cursor - base)
            if at < 0:
                cursor = base + len(buf)
                continue
            found += 1
            cursor = line_start = base + at + 1
        return found, cursor - 1, cursor

    def take(self, start: int, size: int, keys: dict[tuple[str, str], AgencyKey],
             template: ChunkJob) -> tuple[ChunkJob, _Pending] | None:
        if self._left is not None:
            size = min(size, self._left)
        begin = self._pos
        if size <= 0 or begin >= self.size:
            return None
        count, stop, self._pos = self._end_of_lines(begin, size)
        if self._left is not None:
            self._left -= count
        self._average = max(1.0, (self._pos - begin) / count)
        job = replace(template, start=start, blob=None, count=count, keys=keys,
                      span=(self.path, begin, stop - begin))
        item = _Pending(start, count, keys, None, None, begin, stop)  # type: ignore[arg-type]
        self._cover(begin, stop)
        buf, base = self._buf, self._base
        item.markers = any(buf.find(m, begin - base, stop - base) >= 0 for m in _REGISTRATION_MARKERS)
        return job, item

    def _lines_from(self, offset: int) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            f.seek(offset)
            yield from export_lines(f)

    def lines_of(self, item: _Pending) -> list[bytes]:
        return list(itertools.islice(self._lines_from(item.offset), item.count))

    def from_chunk(self, item: _Pending, pending: Iterable[_Pending]) -> Iterator[bytes]:
        return self._lines_from(item.offset)

    def has_markers(self, item: _Pending) -> bool:
        return item.markers

    def extra(self) -> bool:
        return self._pos < self.size


def verify_export(
    lines: Iterable[bytes],
    checkpoint_text: str | bytes,
    vkey: NoteVerifier | Sequence[NoteVerifier],
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
    checkpoint, signature_error = read_checkpoint(checkpoint_text, vkey)
    # Only a checkpoint we trust says how long the export must be (or one a key the export
    # introduces may have signed: then it is trusted, or refused, once the entries are read).
    learnable = signature_error is not None and _signed_by_another_key(
        checkpoint_text, _as_list(vkey))
    limit = checkpoint.size if signature_error is None or learnable else None
    source = iter(lines)
    counted = source if limit is None else itertools.islice(source, limit)
    return _verify(_LineChunks(counted, source), checkpoint, signature_error, vkey,
                   check_signatures, workers, progress, chunk_size, checkpoint_text)


def verify_export_file(
    path: str,
    checkpoint_text: str | bytes,
    vkey: NoteVerifier | Sequence[NoteVerifier],
    *,
    check_signatures: bool = True,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> ExportReport:
    """:func:`verify_export` for an export in a regular file, the same checks and answers.

    Faster: the worker processes read their chunks from the file, so its bytes are neither split
    into lines nor sent through pipes by the main process. Raises OSError if ``path`` cannot
    be read.
    """
    checkpoint, signature_error = read_checkpoint(checkpoint_text, vkey)
    learnable = signature_error is not None and _signed_by_another_key(
        checkpoint_text, _as_list(vkey))
    limit = checkpoint.size if signature_error is None or learnable else None
    chunks = _FileChunks(path, limit)
    try:
        return _verify(chunks, checkpoint, signature_error, vkey, check_signatures, workers,
                       progress, chunk_size, checkpoint_text)
    finally:
        chunks.close()


def _verify(
    chunks: _LineChunks | _FileChunks,
    checkpoint: Checkpoint,
    signature_error: CheckpointSignatureError | None,
    vkey: NoteVerifier | Sequence[NoteVerifier],
    check_signatures: bool,
    workers: int | None,
    progress: Callable[[int], None] | None,
    chunk_size: int,
    checkpoint_text: str | bytes = b"",
) -> ExportReport:
    if chunk_size < 1 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size is {chunk_size}, expected a power of two")
    vkeys = _as_list(vkey)
    state = LogState(KeyRegistry(vkeys[0].public_key, [v.public_key for v in vkeys[1:]]))
    workers = default_workers() if workers is None else workers
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 0 else None
    try:
        _run_chunks(state, chunks, pool, workers, check_signatures, progress, chunk_size)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if signature_error is not None and not (
            checkpoint_text and _learned_signature(checkpoint_text, vkeys, state.registry)):
        raise signature_error
    if state.position < checkpoint.size:
        raise EntryError(
            f"export ends after {state.position} entries, expected {checkpoint.size} (checkpoint size)",
            index=state.position, kind="export-too-short",
        )
    root = state.compact.root()
    if chunks.extra():
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
    return ExportReport(state.position, checkpoint, check_signatures, state.erased)


def _run_chunks(
    state: LogState,
    chunks: _LineChunks | _FileChunks,
    pool: ProcessPoolExecutor | None,
    workers: int,
    check_signatures: bool,
    progress: Callable[[int], None] | None,
    chunk_size: int,
) -> None:
    registry = state.registry
    forecast = registry.copy()
    pending: deque[_Pending] = deque()
    max_in_flight = 2 * workers + 2 if pool is not None else 1
    next_start = 0
    exhausted = False
    template = ChunkJob(0, None, 0, {}, registry.operator_public_key, check_signatures)

    def submit() -> bool:
        nonlocal next_start
        snapshot = dict(forecast.keys)
        taken = chunks.take(next_start, chunk_size, snapshot, template)
        if taken is None:
            return False
        job, item = taken
        item.future = pool.submit(check_chunk, job) if pool is not None else check_chunk(job)
        pending.append(item)
        if chunks.has_markers(item):
            _forecast(forecast, chunks.lines_of(item))
        next_start += item.count
        return item.count == chunk_size

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
            state.erased.extend(result.erased)
            for event in result.events:
                registry.apply(event)
        else:
            # Re-check in order with the exact state; the lines after this chunk are there only
            # to classify a failure (look-ahead for reordering and insertion).
            check_run(
                state,
                Lookahead(chunks.from_chunk(item, pending)),
                check_signatures=check_signatures,
                limit=item.count,
            )
        if pending and _forecast_drifted(pending, registry):
            # The forecast went wrong (a registration it could not read): start it again from
            # the real registry so that later chunks are not all re-checked in order.
            forecast = registry.copy()
            for waiting in pending:
                _forecast(forecast, chunks.lines_of(waiting))
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
