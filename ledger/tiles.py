"""The log as static tiles (C2SP tlog-tiles): level tiles, entry bundles and the checkpoint.

A tile at level L holds consecutive Merkle Tree Hashes of subtrees of ``256**L`` leaves
(tlog-tiles "Merkle Tree"): hash i of tile N at level L is MTH(D[(N*256+i)*256**L :
(N*256+i+1)*256**L]), the root of a perfect subtree of height 8L. kiroku stores every perfect
subtree's root when it completes (ledger.storage: level 0 is ``kiroku_log_entry.leaf_hash``,
levels >= 1 are ``kiroku_merkle_node``), so a tile is a range read of stored hashes at Merkle
level 8L and nothing is rehashed. Entry bundles hold the exact leaf bytes, each behind a
big-endian uint16 length (tlog-tiles "Log entries").

``write_tiles`` writes the files a static web server or object store serves for the latest
signed checkpoint: only those not already present (a tile's bytes for a given level, index and
width never change, so an existing file is never rewritten), each atomically (temporary file,
fsync, rename), and the checkpoint last, after the directories are synced, so a reader never
sees a checkpoint whose tiles are missing. Superseded partial tiles are kept: the spec requires
serving the partial tiles of every size a checkpoint was produced for, and only allows deleting
them once the full tile exists.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from ledger import checkpoints as cps
from ledger.application import Ledger
from ledger.errors import ConfigurationError, IntegrityFailure, InvalidRequest, NotFound
from ledger.merkle import StoredTree
from ledger.schema import log_entry, merkle_node

TILE_HEIGHT = 8  # tlog-tiles: a tile is a subtree of height 8 ...
TILE_WIDTH = 1 << TILE_HEIGHT  # ... so a full tile holds 256 hashes (8,192 bytes)
HASH_SIZE = 32
MAX_LEVEL = 63  # tlog-tiles: <L> is between 0 and 63
MAX_ENTRY_BYTES = 0xFFFF  # entry bundles prefix each entry with a big-endian uint16 length
ENTRIES = "entries"

_ELEMENT = re.compile(r"x?[0-9]{3}")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
_LEVEL = re.compile(r"0|[1-9][0-9]?")
_READ_TILES = 16  # level-0 tiles read per query while writing (4,096 entries)


class EntryTooLong(IntegrityFailure):
    """An entry longer than a uint16 length prefix can describe (tlog-tiles has no escape)."""

    code = "entry-too-long"


@dataclass(frozen=True, order=True)
class Tile:
    """A level tile (``level`` >= 0) or an entry bundle (``level`` is None); ``width`` 1..256."""

    level: int | None
    index: int
    width: int

    @property
    def full(self) -> bool:
        return self.width == TILE_WIDTH

    @property
    def path(self) -> str:
        """``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]`` (tlog-tiles "Merkle Tree")."""
        kind = ENTRIES if self.level is None else str(self.level)
        suffix = "" if self.full else f".p/{self.width}"
        return f"tile/{kind}/{encode_index(self.index)}{suffix}"

    @property
    def first_leaf(self) -> int:
        """The tile's start index, ``N * 256**(L+1)`` (entry bundles count as level 0)."""
        return self.index << (TILE_HEIGHT * ((self.level or 0) + 1))


def encode_index(index: int) -> str:
    """tlog-tiles: zero-padded 3-digit path elements, all but the last prefixed with ``x``
    (1234067 -> ``x001/x234/067``), exactly as Go's tlog.Tile.Path writes them."""
    if index < 0:
        raise ValueError(f"tile index {index} is negative")
    parts = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        parts.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(parts))


def parse_level(text: str) -> int:
    """``<L>``: decimal 0..63 without leading zeroes; InvalidRequest otherwise."""
    if _LEVEL.fullmatch(text) is None or int(text) > MAX_LEVEL:
        raise InvalidRequest(f"tile level {text[:20]!r} is not a decimal 0..{MAX_LEVEL}")
    return int(text)


def parse_index_path(text: str) -> tuple[int, int]:
    """``<N>[.p/<W>]`` -> (index, width). Only the canonical spelling is accepted (the one
    ``encode_index`` writes), so every tile has exactly one path."""
    parts = text.split("/")
    width = TILE_WIDTH
    if len(parts) >= 2 and parts[-2].endswith(".p"):
        if _WIDTH.fullmatch(parts[-1]) is None or int(parts[-1]) >= TILE_WIDTH:
            raise InvalidRequest(f"partial tile width {parts[-1][:20]!r} is not a decimal 1..255")
        width = int(parts[-1])
        parts = [*parts[:-2], parts[-2][:-2]]
    if len(parts) > 8 or not all(_ELEMENT.fullmatch(p) for p in parts):
        raise InvalidRequest(f"{text[:60]!r} is not a tile index path such as x001/x234/067")
    index = 0
    for part in parts:
        index = index * 1000 + int(part.lstrip("x"))
    if encode_index(index) != "/".join(parts):
        raise InvalidRequest(f"{text[:60]!r} is not the canonical path of tile index {index}")
    return index, width


def hashes_at(size: int, level: int) -> int:
    """How many level-``level`` tile hashes a tree of ``size`` has: floor(size / 256**level)."""
    return size >> (TILE_HEIGHT * level)


def tiles_for_size(size: int) -> list[Tile]:
    """Every level tile and entry bundle of a tree of ``size`` leaves.

    tlog-tiles "Partial Tiles": the partial tile at level l has floor(s / 256**l) mod 256
    hashes, and empty tiles are not served; so a tree of 256 has a full level-0 tile and a
    level-1 tile of width 1.
    """
    tiles: list[Tile] = []
    level = 0
    while (count := hashes_at(size, level)) > 0:
        for kind in ((None, 0) if level == 0 else (level,)):
            tiles.extend(Tile(kind, n, TILE_WIDTH) for n in range(count // TILE_WIDTH))
            if count % TILE_WIDTH:
                tiles.append(Tile(kind, count // TILE_WIDTH, count % TILE_WIDTH))
        level += 1
    return tiles


def covers(tile: Tile, size: int) -> bool:
    """Whether ``tile`` lies within a tree of ``size`` leaves (and so can be served for it)."""
    return (tile.index * TILE_WIDTH + tile.width) <= hashes_at(size, tile.level or 0)


def bundle(leaves: list[bytes], first_index: int = 0) -> bytes:
    """An entry bundle: each leaf behind its big-endian uint16 length (tlog-tiles "Log entries").

    tlog-tiles defines no encoding for an entry of 64 KiB or more, so such a log cannot be tiled:
    EntryTooLong names the entry rather than writing a bundle no reader could parse.
    """
    parts = []
    for offset, leaf in enumerate(leaves):
        if len(leaf) > MAX_ENTRY_BYTES:
            raise EntryTooLong(f"entry {first_index + offset} is {len(leaf)} bytes; tlog-tiles "
                               f"entry bundles hold entries of at most {MAX_ENTRY_BYTES} bytes")
        parts.append(len(leaf).to_bytes(2, "big"))
        parts.append(leaf)
    return b"".join(parts)


# -- reading tiles from storage ------------------------------------------------------------------
def _leaves(ledger: Ledger, start: int, end: int) -> list[tuple[bytes, bytes]]:
    """(leaf bytes, leaf hash) of entries [start, end), all of which must exist."""
    with ledger.log.transaction(commit=False) as session:
        rows = session.execute(
            select(log_entry.c.idx, log_entry.c.leaf, log_entry.c.leaf_hash)
            .where(log_entry.c.idx >= start, log_entry.c.idx < end).order_by(log_entry.c.idx)
        ).all()
    if len(rows) != end - start or (rows and int(rows[-1].idx) != end - 1):
        raise IntegrityFailure(f"log entries {start}..{end - 1} are not all stored; "
                               "run 'kiroku log fsck'")
    return [(bytes(r.leaf), bytes(r.leaf_hash)) for r in rows]


def _node_hashes(ledger: Ledger, tile: Tile) -> bytes:
    """Stored roots of the perfect subtrees of height 8L that tile (L >= 1) lists."""
    assert tile.level is not None and tile.level > 0
    start = tile.index * TILE_WIDTH
    with ledger.log.transaction(commit=False) as session:
        rows = session.execute(
            select(merkle_node.c.idx, merkle_node.c.hash)
            .where(merkle_node.c.level == TILE_HEIGHT * tile.level,
                   merkle_node.c.idx >= start, merkle_node.c.idx < start + tile.width)
            .order_by(merkle_node.c.idx)
        ).all()
    if len(rows) != tile.width or [int(r.idx) for r in rows] != list(
            range(start, start + tile.width)):
        raise IntegrityFailure(f"stored subtree roots for {tile.path} are incomplete; "
                               "run 'kiroku log fsck'")
    return b"".join(bytes(r.hash) for r in rows)


def read_tile(ledger: Ledger, tile: Tile) -> bytes:
    """The bytes of a level tile or entry bundle, from stored hashes and leaves."""
    if tile.level is None or tile.level == 0:
        start = tile.index * TILE_WIDTH
        rows = _leaves(ledger, start, start + tile.width)
        if tile.level is None:
            return bundle([leaf for leaf, _ in rows], start)
        return b"".join(digest for _, digest in rows)
    return _node_hashes(ledger, tile)


def signed_checkpoint(ledger: Ledger) -> cps.Checkpoint:
    """The latest signed checkpoint: tiles are published for its size, never for unsigned growth."""
    latest = ledger.latest_checkpoint()
    if latest is None:
        raise NotFound("no checkpoint has been signed yet; run 'kiroku log checkpoint'")
    return latest


# -- writing a tile directory --------------------------------------------------------------------
@dataclass
class TileReport:
    """What one ``write_tiles`` run did."""

    tree_size: int
    previous_size: int | None = None  # the size of the checkpoint the directory held before
    tiles_written: int = 0
    tile_bytes: int = 0
    bundles_written: int = 0
    bundle_bytes: int = 0
    already_present: int = 0
    checkpoint_written: bool = False


def _write_atomic(path: Path, data: bytes, synced: set[Path]) -> None:
    """Write ``path`` so that readers see either nothing or all of ``data``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{os.getpid()}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    synced.add(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _previous_size(ledger: Ledger, out: Path, latest: cps.Checkpoint) -> int | None:
    """The size of the checkpoint ``out`` already holds, after checking it belongs to this log
    and is consistent with the stored tree (a directory of another log or of a fork is refused,
    not overwritten)."""
    path = out / "checkpoint"
    if not path.exists():
        return None
    try:
        note = path.read_text(encoding="utf-8")
        held = cps.open_own(note, ledger.origin, ledger.operator_public_keys)
    except (OSError, UnicodeDecodeError, ValueError, IntegrityFailure) as exc:
        raise ConfigurationError(f"{path} is not a checkpoint of log {ledger.origin} signed by "
                                 f"this operator ({exc}); use another directory") from None
    if held.size > latest.size:
        raise IntegrityFailure(f"{path} has size {held.size}, beyond the latest signed "
                               f"checkpoint {latest.size}")
    if held.size and StoredTree(ledger.log, latest.size).root(held.size) != held.root:
        raise IntegrityFailure(f"{path} (size {held.size}) is not a prefix of this log's tree; "
                               "use another directory")
    return held.size


def _level0_runs(missing: list[Tile]) -> Iterator[list[int]]:
    """Indices of level-0 tiles/bundles to write, in runs of consecutive indices read together."""
    indices = sorted({t.index for t in missing if not t.level})
    run: list[int] = []
    for index in indices:
        if run and (index != run[-1] + 1 or len(run) == _READ_TILES):
            yield run
            run = []
        run.append(index)
    if run:
        yield run


def write_tiles(ledger: Ledger, out: Path, progress: Callable[[int], None] | None = None
                ) -> TileReport:
    """Write ``out/checkpoint`` and the tiles and entry bundles it needs that ``out`` lacks.

    ``progress(n)`` is called with the number of entries just read for level-0 tiles and
    bundles. Raises NotFound when no checkpoint was signed, ConfigurationError when ``out``
    holds another log, IntegrityFailure when it holds a tree this log does not extend, and
    EntryTooLong for an entry no bundle can hold.
    """
    latest = signed_checkpoint(ledger)
    out.mkdir(parents=True, exist_ok=True)
    report = TileReport(latest.size, _previous_size(ledger, out, latest))
    wanted = tiles_for_size(latest.size)
    missing = [t for t in wanted if not (out / t.path).exists()]
    report.already_present = len(wanted) - len(missing)
    by_key = {(t.level, t.index): t for t in missing}
    synced: set[Path] = set()

    def record(tile: Tile, data: bytes) -> None:
        _write_atomic(out / tile.path, data, synced)
        if tile.level is None:
            report.bundles_written += 1
            report.bundle_bytes += len(data)
        else:
            report.tiles_written += 1
            report.tile_bytes += len(data)

    for run in _level0_runs(missing):
        spans = [(by_key.get((0, n)) or by_key[(None, n)]) for n in run]
        start, end = run[0] * TILE_WIDTH, run[-1] * TILE_WIDTH + spans[-1].width
        rows = _leaves(ledger, start, end)
        for n in run:
            offset = (n - run[0]) * TILE_WIDTH
            for level in (0, None):
                tile = by_key.get((level, n))
                if tile is None:
                    continue
                part = rows[offset:offset + tile.width]
                record(tile, b"".join(d for _, d in part) if level == 0
                       else bundle([leaf for leaf, _ in part], n * TILE_WIDTH))
        if progress is not None:
            progress(end - start)
    for tile in missing:
        if tile.level:
            record(tile, _node_hashes(ledger, tile))
    # The checkpoint goes last, once every tile it needs is durably in place.
    for directory in sorted(synced):
        _fsync_directory(directory)
    checkpoint_path = out / "checkpoint"
    current = checkpoint_path.read_bytes() if checkpoint_path.exists() else None
    if current != latest.note.encode():
        _write_atomic(checkpoint_path, latest.note.encode(), set())
        _fsync_directory(out)
        report.checkpoint_written = True
    return report
