"""Verifying a log published as C2SP tlog-tiles, from a directory or an http(s) URL.

Re-implemented from https://c2sp.org/tlog-tiles (nothing shared with the writer): the tree is
rebuilt from the entry bundles' leaf bytes, every level tile is compared with the hashes the
entries give (hash i of tile N at level L is MTH(D[(N*256+i)*256**L : (N*256+i+1)*256**L])),
and the root with the signed checkpoint. When something differs, the checkpoint decides which
side is wrong: if the entries give its root, a tile was altered (``tile-mismatch``, naming the
tile); if the level-0 tiles give it instead, the first entry that hashes differently from its
tile was altered (``entry-mismatch``, naming the index and bundle).

Then the per-entry checks of an export run over the leaves (sequence.check_run: canonical leaf,
index, hash chain, signer rules), as for an export whose payloads were all erased: bundles carry
leaf bytes only. Operator-signed entries have their signatures checked with the operator key.
An agency's statement signature cannot be checked from tiles: its key is registered in an
``agency.key_added`` payload, which leaves do not carry; the report counts those entries.
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import io
import os
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from verifier.checkpoint import Checkpoint
from verifier.entry import OPERATOR, Entry, EntryProblem, parse_line
from verifier.errors import EntryError, RootMismatch, UnusableInput, VerificationError
from verifier.export import read_checkpoint
from verifier.keys import OPERATOR_KINDS, KeyRegistry, signature_valid
from verifier.merkle import CompactRange, leaf_hash, node_hash
from verifier.note import NoteVerifier
from verifier.sequence import LogState, Lookahead, check_run

TILE_HEIGHT = 8
TILE_WIDTH = 256
HASH_SIZE = 32
_TIMEOUT = 30.0
_MAX_CHECKPOINT = 1 << 20
_MAX_BUNDLE = TILE_WIDTH * (2 + 0xFFFF)
_PREFETCH = 16
_OPERATOR_MARK = b'"agency":"operator"'


class TileError(VerificationError):
    """A tile or bundle is missing, malformed, or differs from what the entries give.

    ``kind`` is ``tile-missing``, ``tile-malformed`` or ``tile-mismatch``; ``path`` names it.
    """

    kind = "tile-mismatch"

    def __init__(self, message: str, *, path: str, kind: str) -> None:
        super().__init__(f"{path}: {message}", kind=kind)
        self.path = path


def encode_index(index: int) -> str:
    """tlog-tiles: 3-digit groups, all but the last prefixed with ``x`` (x001/x234/067)."""
    text = f"{index % 1000:03d}"
    index //= 1000
    while index:
        text = f"x{index % 1000:03d}/{text}"
        index //= 1000
    return text


def tile_path(level: int | None, index: int, width: int) -> str:
    """``tile/<L>/<N>[.p/<W>]``, or ``tile/entries/<N>[.p/<W>]`` for ``level`` None."""
    kind = "entries" if level is None else str(level)
    return f"tile/{kind}/{encode_index(index)}" + ("" if width == TILE_WIDTH else f".p/{width}")


# -- where tiles come from -----------------------------------------------------------------------
class TileDirectory:
    """Tiles as files below ``root`` (what ``kiroku log tiles --out`` writes)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.name = root

    def read(self, path: str, limit: int) -> bytes:
        try:
            with open(os.path.join(self.root, *path.split("/")), "rb") as f:
                return f.read(limit + 1)
        except FileNotFoundError:
            raise TileError("not found", path=path, kind="tile-missing") from None
        except OSError as exc:
            raise UnusableInput(f"cannot read {path} in {self.root}: {exc.strerror or exc}") from None


class TileServer:
    """Tiles from ``<prefix>/<path>`` over http(s); gzip-encoded answers are decoded."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.name = self.url

    def read(self, path: str, limit: int) -> bytes:
        url = f"{self.url}/{path}"
        # tlog-tiles "Log entries": clients SHOULD accept gzip and identity.
        request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip, identity"})
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
                data = bytes(response.read(limit + 1))
                encoding = response.headers.get("Content-Encoding", "identity").lower()
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 410):
                raise TileError(f"not found (HTTP {exc.code})", path=path,
                                kind="tile-missing") from None
            raise UnusableInput(f"cannot fetch {url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise UnusableInput(f"cannot fetch {url}: {exc}") from None
        if encoding == "gzip":
            try:
                data = gzip.GzipFile(fileobj=io.BytesIO(data)).read(limit + 1)
            except (OSError, EOFError) as exc:
                raise TileError(f"gzip body does not decode ({exc})", path=path,
                                kind="tile-malformed") from None
        return data


TileSource = TileDirectory | TileServer


def open_tiles(spec: str) -> TileSource:
    """A directory, or an http(s) URL prefix (tlog-tiles ``<prefix>``)."""
    if spec.startswith(("http://", "https://")):
        return TileServer(spec)
    if not os.path.isdir(spec):
        raise UnusableInput(f"tiles source {spec!r} is neither an http(s) URL nor a directory")
    return TileDirectory(spec)


# -- the checks ----------------------------------------------------------------------------------
@dataclass
class TilesReport:
    """What a successful check covered."""

    entries: int
    checkpoint: Checkpoint
    tiles: int  # level tiles and entry bundles read
    operator_signatures: int  # operator-signed entries whose signature was checked
    agency_entries: int  # entries whose signature needs a key registered in a payload


class _LeafKeys(KeyRegistry):
    """The keys leaves alone tell: the operator's. Agency keys are registered in payloads, so an
    agency's entry gets no key here (its signature is left unchecked and counted), while every
    rule that needs no payload (who may sign which kind) still holds."""

    def __init__(self, operator_public_key: bytes) -> None:
        super().__init__(operator_public_key)
        self.unchecked = 0

    def public_key_for(self, entry: Entry) -> bytes:
        if entry.agency == OPERATOR or entry.kind in OPERATOR_KINDS:
            return super().public_key_for(entry)
        self.unchecked += 1
        return b""


def _mth_of_full_tile(hashes: list[bytes]) -> bytes:
    """MTH of 256 consecutive hashes (a perfect subtree of height 8, RFC 9162 §2.1.1)."""
    level = hashes
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def _split_tile(data: bytes, path: str, width: int) -> list[bytes]:
    if len(data) != width * HASH_SIZE:
        raise TileError(f"is {len(data)} bytes, expected {width} hashes of {HASH_SIZE} bytes",
                        path=path, kind="tile-malformed")
    return [data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def _split_bundle(data: bytes, path: str, width: int) -> list[bytes]:
    """tlog-tiles "Log entries": big-endian uint16 length-prefixed entries, exactly ``width``."""
    leaves, at = [], 0
    while at < len(data):
        if at + 2 > len(data):
            break
        length = int.from_bytes(data[at:at + 2], "big")
        if at + 2 + length > len(data):
            break
        leaves.append(data[at + 2:at + 2 + length])
        at += 2 + length
    if at != len(data) or len(leaves) != width:
        raise TileError(f"does not split into {width} length-prefixed entries "
                        f"({len(leaves)} found, {len(data) - at} bytes left over)",
                        path=path, kind="tile-malformed")
    return leaves


@dataclass
class _Tree:
    """Hashes the entries give, level by level, compared with the fetched tiles as they arrive."""

    source: TileSource
    size: int
    tiles_read: int = 0
    entries_root: CompactRange = field(default_factory=CompactRange)
    tiles_root: CompactRange = field(default_factory=CompactRange)  # from level-0 tiles alone
    pending: dict[int, list[bytes]] = field(default_factory=dict)  # level -> hashes of its tile
    completed: dict[int, int] = field(default_factory=dict)  # level -> full tiles compared
    tile_mismatch: TileError | None = None
    entry_mismatch: VerificationError | None = None

    def level_tile(self, level: int, index: int, computed: list[bytes]) -> None:
        path = tile_path(level, index, len(computed))
        fetched = _split_tile(self.source.read(path, TILE_WIDTH * HASH_SIZE), path, len(computed))
        self.tiles_read += 1
        if fetched != computed and self.tile_mismatch is None:
            at = next(i for i, (a, b) in enumerate(zip(fetched, computed)) if a != b)
            self.tile_mismatch = TileError(
                f"hash {at} is {fetched[at].hex()}, the entries give {computed[at].hex()}",
                path=path, kind="tile-mismatch")
        if len(computed) == TILE_WIDTH:
            self._add(level + 1, _mth_of_full_tile(computed))

    def _add(self, level: int, digest: bytes) -> None:
        pending = self.pending.setdefault(level, [])
        pending.append(digest)
        if len(pending) == TILE_WIDTH:
            self.pending[level] = []
            index = self.completed.get(level, 0)
            self.completed[level] = index + 1
            self.level_tile(level, index, pending)

    def bundle(self, index: int, width: int, leaves: list[bytes], tile: list[bytes]) -> None:
        """Fold one bundle's leaves (and its level-0 tile, fetched alongside) into the tree."""
        bundle_path = tile_path(None, index, width)
        computed = [leaf_hash(leaf) for leaf in leaves]
        for offset, (mine, theirs) in enumerate(zip(computed, tile)):
            self.entries_root.append(mine)
            self.tiles_root.append(theirs)
            if mine != theirs and self.entry_mismatch is None:
                at = index * TILE_WIDTH + offset
                self.entry_mismatch = VerificationError(
                    f"entry {at} in {bundle_path} hashes to {mine.hex()}, but leaf {at} of the "
                    f"tree the checkpoint signs is {theirs.hex()} "
                    f"({tile_path(0, index, width)})", index=at, kind="entry-mismatch")
        path = tile_path(0, index, width)
        if tile != computed and self.tile_mismatch is None:
            at = next(i for i, (a, b) in enumerate(zip(tile, computed)) if a != b)
            self.tile_mismatch = TileError(
                f"hash {at} is {tile[at].hex()}, the entries give {computed[at].hex()}",
                path=path, kind="tile-mismatch")
        if width == TILE_WIDTH:
            self._add(1, _mth_of_full_tile(computed))

    def finish(self) -> None:
        """Compare the partial tiles at the right edge (tlog-tiles "Partial Tiles")."""
        level = 1
        while self.size >> (TILE_HEIGHT * level):
            pending = self.pending.get(level, [])
            if pending:
                self.level_tile(level, self.completed.get(level, 0), pending)
            level += 1


def _fetch_bundles(source: TileSource, size: int
                   ) -> Iterator[tuple[int, int, list[bytes], list[bytes]]]:
    """(index, width, leaves, level-0 tile hashes) for every bundle, read ahead in threads."""
    full, rest = divmod(size, TILE_WIDTH)
    plan = [(n, TILE_WIDTH) for n in range(full)] + ([(full, rest)] if rest else [])

    def fetch(n: int, width: int) -> tuple[int, int, list[bytes], list[bytes]]:
        bundle_path, level0 = tile_path(None, n, width), tile_path(0, n, width)
        leaves = _split_bundle(source.read(bundle_path, _MAX_BUNDLE), bundle_path, width)
        hashes = _split_tile(source.read(level0, TILE_WIDTH * HASH_SIZE), level0, width)
        return n, width, leaves, hashes

    with ThreadPoolExecutor(max_workers=4 if isinstance(source, TileServer) else 1) as pool:
        window: deque[Future[tuple[int, int, list[bytes], list[bytes]]]] = deque()
        for n, width in plan:
            window.append(pool.submit(fetch, n, width))
            if len(window) >= _PREFETCH:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def verify_tiles(source: TileSource, vkey: NoteVerifier, *, check_signatures: bool = True,
                 progress: Callable[[int], None] | None = None) -> TilesReport:
    """Check a tiled log against its signed checkpoint; raise at the first problem.

    Raises CheckpointSignatureError / MalformedCheckpoint for the checkpoint, TileError naming a
    tile, VerificationError ``entry-mismatch`` naming an entry whose bytes are not the tree's
    leaf, EntryError from the per-entry checks, RootMismatch, or UnusableInput.
    """
    try:
        text = source.read("checkpoint", _MAX_CHECKPOINT)
    except TileError:
        raise UnusableInput(f"no checkpoint at {source.name}/checkpoint: not a tiled log") from None
    checkpoint, signature_error = read_checkpoint(text, vkey)
    if signature_error is not None:
        raise signature_error  # an untrusted checkpoint says nothing about which tiles to read
    tree = _Tree(source, checkpoint.size)
    keys = _LeafKeys(vkey.public_key)
    state = LogState(keys)
    first_entry_error: VerificationError | None = None
    operator_checked = 0

    def lines() -> Iterator[bytes]:
        nonlocal first_entry_error, operator_checked
        for index, width, leaves, hashes in _fetch_bundles(source, checkpoint.size):
            tree.bundle(index, width, leaves, hashes)
            tree.tiles_read += 2
            for offset, leaf in enumerate(leaves):
                position = index * TILE_WIDTH + offset
                if check_signatures and _OPERATOR_MARK in leaf:
                    problem = _operator_signature(leaf, keys, position)
                    operator_checked += problem is None
                    if problem is not None and first_entry_error is None:
                        first_entry_error = problem
                yield _erased_line(position, leaf)
            if progress is not None:
                progress(index * TILE_WIDTH + width)

    stream = lines()
    try:
        check_run(state, Lookahead(stream), check_signatures=False)
    except EntryError as exc:
        if first_entry_error is None or (exc.index or 0) <= (first_entry_error.index or 0):
            first_entry_error = exc
    for _ in stream:  # the Merkle checks still need every bundle after an entry failed
        pass
    tree.finish()
    _decide(tree, checkpoint, first_entry_error)
    return TilesReport(checkpoint.size, checkpoint, tree.tiles_read, operator_checked,
                       keys.unchecked)


def _decide(tree: _Tree, checkpoint: Checkpoint, entry_error: VerificationError | None) -> None:
    """Which failure to report, the checkpoint deciding between entries and tiles."""
    entries_root = tree.entries_root.root()
    if entries_root == checkpoint.root:
        if tree.tile_mismatch is not None:
            raise tree.tile_mismatch
        if entry_error is not None:
            raise entry_error
        return
    mismatch = tree.entry_mismatch
    if mismatch is not None and tree.tiles_root.root() == checkpoint.root:
        if entry_error is not None and (entry_error.index or 0) < (mismatch.index or 0):
            raise entry_error
        raise mismatch
    if entry_error is not None:
        raise entry_error
    raise RootMismatch(f"root of the {tree.entries_root.size} entries is {entries_root.hex()}, "
                       f"expected {checkpoint.root.hex()} (checkpoint)")


def _erased_line(index: int, leaf: bytes) -> bytes:
    """The export line of an entry whose payload is not at hand (docs/log-format.md "Export")."""
    encoded = binascii.b2a_base64(leaf, newline=False)
    digest = binascii.b2a_base64(hashlib.sha256(b"\x00" + leaf).digest(), newline=False)
    return (b'{"erased":true,"index":' + str(index).encode() + b',"leaf":"' + encoded
            + b'","leaf_hash":"' + digest + b'","payload":null,"salt":null}')


def _operator_signature(leaf: bytes, keys: KeyRegistry, position: int) -> EntryError | None:
    """Ed25519 check of an operator-signed entry (log-format "Validity rules" 4)."""
    try:
        entry = parse_line(_erased_line(position, leaf))
    except EntryProblem:
        return None  # check_run reports the malformed entry
    if entry.agency != OPERATOR or entry.key_id != keys.operator_key_id:
        return None
    if signature_valid(keys.operator_public_key, entry.signature, entry.statement):
        return None
    return EntryError("signature does not verify over JCS(statement) with the operator's key",
                      index=position, kind="bad-signature")
